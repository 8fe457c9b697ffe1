"""Where the recommended defaults come from (issue 29): a small learning-rate sweep per model and method.

For each model, method (LoRA, QLoRA = LoRA on an NF4 base, full fine-tuning) and learning rate, one run on
the model's recommended task with every other field at RunConfig's recommended value; prints the task metric
before -> after, the eval loss, the steps and the wall time. The best learning rate per (family, method)
is what ``lorakit.config.recommend`` gives a field left unset.

    .venv/bin/python benchmarks/recommended_defaults.py --model minilm-l6 --lrs 3e-4 1e-3 3e-3
    .venv/bin/python benchmarks/recommended_defaults.py --model minilm-l6 --methods full --lrs 3e-5 1e-4 3e-4
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lorakit
from lorakit.common.quiet import quiet_libraries

METHODS = {"lora": dict(method="lora"), "qlora": dict(method="lora", quant="nf4"), "full": dict(method="full")}


def main() -> None:
    quiet_libraries()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--lrs", type=float, nargs="+", default=[None], help="learning rates (default: the recommended)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", nargs="*", default=[], help="other RunConfig fields, e.g. max_steps=40 batch_size=8")
    ns = p.parse_args()
    extra = field_values(ns.set)
    store = str(Path(tempfile.mkdtemp(prefix="lorakit-defaults-")) / "runs.db")
    print("| model | method | lr | seed | steps x batch | metric before -> after | eval loss | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for method in ns.methods:
        for lr in ns.lrs:
            for seed in ns.seeds:
                settings = {**METHODS[method], **extra, "seed": seed}
                if lr is not None:
                    settings["learning_rate"] = lr
                cfg = lorakit.RunConfig(model=ns.model, **settings)
                t0 = time.perf_counter()
                run = lorakit.train(cfg, store=store)
                wall = time.perf_counter() - t0
                print(f"| {ns.model} | {method} | {cfg.learning_rate:g} | {seed} | {cfg.max_steps} x {cfg.batch_size}"
                      f" | {_f(run.task_metric_before)} -> {_f(run.task_metric)} | {_f(run.eval_loss)} | {wall:.0f} |",
                      flush=True)


def field_values(pairs: list[str]) -> dict:
    """``["max_steps=40", "quant=nf4"]`` -> ``{"max_steps": 40, "quant": "nf4"}`` (ints and floats as numbers);
    the ``--set`` of this script and of ``eval_share.py``."""
    return {k: _number(v) for k, v in (pair.split("=", 1) for pair in pairs)}


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
