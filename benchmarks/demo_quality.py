"""The demo's three runs over several seeds: does the table teach what the method claims? (issue 11 part 4)

Runs ``lorakit.cli.commands.demo_configs`` (what ``lorakit demo`` trains) for each seed, then prints each method's
task metric per seed, the mean, and LoRA's and QLoRA's mean as a fraction of full fine-tuning's (goals:
QLoRA >= 0.85x, LoRA >= 0.9x), with each run's wall time. Overrides try other settings through the same runs:

    .venv/bin/python benchmarks/demo_quality.py --seeds 0 1 2
    .venv/bin/python benchmarks/demo_quality.py --seeds 0 1 2 --full-lr 5e-5 --dropout 0.05 --rank 16
    .venv/bin/python benchmarks/demo_quality.py --seeds 0 --targets qv --lora-lr 5e-4 --full-lr 5e-5 --steps 40
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lorakit
from lorakit.cli.commands import demo_configs
from lorakit.common.quiet import quiet_libraries


def configs(ns, seed: int) -> list:
    out = []
    given = dict(steps=ns.steps, seq_len=ns.seq_len, eval_examples=ns.eval_examples)
    for cfg in demo_configs(ns.model, seed=seed, **{k: v for k, v in given.items() if v is not None}):
        if cfg.method == "lora":
            cfg = cfg.replace(learning_rate=ns.lora_lr or cfg.learning_rate,
                              target_modules=ns.targets or cfg.target_modules,
                              dropout=cfg.dropout if ns.dropout is None else ns.dropout)
            if ns.rank:  # alpha follows the rank: the same alpha/r scale
                cfg = cfg.replace(rank=ns.rank, alpha=cfg.alpha * ns.rank // cfg.rank,
                                  name=cfg.name.replace(f"r{cfg.rank} ", f"r{ns.rank} "))
        elif ns.full_lr:
            cfg = cfg.replace(learning_rate=ns.full_lr)
        out.append(cfg)
    return out


def main() -> None:
    quiet_libraries()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, help="training steps of each run (default: the demo's)")
    p.add_argument("--seq-len", type=int, help="tokens per example (default: the demo's)")
    p.add_argument("--eval-examples", type=int, help="held-out examples scored (default: the demo's)")
    p.add_argument("--lora-lr", type=float, help="LoRA and QLoRA learning rate (default: the demo's)")
    p.add_argument("--full-lr", type=float, help="full fine-tuning learning rate (default: the demo's)")
    p.add_argument("--targets", help="LoRA target modules (default: the demo's)")
    p.add_argument("--rank", type=int, help="LoRA rank, alpha scaled with it (default: the demo's)")
    p.add_argument("--dropout", type=float, help="LoRA dropout (default: the demo's)")
    p.add_argument("--store", help="run store (default: a temporary one; the base's 'before' pass is shared)")
    ns = p.parse_args()
    store = ns.store or str(Path(tempfile.mkdtemp(prefix="lorakit-demo-quality-")) / "runs.db")
    metric: dict[str, list] = {}
    for seed in ns.seeds:
        for cfg in configs(ns, seed):
            t0 = time.perf_counter()
            rec = lorakit.train(cfg, store=store)
            metric.setdefault(cfg.name, []).append(rec.task_metric)
            targets = cfg.target_modules if cfg.method == "lora" else "every weight"
            print(f"seed {seed} | {cfg.name} | lr {cfg.learning_rate:g} | targets {targets} | "
                  f"{rec.status} | task metric {rec.task_metric} | eval loss {rec.eval_loss} | "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    means = {name: statistics.mean(v) for name, v in metric.items() if None not in v}
    full = next((m for name, m in means.items() if name.startswith("full")), None)
    for name, m in means.items():
        ratio = f", {m / full:.2f}x full fine-tuning" if full else ""
        print(f"{name}: mean task metric {m:.3f} over seeds {ns.seeds}{ratio}")


if __name__ == "__main__":
    main()
