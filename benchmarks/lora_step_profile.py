"""How much of a LoRA step is matrix multiplication, and so the most any change with the same numbers can gain.

    python benchmarks/lora_step_profile.py [--steps 4] [--config lora|qlora]

The throughput benchmark's default LoRA run (SmolLM2-135M, r=8 on q_proj,v_proj, dropout 0.05, batch 4 x <= 128
tokens of extract-json, dynamic padding) as a bare loop of the step the Trainer runs: forward and loss,
backward, gradient clipping at 1.0, fused AdamW, zero_grad. Twice under ``torch.profiler``, alternating:

- "every position": the model's own forward and loss, the output head at every position (what the plain
  Trainer + peft baseline computes);
- "labelled rows": lorakit's ``labelled_loss``, the head only where a label is set (lorakit's default).

For each it prints the step time, the time in the matmul kernels (``aten::mm``/``addmm``/``bmm``, their own
time), their FLOPs as the profiler counts them and the GFLOP/s that makes, against this CPU's matmul speed
measured in the same run. Any change that keeps the numbers (the same loss at every step) must still do the
body's matmuls; removing every other cost and the padding rows would leave

    bound = (every-position step) / (labelled-rows matmul time x real / padded tokens)

as the largest speed-up over the baseline that such a change could reach on this machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def build(config: str) -> tuple:
    """(model, batches) as ``throughput.py``'s plain baseline builds them: peft's model, the collator's batches."""
    from throughput import plain_model  # the sibling benchmark: the peft docs' model
    from transformers import AutoTokenizer

    import lorakit
    from lorakit.data import build_data
    from lorakit.models.loading import model_dir

    quant = {"lora": {}, "qlora": {"quant": "nf4"}}[config]
    cfg = lorakit.RunConfig(max_steps=12, batch_size=4, seq_len=128, eval_examples=1, train_examples=64,
                            dropout=0.05, **quant)
    path = str(model_dir(cfg.model))
    tok = AutoTokenizer.from_pretrained(path)
    model = plain_model(cfg, path, "cpu")
    bundle = build_data(cfg, tok)
    rows = [{k: bundle.train[i][k] for k in ("input_ids", "attention_mask", "labels")}
            for i in range(len(bundle.train))]
    return model, [bundle.collator(rows[i:i + 4]) for i in range(0, len(rows) - 3, 4)]


def step_fn(model, labelled: bool):
    """One training step as the Trainer runs it (forward + loss, backward, clip, fused AdamW, zero_grad)."""
    from lorakit.models.labelled_loss import labelled_loss, lm_parts

    parts = lm_parts(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, fused=True)

    def step(batch):
        n = (batch["labels"][:, 1:] != -100).sum()
        out = labelled_loss(parts, batch, n) if labelled else model(**batch, num_items_in_batch=n)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad()
    return step


def profile(step, batches: list) -> dict:
    """Step seconds, matmul seconds and matmul GFLOP of one pass over ``batches`` (after one warm step)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step(batches[0])
    with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        t0 = time.perf_counter()
        for b in batches:
            step(b)
        wall = time.perf_counter() - t0
    mm = [e for e in prof.key_averages() if e.key in MATMULS]
    mm_s = sum(e.self_cpu_time_total for e in mm) / 1e6
    n = len(batches)
    return dict(step_s=wall / n, mm_s=mm_s / n, gflop=sum(e.flops for e in mm) / 1e9 / n)


def main() -> None:
    from lorakit.common.devices import matmul_gflops
    from lorakit.common.quiet import quiet_libraries

    quiet_libraries()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4, help="profiled steps per pass")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--config", choices=("lora", "qlora"), default="lora")
    ns = p.parse_args()
    torch.manual_seed(0)
    model, batches = build(ns.config)
    batches = batches[:ns.steps]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["input_ids"].numel() for b in batches)
    steps = {"every position": step_fn(model, False), "labelled rows": step_fn(model, True)}
    runs: dict[str, list] = {k: [] for k in steps}
    for i in range(ns.repeats):  # alternate, so drift hits both alike
        for name in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
            runs[name].append(profile(steps[name], batches))
    ceiling = matmul_gflops("float32", "cpu", min_seconds=2.0)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    print(f"# {ns.config} step profile: SmolLM2-135M, batch 4 x <= 128, {ns.steps} steps x {ns.repeats} repeats; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; real / padded tokens {real} / {padded} "
          f"({1 - real / padded:.1%} padding); fp32 matmul measured {ceiling:.1f} GFLOP/s")
    print("| head | s per step | matmul s (share) | matmul GFLOP per step | matmul GFLOP/s (of measured) |")
    print("|---|---:|---:|---:|---:|")
    for name, m in med.items():
        rate = m["gflop"] / m["mm_s"]
        print(f"| {name} | {m['step_s']:.3f} | {m['mm_s']:.3f} ({m['mm_s'] / m['step_s']:.0%}) | {m['gflop']:.1f} | "
              f"{rate:.1f} ({rate / ceiling:.0%}) |")
    every, lab = med["every position"], med["labelled rows"]
    print(f"labelled rows / every position: {every['step_s'] / lab['step_s']:.3f}x; "
          f"bound for any same-numbers change (no work but the labelled-rows matmuls, no padding rows): "
          f"{every['step_s'] / (lab['mm_s'] * real / padded):.3f}x the every-position step")


if __name__ == "__main__":
    main()
