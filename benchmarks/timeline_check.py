"""A step's memory timeline, planned next to measured, for LoRA, QLoRA (nf4) and full fine-tuning: two steps of
``lorakit.train`` each, nothing stored. On CUDA the measured timeline comes from the allocator at the phase marks
(``memory.timeline``), on CPU from the profiler's trajectory. Exits non-zero when a measured timeline's tallest
moment is not the measured peak or a planned one's not the planned peak.

    python benchmarks/timeline_check.py [--model tiny-llama] [--seq-len 128] [--batch-size 4]
"""
from __future__ import annotations

import argparse
import sys
import warnings

import lorakit
from lorakit.memory import tallest

MiB = 2**20
SETUPS = {"lora": dict(method="lora", quant="none"), "qlora": dict(method="lora", quant="nf4"),
          "full": dict(method="full", quant="none")}


def _row(m) -> str:
    return "  ".join(f"{phase} {sum(parts.values()) / MiB:,.1f}" for phase, parts in m.timeline)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    failed = 0
    for name, setup in SETUPS.items():
        cfg = lorakit.RunConfig(model=args.model, max_steps=2, batch_size=args.batch_size, seq_len=args.seq_len,
                                train_examples=2 * args.batch_size, eval_examples=1, **setup)
        run = lorakit.train(cfg, store=False)
        m, p = run.memory, run.planned_memory
        if run.status != "finished" or m is None or not m.timeline or p is None or not p.timeline:
            print(f"{name}: no timeline ({run.status}: {run.reason})")
            failed += 1
            continue
        ok = tallest(m.timeline) == (m.peak_at, m.peak) and tallest(p.timeline)[1] == p.peak
        failed += not ok
        device = (p.assumes or {}).get("device", "?")
        print(f"{name} ({device}): peak measured {m.peak / MiB:,.1f} MiB at {m.peak_at}, planned "
              f"{p.peak / MiB:,.1f} at {p.peak_at}; tallest moment is the peak: {'yes' if ok else 'NO'}")
        print(f"  measured (MiB): {_row(m)}")
        print(f"  planned  (MiB): {_row(p)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
