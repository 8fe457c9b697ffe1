"""What autograd saves for backward, grouped by shape and dtype: the evidence behind the activation formula.

    python benchmarks/saved_tensors.py --model tiny-llama --quant nf4 --dtype bfloat16 [--device cuda]

Prints, for one LoRA (r=8 on q_proj, v_proj) training forward of a 4 x 128 batch of random tokens, the
distinct saved tensors (``lorakit.memory.breakdown.saved_activation_tensors``) as (shape without the batch dim,
dtype) -> count, the measured and the planned activation bytes.
"""
from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--source", default=None, help="a model directory (default: the built-in)")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from lorakit.adapters import lora as adapters
    from lorakit.memory import breakdown as memory
    from lorakit.memory.planner import plan_memory
    from lorakit.models.loading import load_model

    torch.manual_seed(0)
    loaded = load_model(args.source or args.model, quant=args.quant, dtype=args.dtype, device=args.device)
    model = adapters.attach_lora(loaded.model, 8, 16, 0.05, ("q_proj", "v_proj"), False)
    ids = torch.randint(0, model.config.vocab_size, (4, 128)).to(args.device)
    saved = memory.saved_activation_tensors(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                                    "labels": ids})
    groups = collections.Counter((tuple(t.shape), str(t.dtype).replace("torch.", "")) for t, _ in saved)
    planned = plan_memory(args.model, quant=args.quant, dtype=args.dtype, device=args.device).activations
    print(f"# {args.model} quant={args.quant} dtype={args.dtype} device={args.device}: "
          f"measured {sum(n for _, n in saved)} bytes, planned {planned}")
    for (shape, dtype), n in sorted(groups.items(), key=lambda kv: (-len(kv[0][0]), str(kv[0]))):
        print(f"  {shape} {dtype}: {n}")


if __name__ == "__main__":
    main()
