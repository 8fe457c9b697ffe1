"""A bitsandbytes 4-bit weight in its usual layout, whether or not bitsandbytes has repacked it for its CPU kernel.

On a CPU with AVX512-BF16 (``bitsandbytes.functional.has_avx512bf16()``), bitsandbytes 0.50's
``Linear4bit.forward`` repacks the layer's weight **in place** the first time it runs in eval mode on an input
without gradients (``functional._convert_weight_packed_for_cpu``): the nibbles are reordered into
(N/32, K/2, 32, 2) tiles for a fused bf16 kernel, double quantization is undone and absmax is stored
transposed in bf16 (``quant_state.packing_format_for_cpu = True``). From then on ``matmul_4bit`` sends the
layer through ``gemv_4bit``, which has no backward. Three consequences this module takes care of:

- Readers (merge, dequantize, the dense copies for generation, LoftQ, measured bytes) must not read the
  packed data with the packed state as if it were the usual layout: they call :func:`usual_4bit`.
- Training must never run a packed layer (no gradient would reach the adapters before it): the forward
  pre-hook that :func:`install` puts on every 4-bit layer unpacks a packed layer in place whenever its forward
  runs in training mode or on an input that needs gradients. That is the exact complement of bitsandbytes'
  own repack condition, so the two never undo each other within one forward.
- The packing loses the exact quantization state (bf16 absmax; bitsandbytes' inverse requantizes the nested
  absmax, and leaves a non-nested one transposed): the same hook keeps the layer's state as it was just before
  bitsandbytes repacks it, so unpacking gives back the very same numbers. The data's nibbles come back exactly
  through bitsandbytes' own inverse. A weight repacked without the hook (bitsandbytes' function called
  directly) comes back through bitsandbytes' inverse alone: the same nibbles, absmax rounded to bf16.

And the fused kernel computes in bf16 whatever the layer's compute dtype: :func:`install` turns bitsandbytes'
repacking off on layers that compute in another dtype, so an fp32 run gives the same numbers on every CPU.
"""
from __future__ import annotations

import copy
import sys

_USUAL = "_lorakit_usual"  # on a packed QuantState: the state as it was before bitsandbytes repacked it


def is_packed(weight) -> bool:
    """Whether bitsandbytes has repacked this ``Params4bit`` for its fused CPU kernel."""
    return bool(getattr(getattr(weight, "quant_state", None), "packing_format_for_cpu", False))


def usual_dtype(weight):
    """The dtype a ``Params4bit`` dequantizes to in the usual layout (a repacked state says bf16)."""
    state = weight.quant_state
    return state.original_dtype if getattr(state, "packing_format_for_cpu", False) else state.dtype


def usual_4bit(weight) -> tuple:
    """(data, quant_state) of a bitsandbytes ``Params4bit`` in the usual layout, which
    ``bitsandbytes.functional.dequantize_4bit`` reads; the weight itself is left as it is."""
    state = weight.quant_state
    if not getattr(state, "packing_format_for_cpu", False):
        return weight.data, state
    import bitsandbytes.functional as bnbf

    kept = state.__dict__.get(_USUAL)
    work = copy.copy(state)  # bitsandbytes' inverse rewrites the state it is given
    if kept is not None:
        work.original_nested = False  # its requantization of absmax is not needed: the exact state was kept
    data, work = bnbf._convert_weight_packed_for_cpu_inverse(weight.data, work)
    if kept is not None:
        return data, kept
    if not work.nested and work.absmax.dim() == 2:
        # bitsandbytes leaves a non-nested absmax as packed: (K/blocksize, N) bf16; the usual one is flat,
        # block-major over (N, K/blocksize)
        work.absmax = work.absmax.T.reshape(-1).float()
    work.__dict__.pop(_USUAL, None)
    # kept from now on: every reader sees one state (the byte count keys tensors by address, so a state made
    # afresh per call would also let two layers' short-lived copies share one address)
    state.__dict__[_USUAL] = work
    return data, work


def unpack(module) -> bool:
    """Put a packed 4-bit layer's weight back in the usual layout, in place; whether it was packed."""
    weight = module.weight
    if not is_packed(weight):
        return False
    weight.data, state = usual_4bit(weight)
    weight.quant_state = state
    if getattr(module, "quant_state", None) is not None:
        module.quant_state = state
    return True


def unpack_all(model) -> int:
    """:func:`unpack` every 4-bit layer of ``model``; how many were packed."""
    return sum(unpack(m) for m in four_bit_layers(model))


def four_bit_layers(model) -> list:
    """``model``'s bitsandbytes ``Linear4bit`` layers (none without importing bitsandbytes)."""
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:  # never imported, so no model holds its layers
        return []
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _before_forward(module, args, kwargs):
    x = args[0] if args else kwargs.get("x")
    needs_grad = module.training or bool(getattr(x, "requires_grad", False))
    if needs_grad:
        unpack(module)  # a training forward: gradients must flow through the usual (autograd) path
    elif (getattr(module, "support_avx512bf16_for_cpu", False) and getattr(x, "device", None) is not None
          and x.device.type == "cpu" and not is_packed(module.weight)
          and getattr(module.weight, "quant_state", None) is not None):
        # bitsandbytes is about to repack in place: keep the exact state (absmax, nested state) it would lose
        kept = copy.copy(module.weight.quant_state)
        kept.__dict__.pop(_USUAL, None)
        module.weight.quant_state.__dict__[_USUAL] = kept


def install(model) -> int:
    """Guard ``model``'s 4-bit layers (see the module's docstring); idempotent; how many layers it guards."""
    import torch

    layers = four_bit_layers(model)
    for m in layers:
        if getattr(m, "_lorakit_layout_hook", None) is None:
            m._lorakit_layout_hook = m.register_forward_pre_hook(_before_forward, with_kwargs=True)
        if m.compute_dtype is not None and m.compute_dtype != torch.bfloat16:
            m.support_avx512bf16_for_cpu = False  # the fused kernel would compute this layer in bf16
    return len(layers)


def dequantized(layer):
    """The weight a bitsandbytes (4-bit, 8-bit) or plain linear layer computes with, (d_out, d_in), in its
    state's dtype; a 4-bit one read through :func:`usual_4bit` (peft's ``dequantize_module_weight`` reads
    ``weight.data`` with the state as they are, which gives garbage on a repacked layer)."""
    if getattr(layer.weight, "__class__", type(None)).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(*usual_4bit(layer.weight))
    from peft.utils.integrations import dequantize_module_weight

    return dequantize_module_weight(layer)
