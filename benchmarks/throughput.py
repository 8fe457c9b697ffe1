"""Training throughput: lorakit.train against plain transformers Trainer + peft, same process, same data.

    python benchmarks/throughput.py [--model smollm2-135m] [--steps 20] [--repeats 3] [--config lora|qlora|full]
    python benchmarks/throughput.py --random-weights      # a GPU machine without the model's package

Prints one table: real (non-padding) tokens/s of lorakit.train (its labelled-only head on, the default,
and off: ``RunConfig.labelled_head=False``) and of the plain baseline, their ratios and the largest
per-step loss difference between them (same seed, same data: the loss curve must not move), lorakit's
model FLOP/s as a fraction of this machine's measured matmul ceiling (fp32 and bf16), the time from
calling train() to the first logged loss (model cached), and the same run under bf16 autocast.
The plain baseline is written the way the peft docs show: (BitsAndBytesConfig + prepare_model_for_kbit_training
for QLoRA) get_peft_model + Trainer with a dynamic-padding collator, or the bare model for full
fine-tuning; it gets the very same tokenized examples lorakit builds. The three alternate, in a rotating
order, so drift (thermal, other load) hits each alike.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def matmul_ceiling(dtype: torch.dtype, device: str = "cpu") -> float:
    """Measured GFLOP/s of a matmul: the ceiling a training step is measured against. On CPU one SmolLM2 MLP
    projection over 256 tokens, timed for at least a second (``lorakit.common.devices.matmul_gflops``): a fixed
    2048^3 loop took 20 minutes in bf16 on a CPU that emulates it. On CUDA 8192^3, 20 times."""
    from lorakit.common.devices import matmul_gflops

    if device != "cuda":
        return matmul_gflops(str(dtype).removeprefix("torch."), device, min_seconds=1.0)
    n, reps = 8192, 20
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def flops_per_token(model_name: str, method: str, seq_len: int) -> float:
    """~(2 forward + 2 input-grad [+ 2 weight-grad for full]) x matmul params, plus attention scores."""
    from lorakit.models.loading import builtin_config

    c = builtin_config(model_name)
    head_dim = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    matmul_params = c.num_hidden_layers * per_layer + c.hidden_size * c.vocab_size  # + lm_head
    mult = 6 if method == "full" else 4  # LoRA: frozen weights need no weight gradient
    attn = c.num_hidden_layers * 2 * 2 * seq_len * c.hidden_size * (mult / 2)  # QK^T and AV
    return mult * matmul_params + attn


def plain_model(cfg, path: str, device: str):
    """The model as the peft docs build it: 4-bit via BitsAndBytesConfig and prepare_model_for_kbit_training
    (QLoRA), get_peft_model (LoRA), or the bare model (full fine-tuning)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, set_seed

    from lorakit.models.quantization import bnb_config

    quantization = bnb_config(cfg.quant, cfg.double_quant, cfg.dtype)
    extra = {"quantization_config": quantization, "device_map": device} if quantization is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **extra)
    model.config.use_cache = False
    if quantization is not None:  # same checkpointing setting as lorakit's run: the same computation
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    set_seed(cfg.seed)
    if cfg.method == "full":
        return model
    targets = cfg.resolved_targets()  # a tuple of names, or peft's own 'all-linear'
    return get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                            target_modules=targets if isinstance(targets, str) else list(targets),
                                            task_type="CAUSAL_LM"))


def plain_trainer(cfg, bundle_cache: dict, device: str = "cpu") -> dict:
    """The baseline: peft + Trainer as in the peft docs, dynamic padding, no lorakit in the loop."""
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from lorakit.data import build_data
    from lorakit.models.loading import model_dir

    path = str(model_dir(cfg.model) or cfg.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = plain_model(cfg, path, device)
    if "bundle" not in bundle_cache:
        bundle_cache["bundle"] = build_data(cfg, tok)
    data = bundle_cache["bundle"]

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.t1 = time.perf_counter()

    clock = Clock()
    args = TrainingArguments(output_dir="/tmp/lorakit-bench-plain", max_steps=cfg.max_steps,
                             per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                             logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                             seed=cfg.seed, use_cpu=device == "cpu", include_num_input_tokens_seen="non_padding",
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=data.train,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
                      callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # same as lorakit: no per-step printing
    trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return dict(tokens_per_s=tokens / (clock.t1 - clock.t0), final_loss=losses[-1], losses=losses)


def lorakit_run(cfg) -> dict:
    import lorakit

    rec = lorakit.train(cfg, store=False)
    assert rec.status == "finished", rec.reason
    return dict(tokens_per_s=rec.tokens_per_s, final_loss=rec.history[-1]["loss"],
                first_loss_s=rec.time_to_first_loss_s, train_loss=rec.train_loss,
                losses=[h["loss"] for h in rec.history])


def lorakit_old_head(cfg) -> dict:
    """lorakit.train with the output head at every position (``labelled_head=False``): the step before."""
    return lorakit_run(cfg.replace(labelled_head=False))


def max_rel_diff(a: list, b: list) -> float:
    """The largest relative difference between two runs' per-step losses."""
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


CONFIGS = {"lora": {}, "qlora": {"quant": "nf4"}, "full": {"method": "full"}}


def main() -> None:
    import lorakit
    from lorakit.common.quiet import quiet_libraries

    quiet_libraries()
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--config", choices=tuple(CONFIGS), default="lora", help="LoRA, QLoRA (nf4) or full fine-tuning")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast run")
    p.add_argument("--random-weights", action="store_true",
                   help="the model's config with random weights and tiny-llama's tokenizer (no model package)")
    ns = p.parse_args()
    from lorakit.models.loading import default_device

    device = default_device()
    source = ns.model
    if ns.random_weights:
        import tempfile
        from pathlib import Path

        from memory_accuracy import random_weights_dir  # the sibling benchmark

        source = random_weights_dir(ns.model, Path(tempfile.mkdtemp(prefix="lorakit-tp-")), device)

    # eval_examples=1: the benchmark is about the training loop, not generation
    cfg = lorakit.RunConfig(model=source, max_steps=ns.steps, batch_size=ns.batch_size, seq_len=ns.seq_len,
                            eval_examples=1, train_examples=max(64, ns.steps * ns.batch_size), dropout=0.05,
                            **CONFIGS[ns.config])
    lorakit.load_model(source)  # make sure the cache exists: time-to-first-loss is for a cached model
    gf32, gbf16 = matmul_ceiling(torch.float32, device=device), matmul_ceiling(torch.bfloat16, device=device)

    cache: dict = {}
    runs = {lorakit_run: [], lorakit_old_head: [], plain_trainer: []}
    order = list(runs)
    # one untimed 2-step run of each first: one-time costs of the process (bitsandbytes' first 4-bit
    # kernels, lazy imports, the allocator's first growth) would otherwise land on whoever runs first
    # (QLoRA with one repeat: 20.8 s to the first loss and 0.61x plain, all of it in lorakit's first run)
    for fn in order:
        warm = cfg.replace(max_steps=2)
        fn(warm, cache, device) if fn is plain_trainer else fn(warm)
    for i in range(ns.repeats):  # rotate who goes first, so drift hits all three alike
        for fn in order[i % 3:] + order[:i % 3]:
            runs[fn].append(fn(cfg, cache, device) if fn is plain_trainer else fn(cfg))
    ours, old, plain = runs[lorakit_run], runs[lorakit_old_head], runs[plain_trainer]
    bf16 = None if ns.no_bf16 else lorakit_run(cfg.replace(bf16_autocast=True))

    rows = table_rows(ours, old, plain, bf16, flops_per_token(ns.model, cfg.method, ns.seq_len), gf32, gbf16)
    label = {"lora": "LoRA", "qlora": "QLoRA (nf4)", "full": "full fine-tuning"}[ns.config]
    print(f"# throughput: {ns.model}, {label}"
          + ("" if cfg.method == "full" else f" r={cfg.rank} on {','.join(cfg.resolved_targets())}")
          + f", batch {ns.batch_size} x <= {ns.seq_len} tokens, {ns.steps} steps, median of {ns.repeats}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          + (f", {torch.cuda.get_device_name()}" if device == "cuda" else "")
          + (" (random weights)" if ns.random_weights else ""))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"| {k:<{width}} | {v:>24} |")


def table_rows(ours: list, old: list, plain: list, bf16, fpt: float, gf32: float, gbf16: float) -> list:
    """(figure, value) rows: medians of each side's runs; losses from each side's first run."""
    tps, tps_old, tps_plain = (statistics.median(r["tokens_per_s"] for r in rs) for rs in (ours, old, plain))
    rows = [
        ("lorakit.train tokens/s", f"{tps:,.0f}"),
        ("lorakit.train, head at every position", f"{tps_old:,.0f}"),
        ("plain Trainer + peft tokens/s", f"{tps_plain:,.0f}"),
        ("ratio lorakit / plain", f"{tps / tps_plain:.3f}"),
        ("ratio head at every position / plain", f"{tps_old / tps_plain:.3f}"),
        ("ratio labelled head / every position", f"{tps / tps_old:.3f}"),
        ("final loss lorakit / every position / plain",
         f"{ours[0]['final_loss']:.4f} / {old[0]['final_loss']:.4f} / {plain[0]['final_loss']:.4f}"),
        ("largest per-step loss diff vs plain",
         f"{max_rel_diff(ours[0]['losses'], plain[0]['losses']):.1e} (every position: "
         f"{max_rel_diff(old[0]['losses'], plain[0]['losses']):.1e})"),
        ("matmul ceiling fp32 / bf16 GFLOP/s", f"{gf32:,.0f} / {gbf16:,.0f}"),
        ("model GFLOP/s (lorakit)", f"{fpt * tps / 1e9:,.1f}"),
        ("fraction of fp32 / bf16 ceiling", f"{fpt * tps / 1e9 / gf32:.1%} / {fpt * tps / 1e9 / gbf16:.1%}"),
        ("time to first loss (s, cached model)", f"{statistics.median(r['first_loss_s'] for r in ours):.2f}"),
    ]
    if bf16 is not None:
        rows += [("bf16 autocast tokens/s", f"{bf16['tokens_per_s']:,.0f} ({bf16['tokens_per_s'] / tps:.2f}x fp32)"),
                 ("bf16 autocast train loss (fp32)", f"{bf16['train_loss']:.4f} ({ours[0]['train_loss']:.4f})")]
    return rows


if __name__ == "__main__":
    main()
