"""A CPU with AVX512-BF16, as bitsandbytes sees it, on any x86 or ARM CPU: for running the suite here the way it
runs on such a machine (``LORAKIT_EMULATE_AVX512BF16=1``, read by tests/conftest.py).

On such a CPU bitsandbytes 0.50 does two things differently, and this module makes both happen:
- ``has_avx512bf16()`` is true, so every ``Linear4bit`` is built with ``support_avx512bf16_for_cpu`` and repacks
  its weight in place at its first forward in eval mode without gradients (``_convert_weight_packed_for_cpu``);
- ``bitsandbytes::gemv_4bit`` on CPU is its fused kernel, which reads that packed layout and computes in bf16.
The fused kernel needs the CPU's bf16 instructions, so here it is written in plain torch: the packed nibbles
are put back in (N, K) order (the index arithmetic of bitsandbytes' own ``_convert_weight_packed_for_cpu_inverse``),
looked up in the 4-bit code, scaled by the transposed bf16 absmax and multiplied in bf16, as the kernel does.
What it cannot bring: the machine's own speed, torch's oneDNN bf16 paths, and the ``kernels`` hub lookup.
"""
from __future__ import annotations

import torch

BLOCK_N = 32  # bitsandbytes' packing tile: 32 output rows


def packed_gemv(A: torch.Tensor, B: torch.Tensor, shapeB, absmax: torch.Tensor, code: torch.Tensor,
                blocksize: int) -> torch.Tensor:
    """``A`` (..., K) times the packed 4-bit weight ``B`` (N, K/2) transposed, in bf16, as the fused kernel."""
    n, k = int(shapeB[0]), int(shapeB[1])
    packed = B.contiguous().view(torch.uint8).reshape(-1, 32)
    nibbles = torch.cat([packed & 0xF, (packed >> 4) & 0xF], dim=-1)  # (N*K/64, 64): 32 low, then 32 high
    idx = nibbles.reshape(n // BLOCK_N, k // 2, BLOCK_N, 2).transpose(1, 2).reshape(n, k).long()
    scale = absmax.to(torch.float32).reshape(k // blocksize, n).T  # (N, K/blocksize)
    weight = code.to(torch.float32)[idx] * scale.repeat_interleave(blocksize, dim=1)  # (N, K)
    out = A.to(torch.bfloat16).reshape(-1, k) @ weight.to(torch.bfloat16).T
    return out.to(A.dtype).reshape(*A.shape[:-1], n)


def install() -> None:
    """Make this process's bitsandbytes behave as on a CPU with AVX512-BF16 (before any model is built)."""
    import bitsandbytes.backends.cpu.ops as cpu_ops
    import bitsandbytes.functional as F
    import bitsandbytes.nn.modules as modules

    def yes() -> bool:
        return True

    for mod in (F, modules, cpu_ops):
        mod.has_avx512bf16 = yes
    torch.library.register_kernel("bitsandbytes::gemv_4bit", "cpu", packed_gemv)
