"""A 4-bit base repacked by bitsandbytes for its fused CPU kernel (what a CPU with AVX512-BF16 does at the first
evaluation forward): does merging still give the adapter model's logits, and does training still learn?

1. Merge: max |merged logits - adapter logits| on a QLoRA model (LoRA on every linear layer, B off zero),
   without a repack, after bitsandbytes' ``_convert_weight_packed_for_cpu`` called directly ("explicit"), and
   after bitsandbytes' own forward repacked it ("forward", its capability flag set as on such a CPU).
2. Training: a QLoRA run (bf16 compute, its base's "before" pass first, eval steps between) with bitsandbytes
   made to believe the CPU has AVX512-BF16 (so its eval passes repack for real), against the same run without:
   per-step losses. On a CPU without the fused kernel the repacked layers' eval outputs are meaningless
   (bitsandbytes' default gemv reads the packed layout as the usual one); only training is compared.

Runs on lorakit's code as it is on ``sys.path`` (put an older checkout first on PYTHONPATH to compare).
    python benchmarks/bnb_repack.py [--model tiny-llama] [--steps 8]
"""
from __future__ import annotations

import argparse
import copy
import warnings

warnings.filterwarnings("ignore")


def _qlora(model: str):
    import torch

    import lorakit
    from lorakit.adapters import lora as adapters

    lm = lorakit.load_model(model, quant="nf4", dtype="float32", device="cpu")
    torch.manual_seed(0)
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="all-linear")
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    enc = lm.tokenizer(["The capital of France is Paris.", "Sort these words: pear apple fig"],
                       return_tensors="pt", padding=True)
    return pm.eval(), enc


def _repack(model, how: str, enc) -> None:
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if how == "explicit":
        for m in layers:
            m.weight.data, m.weight.quant_state = F._convert_weight_packed_for_cpu(m.weight.data, m.weight.quant_state)
    else:
        for m in layers:
            m.support_avx512bf16_for_cpu = True
        with torch.no_grad():
            model(**enc)
        for m in layers:
            m.support_avx512bf16_for_cpu = False


def merge_table(model: str) -> list:
    import torch

    from lorakit.adapters import lora as adapters

    pm, enc = _qlora(model)
    with torch.no_grad():
        want = pm(**enc).logits.float()  # the usual layout, before any repack
    rows = []
    for how in ("none", "explicit", "forward"):
        twin = copy.deepcopy(pm)
        if how != "none":
            _repack(twin, how, enc)
        with torch.no_grad():
            got = adapters.merge_adapter(twin).eval()(**enc).logits.float()
        rows.append((how, float((got - want).abs().max()), float(want.abs().max())))
    return rows


def train_losses(model: str, steps: int, fused: bool) -> list:
    import bitsandbytes.nn.modules as bnb_modules

    import lorakit

    saved = bnb_modules.has_avx512bf16
    bnb_modules.has_avx512bf16 = (lambda: True) if fused else saved  # read when each Linear4bit is built
    try:
        cfg = lorakit.RunConfig(model=model, quant="nf4", dtype="bfloat16", max_steps=steps, batch_size=2,
                                train_examples=16, eval_examples=2, eval_every=max(1, steps // 2), seed=0,
                                learning_rate=1e-3)
        rec = lorakit.train(cfg, store=False)
    finally:
        bnb_modules.has_avx512bf16 = saved
    return rec.status, [round(h["loss"], 4) for h in rec.history if h.get("loss") is not None]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--steps", type=int, default=8)
    ns = ap.parse_args()
    import lorakit

    print(f"lorakit from {lorakit.__file__}")
    print(f"{'repack':<10} {'max |merged - adapter|':>24} {'max |logit|':>12}")
    for how, diff, scale in merge_table(ns.model):
        print(f"{how:<10} {diff:>24.3g} {scale:>12.3g}")
    plain = train_losses(ns.model, ns.steps, fused=False)
    fused = train_losses(ns.model, ns.steps, fused=True)
    print(f"QLoRA bf16, 'before' pass + eval every {max(1, ns.steps // 2)} steps, {ns.steps} steps:")
    print(f"  without repacking: {plain[0]} {plain[1]}")
    print(f"  with repacking:    {fused[0]} {fused[1]}")
    if plain[1] and len(plain[1]) == len(fused[1]):
        print(f"  max |loss difference| {max(abs(a - b) for a, b in zip(plain[1], fused[1], strict=True)):.3g}")


if __name__ == "__main__":
    main()
