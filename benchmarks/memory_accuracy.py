"""Memory accuracy: the planner's prediction against the measured breakdown and the measured step peak.

For each model and each setting (quant none/int8/nf4/fp4 with LoRA, full fine-tuning on the
unquantized base, the LoRA variants DoRA / QDoRA / rsLoRA / PiSSA / OLoRA / LoftQ (``--no-variants``
leaves them out); gradient checkpointing off and on) this loads the model with its family's task head,
attaches LoRA (r=8 on the family's ``qv`` preset: LLaMA q_proj, v_proj; GPT-2 c_attn; BERT query,
value; T5 q, v; dropout 0.05), trains two steps the way transformers' Trainer does (forward with
labels, backward, gradient clipping at 1.0, torch AdamW, zero_grad) on full-length batches of random
tokens, and compares

- the five steady categories, measured from the real tensors (``lorakit.memory.breakdown.measure``) against
  ``lorakit.plan_memory`` from the config alone (goals: 2 % for base weights, adapters, gradients,
  optimizer; 20 % for activations);
- the **peak** of the two steps (``lorakit.memory.step_peak.TrainingPeak``: the CPU allocator's trajectory
  from the profiler, or ``torch.cuda.max_memory_allocated``) against the planned peak (goal: 5 %);
- on CUDA also ``max_memory_reserved`` + the CUDA context against the planned peak + device
  overhead (goal: 10 %).

The batch per task: a causal LM's labels are its inputs; a classifier (``minilm-l6``, the held-out
RoBERTa) gets one label per example out of the built-in ``topic`` task's four, and its new head trains
in full (planned from a config with those four labels); a T5 gets decoder labels as long as its inputs
(random tokens), which is what the planner assumes for seq2seq.

    python benchmarks/memory_accuracy.py                        # every model below, batch 4 x 128
    python benchmarks/memory_accuracy.py --model smollm2-135m   # one model
    python benchmarks/memory_accuracy.py --family bert --family t5   # the BERT and T5 rows (built-in + held-out)
    python benchmarks/memory_accuracy.py --quick                # batch 2 x 32, no checkpointing axis
    python benchmarks/memory_accuracy.py --random-weights --big --json out.json   # a GPU machine

``--random-weights`` builds every model from its config with random weights (memory does not depend
on the values; no GGUF conversion needed), ``--big`` adds a LLaMA-7B-shaped model with random weights
(CUDA only). Held-out architectures check the formulas on shapes they were not fitted to, saved to a
temporary directory and loaded through the local-directory path: "heldout-mistral" (untied head,
grouped-query attention, head_dim 24), "heldout-qwen2" (q/k/v biases, tied embeddings),
"heldout-roberta" (RoBERTa's own classifier head, no pooler, positions offset by the padding id) and
"heldout-mt5" (T5 v1.1's gated-GELU MLP, untied head, 2 encoder and 3 decoder layers).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SETTINGS = [("none", "lora"), ("int8", "lora"), ("nf4", "lora"), ("fp4", "lora"), ("none", "full")]
VARIANTS = {"lora": {}, "dora": dict(use_dora=True), "rslora": dict(use_rslora=True), "pissa": dict(init="pissa"),
            "olora": dict(init="olora"), "loftq": dict(init="loftq")}  # attach_lora keywords
VARIANT_SETTINGS = [("none", "dora"), ("nf4", "dora"), ("none", "rslora"), ("none", "pissa"), ("none", "olora"),
                    ("nf4", "loftq")]  # (quant, variant), LoRA
MODELS = ["tiny-llama", "smollm2-135m", "heldout-mistral", "heldout-qwen2",
          "tiny-gpt2", "minilm-l6", "heldout-roberta", "tiny-t5", "heldout-mt5"]
FAMILY = {"tiny-llama": "llama", "smollm2-135m": "llama", "heldout-mistral": "llama", "heldout-qwen2": "llama",
          "tiny-gpt2": "gpt2", "minilm-l6": "bert", "heldout-roberta": "bert", "tiny-t5": "t5",
          "heldout-mt5": "t5", "llama-7b": "llama"}  # --family picks these
HELD_OUT = {  # transformers config kwargs: architectures the activation formulas were not derived on
    "heldout-mistral": dict(model_type="mistral", hidden_size=96, intermediate_size=256, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                            tie_word_embeddings=False, max_position_embeddings=512, sliding_window=None),
    "heldout-qwen2": dict(model_type="qwen2", hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=2, vocab_size=300,
                          tie_word_embeddings=True, max_position_embeddings=512),
    # RoBERTa: positions start after the padding id (max_position_embeddings = 512 + 2), one token type
    "heldout-roberta": dict(model_type="roberta", hidden_size=96, intermediate_size=384, num_hidden_layers=3,
                            num_attention_heads=6, vocab_size=1000, type_vocab_size=1, pad_token_id=1,
                            max_position_embeddings=514),
    # mT5 = T5 v1.1: gated-GELU MLP, untied head; fewer encoder than decoder layers
    "heldout-mt5": dict(model_type="mt5", d_model=96, d_ff=256, d_kv=24, num_heads=4, num_layers=2,
                        num_decoder_layers=3, vocab_size=1000, decoder_start_token_id=0, pad_token_id=0,
                        eos_token_id=1),
}
TASK_TYPE = {"causal-lm": "CAUSAL_LM", "classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM"}  # peft's
BIG = "llama-7b"  # config-only built-in: random weights on the GPU
GOALS = {"base_weights": 2.0, "adapters": 2.0, "gradients": 2.0, "optimizer": 2.0, "activations": 20.0,
         "peak": 5.0, "device": 10.0}
MIB = 2**20


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    desc = f"{cores}-core CPU ({cpu}), {platform.system()} {platform.release()}"
    import torch

    if torch.cuda.is_available():
        desc += f"; GPU: {torch.cuda.get_device_name()}"
    return desc


def versions() -> str:
    import bitsandbytes
    import peft
    import torch
    import transformers

    return (f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
            f"bitsandbytes {bitsandbytes.__version__}, python {platform.python_version()}")


def model_config(name: str):
    """(the transformers config the model is built and planned from, its task): a held-out architecture's
    or a built-in's; a classifier's head gets one output per label of the built-in ``topic`` task."""
    from transformers import AutoConfig

    from lorakit.config.families import default_task
    from lorakit.data.tasks.topic import LABELS
    from lorakit.models.loading import builtin_config

    if name in HELD_OUT:
        kw = dict(HELD_OUT[name])
        cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    else:
        cfg = builtin_config(name)
    task = default_task(cfg.model_type)
    if task == "classification":
        cfg.id2label = dict(enumerate(LABELS))  # num_labels follows
        cfg.label2id = {x: i for i, x in enumerate(LABELS)}
    return cfg, task


def random_weights_dir(name: str, root: Path, device: str) -> str:
    """Save a random-weight model (a held-out architecture, or a built-in's config) with its task's head
    and a lorakit tokenizer under root; loaded back through load_model's local-directory path."""
    import torch

    from lorakit.common.quiet import progress_bars_off
    from lorakit.models.heads import auto_class
    from lorakit.models.tiny_llama import byte_tokenizer, tiny_tokenizer

    out = root / name
    if not (out / "config.json").exists():
        cfg, task = model_config(name)
        torch.manual_seed(0)
        big = name == BIG
        # a 7B model is initialised on the GPU in bf16 (seconds, not minutes on the CPU)
        with torch.device(device if big else "cpu"):
            model = auto_class(task).from_config(cfg, dtype=torch.bfloat16 if big else torch.float32)
        with progress_bars_off("transformers"):  # no "Writing model shards" bar in the table
            model.save_pretrained(out)
        # the held-out vocabularies (300, 1000) are smaller than tiny-llama's subword one (1536)
        (byte_tokenizer() if name in HELD_OUT else tiny_tokenizer()).save_pretrained(out)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return str(out)


def make_batch(task: str, vocab_size: int, n_labels: int, args, device: str) -> dict:
    """A full-length batch of random tokens (special ids 0-2 left out: RoBERTa's padding id would shift
    its positions) with the labels of ``task``: the inputs (causal LM), one class per example
    (classification), or decoder targets as long as the inputs (seq2seq, as the planner assumes)."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab_size, (args.batch_size, args.seq_len), generator=g)
    labels = {"causal-lm": ids, "classification": torch.arange(args.batch_size) % max(n_labels, 1),
              "seq2seq": torch.randint(3, vocab_size, (args.batch_size, args.seq_len), generator=g)}[task]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def train_two_steps(model, batch, device: str):
    """Two steps as transformers' Trainer takes them; returns (optimizer, TrainingPeak, step seconds)."""
    import torch

    from lorakit.memory.step_peak import TrainingPeak

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)  # lorakit.train's adamw
    peak = TrainingPeak(device)
    model.train()
    t0 = time.perf_counter()
    for _ in range(2):
        peak.step_begin(model, opt)
        loss = model(**batch).loss
        peak.mark("backward")
        loss.backward()
        del loss
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        peak.mark("optimizer step")
        opt.step()
        opt.zero_grad(set_to_none=True)
        peak.step_end()
    return opt, peak, (time.perf_counter() - t0) / 2


def run_one(name: str, source: str, quant: str, method: str, gc_on: bool, args, device: str,
            variant: str = "lora") -> dict:
    import torch

    from lorakit.adapters.lora import attach_lora, prepare_full
    from lorakit.memory.breakdown import measure
    from lorakit.memory.planner import plan_memory
    from lorakit.models.loading import load_model

    if device == "cuda":
        torch.cuda.empty_cache()
    cfg, task = model_config(name)
    labels = list(cfg.id2label.values()) if task == "classification" else None
    model = load_model(source, quant=quant, double_quant=True, dtype=args.dtype, device=device, task=task,
                       labels=labels).model
    if method == "lora":
        model = attach_lora(model, rank=8, alpha=16, dropout=0.05, target_modules="qv", gradient_checkpointing=gc_on,
                            task_type=TASK_TYPE[task], **VARIANTS[variant])
    else:
        model = prepare_full(model, gc_on)
    batch = make_batch(task, cfg.vocab_size, len(labels or ()), args, device)
    opt, peak, step_s = train_two_steps(model, batch, device)
    reading = peak.reading
    measured = measure(model, opt, batch)  # gradients counted by size; activations by one replay forward
    # from the config alone (a classifier's: with the run's label count, which the name alone does not give)
    planned = plan_memory(cfg, method=method, quant=quant, double_quant=True, dtype=args.dtype, rank=8,
                          target_modules="qv", batch_size=args.batch_size, seq_len=args.seq_len,
                          gradient_checkpointing=gc_on, optimizer="adamw", dropout=0.05, device=device,
                          use_dora=VARIANTS[variant].get("use_dora", False), task=task)
    del model, opt, batch
    gc.collect()
    return dict(planned=planned.as_dict(), measured=measured.as_dict(), step_s=step_s,
                peak=reading.as_dict() if reading else None, peaks=[r.as_dict() for r in peak.readings],
                peak_errors=peak.errors)


def err(p, m) -> float:
    return 100.0 * (p - m) / m if m else (0.0 if p == m else float("inf"))


def fmt_err(p, m) -> str:
    return "exact" if p == m else f"{err(p, m):+.2f} %"


def report(row: dict, name: str, quant: str, method: str, gc_on: bool, worst: dict) -> None:
    from lorakit.memory.breakdown import CATEGORIES

    setting = f"| {name} | {quant} | {method} | {'on' if gc_on else 'off'} |"
    planned, measured = row["planned"], row["measured"]
    for cat in list(CATEGORIES) + ["total"]:
        p, m = planned[cat], measured[cat]
        if cat in worst and m:
            worst[cat] = max(worst[cat], abs(err(p, m)))
        print(f"{setting} {cat} | {p / MIB:.3f} | {m / MIB:.3f} | {fmt_err(p, m)} |")
    if measured.get("head") or planned.get("head"):  # a classifier's head: its share of the three categories
        p, m = (sum((d.get("head") or {}).values()) for d in (planned, measured))
        print(f"{setting} head (within the above) | {p / MIB:.3f} | {m / MIB:.3f} | {fmt_err(p, m)} |")
    peak = row["peak"]
    if peak is None:
        print(f"{setting} peak | {planned['peak'] / MIB:.3f} | not measured: {'; '.join(row['peak_errors'])} | |")
        return
    worst["peak"] = max(worst["peak"], abs(err(planned["peak"], peak["peak"])))
    print(f"{setting} peak ({planned['peak_at']} / {peak['peak_at']}) | {planned['peak'] / MIB:.3f} | "
          f"{peak['peak'] / MIB:.3f} | {fmt_err(planned['peak'], peak['peak'])} |")
    if peak.get("reserved") is not None:
        p_dev = planned["peak"] + (planned.get("device_overhead") or 0)
        m_dev = peak["reserved"] + (peak.get("context") or 0)
        worst["device"] = max(worst["device"], abs(err(p_dev, m_dev)))
        print(f"{setting} reserved + context ({(peak.get('context') or 0) / MIB:.0f} MiB) | {p_dev / MIB:.3f} | "
              f"{m_dev / MIB:.3f} | {fmt_err(p_dev, m_dev)} |")


def settings_for(name: str, args) -> list:
    """(quant, method, variant, checkpointing) of every row of ``name``."""
    settings = [] if args.variants_only and name != BIG else \
        [(*s, "lora") for s in SETTINGS if name != BIG or s in (("none", "lora"), ("nf4", "lora"), ("none", "full"))]
    if name != BIG and not args.no_variants:
        settings += [(quant, "lora", variant) for quant, variant in VARIANT_SETTINGS]
    return [(*s, gc_on) for gc_on in ((False,) if args.quick or name == BIG else (False, True)) for s in settings]


def run_model(name: str, args, device: str, root: Path, worst: dict, rows: list) -> None:
    """Every row of ``name``: measured, planned, printed and appended to ``rows`` (a failed row as its error)."""
    from lorakit.common.errors import ConfigError

    for quant, method, variant, gc_on in settings_for(name, args):
        label = method if variant == "lora" else f"lora ({variant})"
        t0 = time.perf_counter()
        try:
            needs_dir = name in HELD_OUT or args.random_weights or name == BIG
            source = random_weights_dir(name, root, device) if needs_dir else name
            row = run_one(name, source, quant, method, gc_on, args, device, variant)
        except ConfigError as exc:  # a combination lorakit refuses with a reason (e.g. OLoRA on GPT-2's Conv1D)
            print(f"| {name} | {quant} | {label} | {gc_on} | refused: {exc.problems} | | | |", flush=True)
            rows.append(dict(model=name, quant=quant, method=method, variant=variant, gc=gc_on, refused=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
            print(f"| {name} | {quant} | {label} | {gc_on} | FAILED: {type(exc).__name__}: "
                  f"{str(exc)[:300]} | | | |", flush=True)
            rows.append(dict(model=name, quant=quant, method=method, variant=variant, gc=gc_on, error=repr(exc)))
            continue
        row.update(model=name, quant=quant, method=method, variant=variant, gc=gc_on,
                   wall_s=time.perf_counter() - t0)
        rows.append(row)
        report(row, name, quant, label, gc_on, worst)
        sys.stdout.flush()
        if args.json:
            Path(args.json).write_text(json.dumps(dict(device=device, machine=machine(), rows=rows), indent=1))
    if name == BIG:
        shutil.rmtree(root / name, ignore_errors=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="one model (repeatable; default: all of MODELS)")
    ap.add_argument("--family", action="append", choices=sorted(set(FAMILY.values())),
                    help="the models of one family (repeatable; with --model: both)")
    ap.add_argument("--quick", action="store_true", help="batch 2 x 32 tokens, checkpointing off only")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--random-weights", action="store_true", help="build every model from its config")
    ap.add_argument("--big", action="store_true", help=f"add {BIG} with random weights (CUDA)")
    ap.add_argument("--variants-only", action="store_true", help="only the DoRA/rsLoRA/PiSSA/OLoRA/LoftQ rows")
    ap.add_argument("--json", help="also write every row's raw figures here")
    ap.add_argument("--no-variants", action="store_true", help="leave out the DoRA/rsLoRA/PiSSA/OLoRA/LoftQ rows")
    args = ap.parse_args(argv)
    args.batch_size = args.batch_size or (2 if args.quick else 4)
    args.seq_len = args.seq_len or (32 if args.quick else 128)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    from lorakit.common.quiet import quiet_bitsandbytes
    from lorakit.memory.breakdown import CATEGORIES
    from lorakit.models.loading import default_device

    quiet_bitsandbytes()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    device = args.device or default_device()
    args.dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    models = list(args.model or ())
    models += [m for m in MODELS if FAMILY[m] in (args.family or ()) and m not in models]
    models = models or list(MODELS)
    if args.big:
        models.append(BIG)
    root = Path(tempfile.mkdtemp(prefix="lorakit-accuracy-"))
    t0 = time.perf_counter()
    print(f"# Memory accuracy: plan_memory vs measured, {time.strftime('%Y-%m-%d')}")
    print(f"# machine: {machine()}")
    print(f"# {versions()}")
    print(f"# device {device}; batch {args.batch_size} x {args.seq_len} tokens; {args.dtype}; LoRA r=8 on the "
          "family's qv preset, dropout 0.05; two torch AdamW steps; MiB = 2^20 bytes")
    print()
    print("| model | quant | method | checkpointing | figure | planned MiB | measured MiB | error |")
    print("|---|---|---|---|---|---:|---:|---:|")
    worst = {c: 0.0 for c in [*CATEGORIES, "peak", "device"]}
    rows = []
    for name in models:
        run_model(name, args, device, root, worst, rows)
    shutil.rmtree(root, ignore_errors=True)
    print()
    verdicts = [f"{cat}: worst {w:.2f} % (goal {GOALS[cat]:.0f} %) {'met' if w <= GOALS[cat] else 'MISSED'}"
                for cat, w in worst.items() if cat != "device" or device == "cuda"]
    print("# " + "; ".join(verdicts))
    failed, refused = sum("error" in r for r in rows), sum("refused" in r for r in rows)
    print(f"# {len(rows)} rows, {failed} failed, {refused} refused; {time.perf_counter() - t0:.0f} s")
    return 0 if all(worst[c] <= GOALS[c] for c in worst) and not any("error" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
