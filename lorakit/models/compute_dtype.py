"""``dtype="auto"``: the compute dtype this machine runs well, measured once per machine and kept.

CPUs differ by two orders of magnitude in bf16: without AVX512-BF16 or AMX, bf16 matmuls are emulated
(1-2 GFLOP/s against ~100-250 in fp32 on this project's 2-core machines); with them, bf16 ran 4.4x faster than
fp32 (792 against 181 GFLOP/s on a 2-core AMD EPYC with AVX512-BF16, issue 30). So a CPU run computes in bf16
only where the measured bf16 matmul is at least ``BF16_SPEEDUP`` times the fp32 one, else in fp32 as before.
A GPU: bf16 where it supports it (as the QLoRA paper trains; a GPU planned for from a machine without one is
assumed to), else fp32 (fp16 weights would need loss scaling).
The measurement (one SmolLM2 MLP-sized matmul per dtype, about a second) is stored per machine under the
cache home (``capability.json``), keyed by the CPU's model name, flags and torch's version.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform

BF16_SPEEDUP = 1.5  # bf16 must be this much faster than fp32 to be worth its coarser mantissa
AUTO = "auto"


def resolve(dtype: str, device: str = "cpu") -> str:
    """``dtype`` itself, or for ``"auto"`` the compute dtype this ``device`` runs well (see the module)."""
    if dtype != AUTO:
        return dtype
    if str(device).startswith("cuda"):
        import torch

        # a GPU this machine lacks (planning for one): assumed to support bf16, as GPUs since Ampere do
        return "float32" if torch.cuda.is_available() and not torch.cuda.is_bf16_supported() else "bfloat16"
    return "bfloat16" if cpu_bf16_speedup() >= BF16_SPEEDUP else "float32"


def resolve_config(cfg, device: str = "cpu"):
    """``cfg`` (a RunConfig) with ``dtype`` resolved for ``device``: what the run records and computes in."""
    resolved = resolve(cfg.dtype, device)
    return cfg if resolved == cfg.dtype else cfg.replace(dtype=resolved)


@functools.cache
def cpu_bf16_speedup() -> float:
    """This CPU's bf16 matmul speed over its fp32 one: measured once per machine, then read from the cache."""
    key = _machine_key()
    path = _cache_path()
    known = _read(path)
    if key in known:
        return float(known[key]["speedup"])
    figures = measure()
    known[key] = figures
    _write(path, known)
    return figures["speedup"]


def measure() -> dict:
    """{'float32': GFLOP/s, 'bfloat16': GFLOP/s, 'speedup': bf16 / fp32} measured now on this CPU."""
    from lorakit.common.devices import matmul_gflops

    fp32 = matmul_gflops("float32", min_seconds=0.2)
    bf16 = matmul_gflops("bfloat16", min_seconds=0.2)
    return {"float32": round(fp32, 2), "bfloat16": round(bf16, 2), "speedup": round(bf16 / fp32, 3)}


def kept(name: str):
    """Figures kept for this machine under ``name`` (e.g. ``memory.calibration``'s), or None."""
    return _read(_cache_path()).get(f"{_machine_key()} {name}")


def keep(name: str, figures: dict) -> None:
    """Keep ``figures`` for this machine under ``name`` in the same file as the bf16 measurement."""
    path = _cache_path()
    known = _read(path)  # read again: another process may have written meanwhile
    known[f"{_machine_key()} {name}"] = figures
    _write(path, known)


def _machine_key() -> str:
    import torch

    flags = model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].strip()
    except OSError:  # not Linux: the platform's name stands in
        model = platform.processor()
    digest = hashlib.sha256(f"{model}|{flags}|{torch.__version__}".encode()).hexdigest()[:16]
    return f"{model or platform.machine()} {digest}"


def _cache_path() -> str:
    from lorakit.common.home import cache_home

    return os.path.join(str(cache_home()), "capability.json")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged: measured again
        return {}


def _write(path: str, data: dict) -> None:
    """Written beside and renamed, so a concurrent reader never sees half a file; a read-only home keeps none."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
