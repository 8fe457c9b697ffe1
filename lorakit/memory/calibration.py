"""How fast this machine runs a model's pieces: measured once per machine and model shape, then kept.

``calibrate`` times, in a few seconds: a matmul at the model's training shape (256 tokens through an MLP
projection) and at its decoding shape (32 rows, one generation batch), an elementwise op over activations, a
4-bit dequantization with bitsandbytes (its CPU path here), an AdamW step per parameter, the fixed cost of
one small layer's forward and backward (Python and dispatch: what a step pays per layer whatever its size),
attention as the models run it (``scaled_dot_product_attention`` forward and backward with a mask: its small
per-head matmuls and softmax run far below the big matmul's rate) and LoRA's dropout (a random mask drawn per
element, which costs far more than an elementwise pass).
The figures are kept beside ``dtype="auto"``'s bf16 measurement (``models.compute_dtype``: the same file
under the cache home, the same machine key), one entry per (machine, torch, dtype, hidden x inter): the last
``KEPT`` calibrations, of which a plan uses each figure's median. A shared machine's speed moves 10-20 % within
seconds and one calibration is one moment of it (benchmarks/RESULTS.md, "A second draw"); each ``fresh``
calibration adds a moment, and the median of several is the machine's typical speed.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

TRAIN_ROWS = 256  # a training matmul's rows: SmolLM2's default batch is 4 x 128 tokens, half of them probed
DECODE_ROWS = 32  # a generation batch (training.evaluation.GENERATION_BATCH)
ROUNDS = 7  # matmul probe rounds, their median kept
KEPT = 9  # calibrations kept per machine and shape, the newest; a plan prices with their medians
MAX_HIDDEN, MAX_INTER = 1024, 4096  # the largest probe shape (a 7B's 4096 x 11008 would take minutes here)


@dataclass(frozen=True)
class Calibration:
    """This machine's measured speeds for one compute dtype and model shape."""
    dtype: str
    """The compute dtype the matmuls ran in."""
    train_gflops: float
    """Matmul GFLOP/s at a training shape (256 rows x hidden x inter)."""
    decode_gflops: float
    """Matmul GFLOP/s at a decoding shape (32 rows x hidden x inter)."""
    elementwise_gbs: float
    """GB/s an elementwise op reads and writes (activations, norms, softmax, optimizer)."""
    dequant_gbs: float
    """GB/s of dense weights bitsandbytes' 4-bit dequantization produces."""
    adamw_ns_per_param: float
    """Nanoseconds of one AdamW step per trained parameter."""
    layer_overhead_s: float
    """Fixed seconds per layer per forward and backward (a tiny layer's: Python and dispatch)."""
    attention_gflops: float
    """Attention's GFLOP/s (its q @ k^T and p @ v counted) in a masked forward and backward at a training shape."""
    dropout_ns_per_element: float
    """Nanoseconds per element of a dropout's forward (drawing the mask) and backward."""
    measured_s: float = 0.0
    """How long the probes took."""

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate(dtype: str = "float32", hidden: int = 576, inter: int = 1536, *, fresh: bool = False) -> Calibration:
    """This machine's ``Calibration`` for ``dtype`` at a model of ``hidden`` x ``inter``: the median of the kept
    calibrations, else measured (a few seconds) and kept. ``fresh``: measure again, keep it with the last ones."""
    from lorakit.models.compute_dtype import keep, kept

    # a big model's rates are those of its shape's first few thousand features: probes stay a few seconds
    hidden, inter = min(hidden, MAX_HIDDEN), min(inter, MAX_INTER)
    name = f"timing {dtype} {hidden}x{inter}"
    history = _readable(kept(name))
    if history and not fresh:
        return typical(history)
    history = (history + [measure(dtype, hidden, inter)])[-KEPT:]
    keep(name, [cal.as_dict() for cal in history])
    return typical(history)


def typical(history: list) -> Calibration:
    """Each figure's median over calibrations of one dtype and shape."""
    numbers = {name: round(statistics.median(getattr(c, name) for c in history), 6)
               for name, value in asdict(history[-1]).items() if isinstance(value, (int, float))}
    return Calibration(**{**asdict(history[-1]), **numbers})


def _readable(figures) -> list:
    """The kept calibrations as ``Calibration`` s; [] for none, and for figures another version kept."""
    entries = figures if isinstance(figures, list) else [figures] if isinstance(figures, dict) else []
    try:
        return [Calibration(**e) for e in entries]
    except TypeError:  # kept by another version (other fields): measured again
        return []


def measure(dtype: str = "float32", hidden: int = 576, inter: int = 1536) -> Calibration:
    """Every probe, now (nothing read or kept)."""
    from lorakit.common.devices import matmul_gflops

    t0 = time.perf_counter()
    # the median of rounds spread over a second or two: one short probe on a shared machine measured anywhere
    # from 61 to 135 GFLOP/s minutes apart, and a kept figure is used for every later plan
    rounds = [(matmul_gflops(dtype, size=(TRAIN_ROWS, hidden, inter), min_seconds=0.1),
               matmul_gflops(dtype, size=(DECODE_ROWS, hidden, inter), min_seconds=0.06)) for _ in range(ROUNDS)]
    train, decode = (statistics.median(r[i] for r in rounds) for i in (0, 1))
    return Calibration(dtype=dtype, train_gflops=round(train, 2), decode_gflops=round(decode, 2),
                       elementwise_gbs=round(_elementwise_gbs(dtype, hidden, inter), 2),
                       dequant_gbs=round(_dequant_gbs(dtype, hidden, inter), 3),
                       adamw_ns_per_param=round(_adamw_ns(), 3), layer_overhead_s=_layer_overhead_s(),
                       attention_gflops=round(_attention_gflops(dtype, hidden), 2),
                       dropout_ns_per_element=round(_dropout_ns(dtype, hidden), 3),
                       measured_s=round(time.perf_counter() - t0, 2))


def _seconds(fn: Callable, min_seconds: float = 0.15) -> float:
    """Mean seconds of ``fn()`` over at least ``min_seconds`` (one call first, untimed)."""
    fn()
    done, t0 = 0, time.perf_counter()
    while True:
        fn()
        done += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / done


def _elementwise_gbs(dtype: str, hidden: int, inter: int) -> float:
    """SiLU times an up projection (the MLP's gate) over training rows: 2 tensors read, 1 written."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(TRAIN_ROWS * 2, inter).to(dt), torch.randn(TRAIN_ROWS * 2, inter).to(dt)
    seconds = _seconds(lambda: torch.nn.functional.silu(a) * b)
    return 4 * a.numel() * a.element_size() / seconds / 1e9  # silu: read, write; mul: read 2, write


def _dequant_gbs(dtype: str, hidden: int, inter: int) -> float:
    """bitsandbytes' nf4 dequantization of one (inter x hidden) weight, in dense GB produced per second."""
    import torch

    from lorakit.common.quiet import quiet_bitsandbytes

    quiet_bitsandbytes()
    import bitsandbytes.functional as bnbf

    weight = torch.randn(inter, hidden).to(getattr(torch, dtype))
    packed, state = bnbf.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    seconds = _seconds(lambda: bnbf.dequantize_4bit(packed, state))
    return weight.numel() * weight.element_size() / seconds / 1e9


def _adamw_ns(params: int = 1 << 20) -> float:
    """torch's AdamW (as the Trainer builds it) stepping ``params`` fp32 parameters, per parameter."""
    import torch

    p = torch.nn.Parameter(torch.randn(params))
    p.grad = torch.randn(params)
    opt = torch.optim.AdamW([p], lr=1e-4)
    return _seconds(opt.step, 0.1) / params * 1e9


def _layer_overhead_s() -> float:
    """Forward and backward of a layer too small to compute anything: what each layer costs besides its math."""
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8), torch.nn.SiLU(),
                                torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    x = torch.randn(1, 4, 8, requires_grad=True)
    return round(_seconds(lambda: layer(x).sum().backward(), 0.1), 6)


ATTENTION_BATCH, ATTENTION_SEQ, HEAD_DIM = 4, 128, 64  # the default batch; heads of 64 (hidden // 64 of them)


def _attention_gflops(dtype: str, hidden: int) -> float:
    """A layer's attention at the default batch: scaled_dot_product_attention with a causal boolean mask (what
    transformers hands it for a padded batch), forward and backward, as GFLOP/s of its two matmuls counted as
    ``timing.step_work`` counts them (4 x batch x seq^2 x heads x head_dim forward, twice that backward)."""
    import torch

    dt, heads = getattr(torch, dtype), max(1, hidden // HEAD_DIM)
    shape = (ATTENTION_BATCH, heads, ATTENTION_SEQ, HEAD_DIM)
    q, k, v = (torch.randn(shape).to(dt).requires_grad_() for _ in range(3))
    mask = torch.ones(ATTENTION_SEQ, ATTENTION_SEQ, dtype=torch.bool).tril().expand(ATTENTION_BATCH, 1, -1, -1)

    def step():
        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    flops = 3 * 4 * ATTENTION_BATCH * ATTENTION_SEQ ** 2 * heads * HEAD_DIM
    return flops / _seconds(step, 0.15) / 1e9


def _dropout_ns(dtype: str, hidden: int) -> float:
    """Dropout (p=0.05, LoRA's default) over a layer input of training rows, forward and backward, per element."""
    import torch

    x = torch.randn(TRAIN_ROWS * 2, hidden).to(getattr(torch, dtype)).requires_grad_()
    grad = torch.ones_like(x)

    def step():
        torch.nn.functional.dropout(x, p=0.05, training=True).backward(grad)
    return _seconds(step, 0.1) / x.numel() * 1e9
