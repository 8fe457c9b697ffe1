"""One AdamW step over SmolLM2-135M-shaped fp32 parameters: torch's per-tensor loop (its CPU default), foreach and
fused, alternating in one process.

    python benchmarks/adamw_cost.py [--repeats 2]

``RunConfig.optimizer='adamw'`` is the Trainer's ``adamw_torch`` (the per-tensor loop on CPU); transformers' own
default with torch >= 2.8 is ``adamw_torch_fused``. Full fine-tuning steps every weight, so this is part of its step.
"""
from __future__ import annotations

import argparse
import time

import torch

# SmolLM2-135M: the tied embedding, then per block q, k, v, o, gate, up, down and two norms
SHAPES = [(49152, 576)] + [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536),
                           (576,), (576,)] * 30
KINDS = {"per-tensor (CPU default)": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def seconds_per_step(kwargs: dict, steps: int = 3) -> float:
    params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-4, **kwargs)
    opt.step()  # the first step creates the state
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    ns = p.parse_args()
    torch.manual_seed(0)
    times: dict = {k: [] for k in KINDS}
    for _ in range(ns.repeats):
        for name, kwargs in KINDS.items():
            times[name].append(seconds_per_step(kwargs))
    n = sum(torch.Size(s).numel() for s in SHAPES)
    for name, ts in times.items():
        print(f"{name:<25} {' '.join(f'{t:.3f}' for t in ts)} s per step ({n / 1e6:.1f} M parameters)")


if __name__ == "__main__":
    main()
