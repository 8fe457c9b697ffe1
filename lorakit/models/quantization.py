"""bitsandbytes settings for each quantization mode, behind an availability check.

Modes: 'none' (weights kept in ``dtype``), 'int8' (LLM.int8: int8 weights + fp16 outliers),
'nf4' / 'fp4' (4-bit blocks of 64 with one absmax each; QLoRA uses nf4). ``double_quant`` also
quantizes those absmax constants to 8 bits in blocks of 256 (saves ~0.37 bits per parameter).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from lorakit.common.quiet import quiet_bitsandbytes
from lorakit.config.parts import four_bit
from lorakit.config.run_config import DTYPE_CHOICES, QUANTS, ConfigError, not_one_of

DTYPE_MAP = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Kept equal to the bitsandbytes requirement in pyproject.toml (a test checks they match).
BNB_REQUIREMENT = "bitsandbytes>=0.48"


class QuantizationUnavailable(RuntimeError):
    """The requested quantization mode cannot run on this machine."""


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def check_quant_dtype(quant: str, dtype: str) -> None:
    """Raise ConfigError (a ValueError) naming the field and the allowed values for an unknown quant or dtype."""
    problems = {name: problem for name, value, allowed in (("quant", quant, QUANTS), ("dtype", dtype, DTYPE_CHOICES))
                if (problem := not_one_of(name, value, allowed))}
    if problems:
        raise ConfigError(problems)


def check_quant_available(quant: str, device: str) -> None:
    """Raise QuantizationUnavailable with a plain reason when ``quant`` cannot run here."""
    if quant == "none":
        return
    if not bitsandbytes_available():
        raise QuantizationUnavailable(f"quant={quant!r} needs bitsandbytes: pip install '{BNB_REQUIREMENT}'")
    quiet_bitsandbytes()
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # a broken native library must not crash the kernel
        raise QuantizationUnavailable(f"quant={quant!r}: bitsandbytes failed to load ({exc})") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QuantizationUnavailable(
            f"quant={quant!r} on device {device!r}: CUDA is not available on this machine; use device='cpu'"
        )


def bnb_config(quant: str, double_quant: bool = True, dtype: str = "float32"):
    """The transformers ``BitsAndBytesConfig`` for a mode, or None for 'none'."""
    if quant == "none":
        return None
    quiet_bitsandbytes()
    from transformers import BitsAndBytesConfig

    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant,
        bnb_4bit_use_double_quant=bool(double_quant),
        bnb_4bit_compute_dtype=DTYPE_MAP[dtype],
        bnb_4bit_quant_storage=torch.uint8,
    )


@dataclass(frozen=True)
class QuantError:
    """How well one weight matrix survives a quantization round trip."""
    mode: str
    rmse: float
    max_abs: float
    rel_error: float  # ||W - Q(W)|| / ||W||
    bytes: int  # storage of the quantized weight plus its quantization state
    bits_per_param: float


def quantization_error(weight: torch.Tensor, mode: str, double_quant: bool = False) -> QuantError:
    """Quantize ``weight`` with bitsandbytes, dequantize, and measure the error and the bytes.

    For teaching: the same kernels the model loader uses, applied to one tensor.
    """
    quiet_bitsandbytes()
    import bitsandbytes.functional as F

    w = weight.detach().float().cpu().contiguous()
    if four_bit(mode):
        q, state = F.quantize_4bit(w, blocksize=64, quant_type=mode, compress_statistics=double_quant)
        deq = F.dequantize_4bit(q, state)
        nbytes = _nbytes(q) + _state_bytes(state)
    elif mode == "int8":
        # LLM.int8 stores weights row-wise: int8 values + one fp32 scale per output row.
        q, scale, _ = F.int8_vectorwise_quant(w.half())
        deq = q.float() * scale.float().unsqueeze(1) / 127.0
        nbytes = _nbytes(q) + _nbytes(scale)
    else:
        raise ValueError(f"mode must be 'nf4', 'fp4' or 'int8', got {mode!r}")
    diff = (w - deq.float()).flatten()
    return QuantError(
        mode=mode,
        rmse=float(diff.pow(2).mean().sqrt()),
        max_abs=float(diff.abs().max()),
        rel_error=float(diff.norm() / w.norm()),
        bytes=nbytes,
        bits_per_param=8 * nbytes / w.numel(),
    )


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _state_bytes(state) -> int:
    """Bytes of a bitsandbytes QuantState: absmax, code book, and the nested state if any."""
    if state is None:
        return 0
    total = _nbytes(state.absmax) + _nbytes(state.code)
    if getattr(state, "nested", False) and state.state2 is not None:
        total += _nbytes(state.offset) + _state_bytes(state.state2)
    return total


quant_state_bytes = _state_bytes
