"""Keep notebook and CLI output clean: the libraries' per-call warnings and progress bars off.

lorakit reports progress through its own events; the libraries' bars (tensor loading, dataset
mapping) and advice aimed at library authors would only bury the loss curve in a workshop.
Set ``LORAKIT_VERBOSE=1`` to keep everything.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import warnings

# bitsandbytes looks up an optional CPU kernel while it is imported (on CPUs with AVX512-BF16) and logs "Failed to
# load CPU gemm_4bit_forward from kernels-community ... pip install kernels" when offline or not installed. peft
# and transformers import it before any lorakit call can quiet it (a Studio's planner thread), and a beginner
# takes the red line for a broken install: these loggers are quieted (below error) at ``import lorakit``.
KERNEL_LOOKUP_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels")


@functools.cache
def quiet_kernel_lookup() -> None:
    """Quiet the optional-kernel lookup's loggers, and the ``kernels`` package's warnings (imports nothing)."""
    if os.environ.get("LORAKIT_VERBOSE"):
        return
    for name in KERNEL_LOOKUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"kernels(\.|$)")


@functools.cache
def quiet_libraries() -> None:
    if os.environ.get("LORAKIT_VERBOSE"):
        return
    from .quantization import quiet_bitsandbytes

    quiet_bitsandbytes()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warning from the tokenizers pool
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    # transformers 5 renamed gradient-checkpointing attributes that peft still reads
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*Merge lora module to 4-bit linear.*")


@contextlib.contextmanager
def progress_bars_off(library: str):
    """Within the block, no progress bars from ``library`` ("transformers" or "datasets": both keep
    the switch in ``<library>.utils.logging``); restored afterwards if they were on."""
    lib_logging = importlib.import_module(f"{library}.utils.logging")
    was_enabled = lib_logging.is_progress_bar_enabled()
    lib_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            lib_logging.enable_progress_bar()
