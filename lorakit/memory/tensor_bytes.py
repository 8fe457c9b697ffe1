"""Counting tensor bytes as they sit in memory: each byte of each storage once (tied weights and views
count once), and a bitsandbytes parameter with its quantization state. Used by the measured breakdown
(``memory.breakdown``), the activation recorder (``memory.saved_tensors``) and the Playground's memory."""
from __future__ import annotations

from typing import Iterable


def is_tensor(t) -> bool:
    import torch

    return isinstance(t, torch.Tensor)


def storage_key(t) -> tuple:
    s = t.untyped_storage()
    return (t.device.type, t.device.index, s.data_ptr())


def _byte_span(t) -> tuple[int, int]:
    """[start, end) bytes of ``t`` inside its storage (the whole span for strided views)."""
    es = t.element_size()
    start = t.storage_offset() * es
    if t.numel() == 0:
        return start, start
    extent = 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride(), strict=True))
    return start, start + extent * es


class Ledger:
    """Bytes of a set of tensors, each byte of each storage counted once.

    Tensors sharing a storage (tied weights, views) are merged as byte ranges, so two views of the
    same bytes count once, while disjoint slices of one large storage (e.g. a memory-mapped
    checkpoint) each count their own bytes.
    """

    def __init__(self):
        self._spans: dict[tuple, list] = {}

    def add(self, t) -> None:
        if not is_tensor(t) or t.device.type == "meta":
            return
        lo, hi = _byte_span(t)
        if hi > lo:
            self._spans.setdefault(storage_key(t), []).append((lo, hi))

    def add_all(self, tensors: Iterable) -> "Ledger":
        for t in tensors:
            self.add(t)
        return self

    def __contains__(self, t) -> bool:
        return is_tensor(t) and storage_key(t) in self._spans

    @property
    def nbytes(self) -> int:
        total = 0
        for spans in self._spans.values():
            spans.sort()
            cur_lo, cur_hi = spans[0]
            for lo, hi in spans[1:]:
                if lo > cur_hi:
                    total += cur_hi - cur_lo
                    cur_lo, cur_hi = lo, hi
                else:
                    cur_hi = max(cur_hi, hi)
            total += cur_hi - cur_lo
        return total


def _quant_state_tensors(state) -> list:
    """Tensors of a bitsandbytes QuantState: absmax, code, offset and the nested state."""
    if state is None:
        return []
    out = [getattr(state, "absmax", None), getattr(state, "code", None)]
    if getattr(state, "nested", False):
        out.append(getattr(state, "offset", None))
        out += _quant_state_tensors(getattr(state, "state2", None))
    return [t for t in out if is_tensor(t)]


def _usual_state(t):
    """A ``Params4bit``'s quantization state in the usual layout (``bnb_layout``): the one training holds,
    whether or not an evaluation pass had bitsandbytes repack it (its packed data has the same bytes)."""
    state = getattr(t, "quant_state", None)
    if not getattr(state, "packing_format_for_cpu", False):
        return state
    from lorakit.models.bnb_layout import usual_4bit

    return usual_4bit(t)[1]


def stored_tensors(t) -> list:
    """A parameter as it sits in memory: the tensor plus any quantization state attached to it."""
    out = [t]
    out += _quant_state_tensors(_usual_state(t))  # Params4bit
    for attr in ("SCB", "CB"):  # Int8Params: int8 rows (CB is the data itself) + fp32 row scales
        v = getattr(t, attr, None)
        if is_tensor(v):
            out.append(v)
    return out


def module_extra_tensors(module) -> list:
    """Quantization tensors a bitsandbytes layer keeps outside its parameters (Linear8bitLt.state)."""
    state = getattr(module, "state", None)
    out = []
    if state is not None and state.__class__.__name__ == "MatmulLtState":
        for attr in ("CB", "SCB"):
            v = getattr(state, attr, None)
            if is_tensor(v):
                out.append(v)
    return out
