"""Sweep scaling: a 4-trial grid on tiny-llama, trained here (executor="local") and as Ray tasks on a local Ray.

    python benchmarks/sweep_scaling.py [--model tiny-llama] [--steps 10] [--json out.json]

Prints, in seconds: the local sweep; Ray's start-up (ray.init, once per process); the Ray sweep
with one trial at a time and as many CPUs per trial as the machine has (the local schedule: Ray's
overhead per trial is the time per trial spent outside train() on Ray less the same here), cold
(new worker processes import torch and transformers) and warm (the workers are reused); and the Ray
sweep with one CPU per trial, so that as many trials run at once as there are cores. The losses of
every Ray trial must equal the local ones (seeded): the largest gap is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import lorakit
from lorakit.sweeps import ray_trials as sweep_ray

GRID = dict(rank=[4, 8], learning_rate=[1e-3, 2e-3])


def outside(table, wall_s: float) -> float:
    """Seconds per trial the sweep spent outside train() (its record's wall_s): for trials run one at a
    time this is what the executor adds, and it does not move with how fast the trials themselves ran."""
    return (wall_s - table["wall_s"].sum()) / len(table)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    base = lorakit.RunConfig(model=args.model, dataset="arithmetic", max_steps=args.steps, batch_size=4,
                             train_examples=64, eval_examples=4, seed=1)
    n = len(GRID["rank"]) * len(GRID["learning_rate"])
    cores = os.cpu_count() or 1

    lorakit.train(base.replace(max_steps=1), store=False)  # the model cached and the libraries imported
    local, local_s = timed(lambda: lorakit.sweep(base, store=False, **GRID))

    import ray

    _, start_s = timed(lambda: sweep_ray.connect(ray, None))
    serial = {"cpu": cores}  # one trial at a time, every core: the local schedule

    def on_ray(resources):
        return timed(lambda: lorakit.sweep(base, store=False, executor="ray", resources_per_trial=resources, **GRID))

    cold, cold_s = on_ray(serial)
    warm, warm_s = on_ray(serial)
    parallel, parallel_s = on_ray({"cpu": 1})
    for table in (cold, warm, parallel):
        assert list(table["status"]) == ["finished"] * n, table[["status", "reason"]]
    loss_gap = max(abs(a - b) for t in (cold, warm, parallel)
                   for a, b in zip(t["train_loss"], local["train_loss"], strict=True))
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {cores} cores, {platform.python_version()}",
        "ray": ray.__version__, "model": args.model, "trials": n, "steps": args.steps,
        "local_s": local_s, "ray_start_s": start_s, "ray_cold_s": cold_s, "ray_warm_s": warm_s,
        "ray_parallel_s": parallel_s, "local_outside_train_s": outside(local, local_s),
        "overhead_per_trial_cold_s": outside(cold, cold_s) - outside(local, local_s),
        "overhead_per_trial_warm_s": outside(warm, warm_s) - outside(local, local_s),
        "speedup_parallel": local_s / parallel_s,
        "max_train_loss_gap": loss_gap,
    }
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v:.2f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
