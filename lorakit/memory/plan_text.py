"""A memory plan in words: its step peak, the device overhead, what it assumes, and the fit verdicts.

What ``lorakit plan`` prints and the Studio's Quantization panel shows, written once (plain text; the
panel escapes it). ``plan`` is a planned ``MemoryBreakdown`` (``plan_memory``), ``fit`` a ``fit.Fit``.
"""
from __future__ import annotations

from typing import Optional

from lorakit.common.display import fmt_bytes
from lorakit.memory.fit import THIS_MACHINE


def peak_text(plan) -> str:
    """'peak 9.00 GiB at logits-loss: the bytes alive then + cross-entropy gradients (...) 125.0 MiB'."""
    if plan.peak is None:
        return "no step peak planned"
    where = (plan.assumes or {}).get("peak_of")  # a run's plan (``lorakit.plan``): the batch that makes it
    return f"peak {fmt_bytes(plan.peak)}" + (f" in {where}" if where else "") + f" {transient_text(plan)}"


def transient_text(plan) -> str:
    """The peak's phase and what sits on top of the steady bytes then (the planned transient)."""
    text = f"at {plan.peak_at or '?'}"
    if plan.transient:
        text += ": the bytes alive then + " + " + ".join(f"{k} {fmt_bytes(v)}" for k, v in plan.transient.items())
    return text


def overhead_text(plan) -> str:
    """The CUDA overhead on top of the peak, and what the device must hold; "" off CUDA."""
    if plan.device_overhead is None:
        return ""
    return (f"device overhead {fmt_bytes(plan.device_overhead)} (CUDA context, libraries, allocator caching): "
            f"the GPU must hold {fmt_bytes(plan.device_total)}")


def assumes_text(assumes: Optional[dict]) -> str:
    """'cuda, bfloat16 (cuda's default), batch 4 × 128 tokens unpadded, no gradient checkpointing, ...'."""
    if not assumes:
        return "unknown"
    a = assumes
    dtype = f"{a['dtype']} ({a['device']}'s default)" if not a.get("dtype_given", True) else f"{a['dtype']} (given)"
    parts = [a["device"], dtype]
    acts = a.get("activations_dtype")
    if acts and acts != a["dtype"] and not (acts == "16-bit" and a["dtype"] in ("bfloat16", "float16")):
        parts.append(f"{acts} activations")
    parts.append(f"batch {a['batch_size']} × {a['seq_len']} tokens " + ("padded" if a.get("padded") else "unpadded"))
    parts.append("gradient checkpointing" if a.get("gradient_checkpointing") else "no gradient checkpointing")
    parts.append(str(a.get("optimizer", "")))
    if a.get("step"):
        parts.append(f"step: {a['step']}")
    return ", ".join(p for p in parts if p)


def device_label(fit) -> str:
    return f"{THIS_MACHINE} (free RAM, as a CPU run)" if fit.device == THIS_MACHINE else fit.device


def verdict_text(fit, batch_size: int, seq_len: int) -> str:
    """'fits: needs 9.39 GiB of 24.00 GiB; largest batch_size 16 (at seq_len 128), seq_len 539 (at batch_size 4)'."""
    head = "fits" if fit.fits else "does not fit"
    text = f"{head}: needs {fmt_bytes(fit.need)} of {fmt_bytes(fit.capacity)}"
    if fit.max_batch_size == 0 and fit.max_seq_len == 0:
        return text + "; not even one sequence of one token fits"
    return (text + f"; largest batch_size {fit.max_batch_size} (at seq_len {seq_len}), "
            f"seq_len {fit.max_seq_len} (at batch_size {batch_size})")


FIT_HEADER = ("device", "capacity", "need", "fits", "max batch_size", "max seq_len")


def fit_row(fit) -> tuple:
    """One row of the fits table, as strings, in ``FIT_HEADER``'s order."""
    return (device_label(fit), fmt_bytes(fit.capacity), fmt_bytes(fit.need), "yes" if fit.fits else "no",
            str(fit.max_batch_size), str(fit.max_seq_len))
