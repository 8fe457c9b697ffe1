"""The demo's three runs over several seeds: does the table teach what the method claims? (issue 11 part 4)

Runs ``lorakit.cli.demo_configs`` (what ``lorakit demo`` trains) for each seed, then prints each method's
task metric per seed, the mean, and LoRA's and QLoRA's mean as a fraction of full fine-tuning's (goals:
QLoRA >= 0.85x, LoRA >= 0.9x), with each run's wall time. Overrides try other settings through the same runs:

    .venv/bin/python benchmarks/demo_quality.py --seeds 0 1 2
    .venv/bin/python benchmarks/demo_quality.py --seeds 0 --lora-lr 1e-3 --targets all-linear --steps 30
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lorakit
from lorakit.cli import demo_configs
from lorakit.logging_setup import quiet_libraries


def configs(ns, seed: int) -> list:
    out = []
    for cfg in demo_configs(ns.model, ns.steps, ns.seq_len, ns.eval_examples, seed=seed):
        if cfg.method == "lora":
            cfg = cfg.replace(learning_rate=ns.lora_lr or cfg.learning_rate,
                              target_modules=ns.targets or cfg.target_modules)
        elif ns.full_lr:
            cfg = cfg.replace(learning_rate=ns.full_lr)
        out.append(cfg)
    return out


def main() -> None:
    quiet_libraries()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-examples", type=int, default=24)
    p.add_argument("--lora-lr", type=float, help="LoRA and QLoRA learning rate (default: the demo's)")
    p.add_argument("--full-lr", type=float, help="full fine-tuning learning rate (default: the demo's)")
    p.add_argument("--targets", help="LoRA target modules (default: the demo's)")
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
