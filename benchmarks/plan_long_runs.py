"""How long planning a run takes as its max_steps grows: the run plan draws the first EXACT_STEPS batches exactly and
bounds the later ones, so a run of 2**31-1 steps plans about as fast as one of ten thousand.

    python benchmarks/plan_long_runs.py [--model tiny-llama] [--repeats 3]

Prints, per max_steps: the median seconds of ``lorakit.plan`` and ``lorakit.plan_time`` (warm: the data's tokenizer
and the planner's model tally are cached by the first call), the batches listed and the step that makes the peak
(None: the bound of the steps after EXACT_STEPS).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

STEPS = (10, 1_000, 10_000, 100_000, 10_000_000, 2**31 - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import lorakit

    cfg = lorakit.RunConfig(model=args.model, dataset="arithmetic", train_examples=16, batch_size=2, seq_len=256)
    lorakit.plan(cfg.replace(max_steps=10), device="cpu")  # warm: imports, tokenizer, the model's tally
    print("| max_steps | `lorakit.plan` (s) | batches listed | peak step | `plan_time` (s) |")
    print("|---|---|---|---|---|")
    for steps in STEPS:
        run = cfg.replace(max_steps=steps)
        plan_s, time_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = lorakit.plan(run, device="cpu")
            t1 = time.perf_counter()
            lorakit.plan_time(run, p.batches, steps=p.steps)
            plan_s.append(t1 - t0)
            time_s.append(time.perf_counter() - t1)
        print(f"| {steps:,} | {statistics.median(plan_s):.2f} | {len(p.batches):,} | {p.peak_step} | "
              f"{statistics.median(time_s):.3f} |")


if __name__ == "__main__":
    main()
