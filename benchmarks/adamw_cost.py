"""One AdamW step over SmolLM2-135M-shaped fp32 parameters: torch's per-tensor loop (its CPU default), foreach and
fused, alternating in one process.

    python benchmarks/adamw_cost.py [--model smollm2-135m] [--repeats 2]

``RunConfig.optimizer='adamw'`` was the Trainer's ``adamw_torch`` (the per-tensor loop on CPU) until this measurement;
it is now ``adamw_torch_fused``, transformers' own default with torch >= 2.8. Full fine-tuning steps every weight, so
this is part of its step.
"""
from __future__ import annotations

import argparse
import time

import torch


def shapes(model: str) -> list:
    """The trainable tensors of a built-in LLaMA-style model, from its config: the embedding, then per block
    q, k, v, o, gate, up, down and two norms, then the final norm and (unless tied to the embedding) the head."""
    from lorakit.models.loading import builtin_config

    c = builtin_config(model)
    h, i = c.hidden_size, c.intermediate_size
    kv = c.num_key_value_heads * (h // c.num_attention_heads)
    block = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i), (h,), (h,)]
    head = [] if c.tie_word_embeddings else [(c.vocab_size, h)]
    return [(c.vocab_size, h)] + block * c.num_hidden_layers + [(h,)] + head


KINDS = {"per-tensor (CPU default)": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def seconds_per_step(sizes: list, kwargs: dict, steps: int = 3) -> float:
    params = [torch.nn.Parameter(torch.randn(s)) for s in sizes]
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
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=2)
    ns = p.parse_args()
    sizes = shapes(ns.model)
    torch.manual_seed(0)
    times: dict = {k: [] for k in KINDS}
    for _ in range(ns.repeats):
        for name, kwargs in KINDS.items():
            times[name].append(seconds_per_step(sizes, kwargs))
    n = sum(torch.Size(s).numel() for s in sizes)
    for name, ts in times.items():
        print(f"{name:<25} {' '.join(f'{t:.3f}' for t in ts)} s per step ({n / 1e6:.1f} M parameters)")


if __name__ == "__main__":
    main()
