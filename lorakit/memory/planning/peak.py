"""The step's planned peak: the steady bytes plus the largest transient, phase by phase.

A training step passes through moments where more than the steady categories is alive. Each
candidate below is what sits on top of the resident bytes (base weights, adapters and optimizer
state, which exist from the first step on) at one such moment; the peak is the largest. Derived
from the CPU allocator's trajectory (``step_peak``) on tiny-llama and SmolLM2, every method, quant
and checkpointing setting (``benchmarks/memory_accuracy.py`` holds the comparison):

- **logits-loss**: backward of the fp32 cross-entropy. Everything saved for backward is still alive
  (the fp32 log-softmax output among it) when ``LogSoftmaxBackward`` holds the gradient of its
  output and allocates the gradient of its input: two (N, V) fp32 tensors on top of the activations.
  N is every position, or with ``lorakit.train``'s labelled-only head (``Step.labelled``) the labelled
  ones only. With few labels and a small vocabulary the backward through the last layer (the residual
  stream's and the MLP's gradients, not modelled here without checkpointing) can then be the peak:
  tiny-llama (1,536 words), 40 of 512 positions labelled, is planned 1-2 % low (11 % with checkpointing);
  by the same accounting SmolLM2's 49,152-word head keeps logits-loss the peak down to ~3 % labelled.
- **backward**: full fine-tuning allocates the output head's weight gradient (V x H) while nearly all
  activations are alive; with checkpointing, each layer's forward is recomputed in backward, so one
  layer's saved tensors (and its backward working set) come back on top of the checkpoints.
- **end of backward** (full fine-tuning of a model whose output head shares the input embedding's
  weight): the head's weight gradient was accumulated first; the embedding lookup's backward, the last
  op, allocates a second V x H gradient and the sum: two V x H tensors on top of all other gradients,
  once the activations are freed (measured on CPU, tiny LLaMA configs, tied and untied).
- **optimizer step**: all gradients; ``lorakit.train``'s AdamW is torch's fused kernel (the Trainer's
  ``adamw_torch_fused``), which updates in place: no temporaries that matter on CPU (measured: the
  untied model's peak is the steady bytes + 2 KiB) nor on CUDA (an H200, torch 2.11: full fine-tuning of
  a LLaMA-7B shape peaked at weights + state + gradients + 5 MiB). bitsandbytes' 8-bit optimizers
  update block-wise in place.
- **device overhead** (CUDA only, not part of ``peak``): memory outside the tensor allocator's
  peak that the process holds: the CUDA context and libraries, plus the caching allocator's
  rounding and cached blocks; an estimate, overridable with ``device_overhead=``.
"""
from __future__ import annotations

from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.planning.activations import layer_model
from lorakit.memory.planning.layer import residual_bytes
from lorakit.memory.planning.model import Dims, Step
from lorakit.memory.planning.states import DTYPE_BYTES, FP32
from lorakit.memory.timeline import moment

# CUDA context + library handles of a PyTorch process with bitsandbytes loaded: 831-835 MiB measured
# on an H200 (torch 2.11, CUDA 13, driver 580; benchmarks/RESULTS.md); other GPUs and drivers differ
CUDA_CONTEXT_BYTES = 835 * 2**20
# the caching allocator reserves more than it allocates: blocks rounded up to 2 MiB (large) segments
CUDA_RESERVED_SLACK = 0.05


def _logits_loss(dims: Dims, step: Step) -> dict:
    if dims.labels:  # a classifier: one row of label logits per example
        return {"cross-entropy gradients (2 x batch x labels fp32)": 2 * step.batch_size * dims.labels * FP32}
    # N: the rows of the logits (every position, or only the labelled ones with lorakit's labelled-only head)
    return {"cross-entropy gradients (2 x N x V fp32)": 2 * step.loss_rows * dims.vocab * FP32}


def _backward(dims: Dims, step: Step) -> dict:
    parts = {}
    if step.full and not dims.labels:  # a classifier's head is small: no LM head over the vocabulary
        parts["output head's weight gradient"] = dims.vocab * dims.hidden * DTYPE_BYTES[step.dtype]
    if step.gradient_checkpointing:
        lm = layer_model(dims, step)
        layer_bytes, _, _ = lm.layer(True)  # a recomputed layer: its input requires grad
        parts["one recomputed layer's saved tensors"] = step.tokens * layer_bytes
    return parts


def _tied_embedding_gradients(dims: Dims, step: Step, head_tied: bool) -> dict:
    if not (step.full and head_tied) or dims.labels:
        return {}
    return {"tied embedding's second gradient and the sum (2 x V x H)": 2 * dims.vocab * dims.hidden
            * DTYPE_BYTES[step.dtype]}


def plan_peak(plan: MemoryBreakdown, dims: Dims, step: Step, head_tied: bool,
              device_overhead) -> MemoryBreakdown:
    """``plan`` with ``peak``, ``peak_at``, ``transient``, ``device_overhead`` and ``assumes`` filled in."""
    weights = plan.base_weights + plan.adapters
    # the first step creates the optimizer state in its optimizer step: forward and backward run without it
    state = 0 if step.first_step else plan.optimizer
    acts = weights + state + plan.activations
    moments = [  # (phase, resident bytes, what sits on top of them)
        ("logits-loss", acts, _logits_loss(dims, step)),
        ("backward", acts, _backward(dims, step)),
        ("optimizer step", weights + plan.optimizer + plan.gradients, {}),
    ]
    tied = _tied_embedding_gradients(dims, step, head_tied)
    if tied:  # the end of backward: every gradient exists, the activations are freed
        moments.insert(2, ("backward", weights + state + plan.gradients, tied))
    sized = [(phase, base + sum(parts.values()), parts) for phase, base, parts in moments]
    peak_at, peak, parts = max(sized, key=lambda m: m[1])  # the first of equals, as before
    plan.peak = peak
    plan.peak_at = peak_at
    plan.transient = {k: int(v) for k, v in parts.items() if v}
    plan.timeline = _timeline(plan, state, tied, _logits_loss(dims, step), _backward(dims, step))
    if step.device == "cuda":
        plan.device_overhead = (device_overhead if device_overhead is not None
                                else CUDA_CONTEXT_BYTES + int(CUDA_RESERVED_SLACK * plan.peak))
    plan.assumes = {
        "device": step.device, "dtype": step.dtype, "activations_dtype": _dtype_name(residual_bytes(step)),
        "batch_size": step.batch_size, "seq_len": step.seq_len, "padded": step.padded,
        "gradient_checkpointing": step.gradient_checkpointing, "optimizer": step.optimizer,
        "step": "first" if step.first_step else "steady (optimizer state exists)",
        # the head and loss rows: every position (the model's own loss), or the labelled ones (lorakit's head)
        "labelled_head": step.labelled is not None, "loss_positions": step.loss_rows,
    }
    return plan


def _timeline(plan: MemoryBreakdown, state: int, tied: dict, loss: dict, backward: dict) -> list:
    """The moments above by category (``memory.timeline``), in step order, plus the end of the forward
    (every activation, nothing on top): each adds up to the moment's planned bytes."""
    resident = dict(base_weights=plan.base_weights, adapters=plan.adapters, optimizer=state)
    acts = dict(resident, activations=plan.activations)
    out = [("forward", moment(**acts)),
           ("logits-loss", moment(**acts, transient=sum(loss.values()))),
           ("backward", moment(**acts, transient=sum(backward.values())))]
    if tied:
        out.append(("end of backward", moment(**resident, gradients=plan.gradients, transient=sum(tied.values()))))
    out.append(("optimizer step", moment(**dict(resident, optimizer=plan.optimizer), gradients=plan.gradients)))
    return out


def _dtype_name(nbytes: int) -> str:
    return "float32" if nbytes == 4 else "16-bit"
