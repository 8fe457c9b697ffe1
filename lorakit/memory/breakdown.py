"""Measured memory breakdown: base weights, adapters, gradients, optimizer state, activations.

Everything is counted from real tensors (each storage once), so the same anatomy is shown on a
CPU laptop and on a GPU. On CUDA the allocator's own figures are added alongside in ``cuda``.

Counting rules (the planner in ``planner.py`` predicts the same quantities):

- **base_weights**: every parameter and buffer of the model that is not a LoRA tensor, as stored:
  a bitsandbytes ``Params4bit`` is its packed uint8 data plus its ``QuantState`` (absmax, code
  book and, with double quantization, the nested absmax, offset and code); an ``Int8Params`` is
  its int8 data plus its ``SCB`` row scales. Tied tensors (embedding = output head) count once.
- **adapters**: the LoRA tensors (parameter names containing ``lora_``). Full fine-tuning has none.
- **gradients**: the memory gradients occupy during backward: a trainable parameter's ``.grad``
  when it is allocated, else the size it will have (same shape and dtype as the parameter). So the
  figure is the same before backward, after it, and after ``zero_grad(set_to_none=True)``.
- **optimizer**: every tensor in ``optimizer.state`` (torch AdamW: exp_avg, exp_avg_sq, step;
  bitsandbytes 8-bit: uint8 state1/state2, per-256-block absmax, the shared quantization maps).
- **head** (not a sixth category): a classifier's new head trains in full (peft's ``modules_to_save``);
  its share of base_weights, gradients and optimizer is shown apart in ``head`` and stays in those
  categories, so the five still add up to the total.
- **activations**: the tensors autograd saves for backward during one training-mode forward pass
  with labels (so the loss path is included), seen through ``saved_tensors_hooks``, plus tensors
  custom autograd Functions keep as ``ctx`` attributes (bitsandbytes' int8 matmul keeps its input
  that way; reentrant checkpointing its RNG state); each storage counted once, parameters/buffers
  (weights, not activations) and the batch itself excluded. Not counted: transient buffers of the
  forward itself (e.g. the logits, freed before backward) and, under non-reentrant gradient
  checkpointing, the keyword arguments a checkpointed layer closes over (rotary cos/sin, shared).
  ``lorakit.train`` counts them during the Trainer's own first forward (``ActivationRecorder``),
  which also saves the Trainer's one-element loss normaliser: a few bytes above the plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lorakit.common.devices import model_device
from lorakit.config.families import CLASSIFIER_HEADS
from lorakit.memory.saved_tensors import (  # noqa: F401 - measured activations, re-exported where they were
    ActivationRecorder,
    measure_activations,
    saved_activation_tensors,
)
from lorakit.memory.tensor_bytes import Ledger, module_extra_tensors, stored_tensors  # noqa: F401 - Ledger: tests

CATEGORIES = ("base_weights", "adapters", "gradients", "optimizer", "activations")


@dataclass
class MemoryBreakdown:
    """Bytes per category, measured or planned, and the step's peak."""
    base_weights: int = 0
    adapters: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    cuda: Optional[dict] = None
    """CUDA allocator figures in bytes (allocated, reserved, peak) when measured on CUDA, else None.
    ``peak`` is ``torch.cuda.max_memory_allocated``: ``lorakit.train`` resets it when the run starts,
    so a run's peak is its own; a bare ``measure()`` reports the peak since the process last reset it."""
    peak: Optional[int] = None
    """Most bytes the tensor allocator held at any moment of a training step (None: not known).
    Measured: over the first two optimizer steps (``step_peak``); planned: steady bytes + the largest
    transient (``planning.peak``)."""
    peak_at: str = ""
    """The phase of the peak: forward, logits-loss, backward or optimizer step."""
    transient: Optional[dict] = None
    """Planned: what sits on top of the steady bytes at the peak, name -> bytes."""
    device_overhead: Optional[int] = None
    """CUDA only. Planned: context, libraries and allocator caching on top of ``peak``;
    measured: the device memory in use outside the caching allocator (context, libraries)."""
    assumes: Optional[dict] = None
    """Planned: what the plan assumes (device, dtype, batch_size, seq_len, checkpointing, ...)."""
    head: Optional[dict] = None
    """A trained classifier head's share of the categories, bytes: {base_weights, gradients, optimizer}
    (included in them; None: no such head)."""
    timeline: Optional[list] = None
    """A step's memory moment by moment: [(phase, {category: bytes})] in step order, the categories
    (``timeline.TIMELINE_CATEGORIES``) adding up to what was alive then; the tallest is ``peak``.
    Planned: ``planning.peak``; measured: ``memory.timeline`` (None: not known, e.g. an older record)."""

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in CATEGORIES)

    @property
    def device_total(self) -> Optional[int]:
        """What the device must hold: ``peak`` plus ``device_overhead`` (None without a peak)."""
        return None if self.peak is None else self.peak + (self.device_overhead or 0)

    def as_dict(self) -> dict:
        d = {c: int(getattr(self, c)) for c in CATEGORIES}
        d["total"] = self.total
        if self.peak is not None:
            d["peak"] = int(self.peak)
            d["peak_at"] = self.peak_at
        for k in ("transient", "device_overhead", "assumes", "head"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.timeline is not None:
            d["timeline"] = [[phase, dict(parts)] for phase, parts in self.timeline]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryBreakdown":
        peak = d.get("peak")
        return cls(**{c: int(d.get(c, 0)) for c in CATEGORIES}, cuda=d.get("cuda"),
                   peak=int(peak) if peak is not None else None, peak_at=d.get("peak_at") or "",
                   transient=d.get("transient"), device_overhead=d.get("device_overhead"),
                   assumes=d.get("assumes"), head=d.get("head"),
                   timeline=[(phase, dict(parts)) for phase, parts in d["timeline"]] if d.get("timeline") else None)


def _is_adapter(name: str) -> bool:
    return "lora_" in name


# --- the measurements -------------------------------------------------------------------------

def measure_weights(model) -> tuple[int, int]:
    """(base_weights, adapters) bytes of ``model`` as stored, each storage counted once.

    Base weights include quantized data with its quantization state, unquantized parameters and
    buffers; adapters are the LoRA tensors (names containing ``lora_``). A tensor shared by a
    LoRA name and a base name (never the case with peft) would count as base.
    """
    base, adapters = Ledger(), Ledger()
    for mod_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{pname}" if mod_name else pname
            (adapters if _is_adapter(full) else base).add_all(stored_tensors(p))
        for bname, b in module.named_buffers(recurse=False):
            full = f"{mod_name}.{bname}" if mod_name else bname
            (adapters if _is_adapter(full) else base).add(b)
        base.add_all(module_extra_tensors(module))
    # a storage claimed by both (impossible with peft) counts as base only
    for key in list(adapters._spans):
        if key in base._spans:
            del adapters._spans[key]
    return base.nbytes, adapters.nbytes


def _trainable(model) -> list:
    seen, out = set(), []
    for p in model.parameters():  # parameters() already yields a tied parameter once
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def expected_gradient_bytes(model) -> int:
    """Bytes the gradients of ``model``'s trainable parameters take once allocated (no backward needed)."""
    ledger = Ledger()
    for p in _trainable(model):
        ledger.add(p)
    return ledger.nbytes


def measure_gradients(model) -> int:
    """Gradient bytes during backward: each trainable parameter's ``.grad`` if allocated, else its
    future size (numel x element size, as autograd allocates it in the parameter's dtype).

    One behaviour before backward, after it and after ``zero_grad(set_to_none=True)`` (which HF
    Trainer does right after the optimizer step): the figure is what backward needs.
    """
    ledger = Ledger()
    for p in _trainable(model):
        g = p.grad
        ledger.add(g if g is not None else p)
    return ledger.nbytes


def measure_allocated_grads(model) -> int:
    """Bytes of the gradients allocated right now (``.grad`` tensors that exist), each storage once."""
    ledger = Ledger()
    for p in _trainable(model):
        if p.grad is not None:
            ledger.add(p.grad)
    return ledger.nbytes


def measure_optimizer(optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state`` (each storage once), e.g. torch AdamW's
    exp_avg/exp_avg_sq/step or bitsandbytes 8-bit state1/state2/absmax/qmap. 0 before the first step."""
    if optimizer is None:
        return 0
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps one
    ledger = Ledger()
    for state in inner.state.values():
        if isinstance(state, dict):
            for v in state.values():
                ledger.add(v)
    return ledger.nbytes




def head_parameters(model) -> list:
    """The trainable parameters of a classifier head (peft's trained copy in ``modules_to_save``, or the
    head itself under full fine-tuning); [] for a model without one."""
    seen, out = set(), []
    for name, p in model.named_parameters():
        parts = name.split(".")
        if p.requires_grad and any(h in parts for h in CLASSIFIER_HEADS) and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def measure_head(model, optimizer=None) -> Optional[dict]:
    """The head's bytes within base_weights, gradients and optimizer (None without a head)."""
    params = head_parameters(model)
    if not params:
        return None
    weights, grads, state = Ledger(), Ledger(), Ledger()
    inner = getattr(optimizer, "optimizer", optimizer)
    for p in params:
        weights.add(p)
        grads.add(p.grad if p.grad is not None else p)
        for v in (inner.state.get(p, {}) if inner is not None else {}).values():
            state.add(v)
    return {"base_weights": weights.nbytes, "gradients": grads.nbytes, "optimizer": state.nbytes}


def cuda_figures(device=None) -> Optional[dict]:
    """The CUDA caching allocator's figures (bytes) for ``device``, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {
        "allocated": int(torch.cuda.memory_allocated(device)),
        "reserved": int(torch.cuda.memory_reserved(device)),
        "peak": int(torch.cuda.max_memory_allocated(device)),
    }


def measure(model, optimizer=None, batch=None, activations: Optional[int] = None) -> MemoryBreakdown:
    """The measured breakdown of ``model`` (+ ``optimizer`` state, + activations of ``batch``).

    ``activations``: bytes an ``ActivationRecorder`` already counted during a real training forward;
    given, no extra forward of ``batch`` is run.

    On CUDA ``cuda`` holds the allocator's allocated/reserved/peak bytes for the model's device
    (taken before the activation measurement, which would otherwise raise the peak).
    """
    base, adapters = measure_weights(model)
    device = model_device(model)
    cuda = cuda_figures(device) if device.type == "cuda" else None
    return MemoryBreakdown(
        base_weights=base,
        adapters=adapters,
        gradients=measure_gradients(model),
        optimizer=measure_optimizer(optimizer),
        activations=(activations if activations is not None
                     else measure_activations(model, batch) if batch is not None else 0),
        cuda=cuda,
        head=measure_head(model, optimizer),
    )
