"""Where a model lives (the device of its first real parameter) and how fast that device multiplies."""
from __future__ import annotations

from pathlib import Path


def model_device(model):
    """The ``torch.device`` of the model's first parameter that is not on the meta device (CPU if none)."""
    import torch

    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def matmul_gflops(dtype: str = "float32", device: str = "cpu", size: tuple = (256, 576, 1536),
                  min_seconds: float = 0.2) -> float:
    """This device's measured matrix-multiply speed in ``dtype`` (GFLOP/s), over at least ``min_seconds``.

    The same CPU kind ranges from ~1 GFLOP/s in bf16 (no AVX512-BF16 or AMX: emulated) to hundreds, so
    a notebook picks its compute dtype from this measurement, not from habit. ``size`` = (m, k, n) of
    (m x k) @ (k x n); the default is one SmolLM2 MLP projection over 256 tokens.
    """
    import time

    import torch

    m, k, n = size
    dt = getattr(torch, dtype)
    a, b = torch.randn(m, k, device=device).to(dt), torch.randn(k, n, device=device).to(dt)
    a @ b  # first call: kernel selection, allocation
    done, t0 = 0, time.perf_counter()
    while True:
        a @ b
        if device != "cpu":
            torch.cuda.synchronize(device)
        done += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return 2 * m * k * n * done / elapsed / 1e9


def free_ram() -> int:
    """This machine's available memory in bytes (MemAvailable; psutil where /proc is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # not a dependency: only where /proc/meminfo is missing (macOS, Windows)

    return int(psutil.virtual_memory().available)
