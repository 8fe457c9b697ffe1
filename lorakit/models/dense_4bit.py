"""Generation on a 4-bit base on CPU: each layer's weight dequantized once per ``generate`` call, not per token.

bitsandbytes' CPU path for a 4-bit layer without gradients (``gemm_4bit``) dequantizes the whole weight to the
compute dtype and calls ``F.linear``, at every forward: while generating, once per layer per new token. That
was a third of a QLoRA run's generation time on SmolLM2 (``bitsandbytes::dequantize_4bit`` 9.0 s of a 32 s
pass of 24 prompts x 44 tokens, profiled). ``dense_4bit`` does the same dequantization once per layer and
the same ``F.linear`` per token, so the outputs are the same numbers (``tests/lorakit/test_dense_4bit.py``
compares them bit for bit).

The price is memory: the dense copies live for the length of the ``with`` block (SmolLM2: 424 MiB in fp32
over a 161 MiB 4-bit base). They are made only on CPU (a GPU has bitsandbytes' fused kernels and less room)
and only when all of them fit in a quarter of the memory this machine has available; otherwise nothing
changes. Training and its memory figures are untouched: this is entered around generation only.
"""
from __future__ import annotations

import contextlib
import types
from typing import Iterator

import torch

RAM_SHARE = 0.25  # the dense copies may take at most this share of the available memory


def _four_bit_layers(model) -> list:
    """The model's bitsandbytes 4-bit layers whose weight dequantizes straight to their compute dtype."""
    from lorakit.models.bnb_layout import four_bit_layers, usual_dtype

    layers = []
    for module in four_bit_layers(model):  # none where bitsandbytes was never imported: no import paid here
        if getattr(module.weight, "quant_state", None) is None:
            continue
        # gemm_4bit dequantizes to the compute dtype; the public dequantize_4bit to the state's dtype: the
        # same numbers only where those agree
        if (module.compute_dtype is not None and usual_dtype(module.weight) == module.compute_dtype
                # a CPU with AVX512-BF16 and a bf16 layer: bitsandbytes' own fused kernel serves generation
                and not getattr(module, "support_avx512bf16_for_cpu", False)):
            layers.append(module)
    return layers


def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
    # bitsandbytes' Linear4bit.forward on CPU without gradients: input and bias to the compute dtype,
    # F.linear with the dequantized (out, in) weight, back to the input's dtype
    w = self._lorakit_dense
    bias = None if self.bias is None else self.bias.to(w.dtype)
    return torch.nn.functional.linear(x.to(w.dtype), w, bias).to(x.dtype)


@contextlib.contextmanager
def dense_4bit(model) -> Iterator[int]:
    """Inside the block, ``model``'s 4-bit layers (if any, on CPU, within the memory bound) compute from a
    dense copy of their weight made once; yields the bytes of those copies (0: nothing changed)."""
    from lorakit.common.devices import free_ram
    from lorakit.models.bnb_layout import usual_4bit, usual_dtype

    layers = [m for m in _four_bit_layers(model) if m.weight.device.type == "cpu"]
    need = sum(m.out_features * m.in_features * usual_dtype(m.weight).itemsize for m in layers)
    if not layers or torch.is_grad_enabled() or need > RAM_SHARE * free_ram():
        yield 0
        return
    import bitsandbytes.functional as bnbf

    try:
        for m in layers:
            m._lorakit_dense = bnbf.dequantize_4bit(*usual_4bit(m.weight))  # (out, in), whatever the layout
            m.forward = types.MethodType(_dense_forward, m)  # the instance's own: the class's stays
        yield need
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_lorakit_dense", None)
