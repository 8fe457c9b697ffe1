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


@functools.cache
def quiet_libraries() -> None:
    if os.environ.get("LORAKIT_VERBOSE"):
        return
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


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not any(f in msg for f in self.fragments)


@functools.cache
def quiet_bitsandbytes() -> None:
    """Silence two harmless bitsandbytes messages before it is imported.

    - "Failed to load CPU gemm_4bit_forward from kernels-community": an optional accelerator
      package that would download at run time; the built-in CPU kernel is used instead.
    - "MatMul8bitLt: inputs will be cast ... to float16": logged on *every* int8 forward pass.
    """
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessages("gemm_4bit_forward"))
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_DropMessages("MatMul8bitLt"))
    quiet_accelerator_packages()


# Loggers of optional accelerator packages and of the code that looks them up. Their warnings say that a kernel
# could not be fetched (offline, not installed, another version): the built-in one runs instead, so a workshop
# gets nothing from them. Their wording differs between machines and versions (a CPU with AVX512-BF16 has
# bitsandbytes ask the ``kernels`` hub for its fused kernel: "Version 1 of 'kernels-community/...' is not
# available in the local cache ..."), so they are quieted by source, not by text; errors still show.
ACCELERATOR_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels")


def quiet_accelerator_packages() -> None:
    """Below-error messages of ``ACCELERATOR_LOGGERS`` (and their children) stay out of the output."""
    import warnings

    for name in ACCELERATOR_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)  # children at NOTSET inherit it
    warnings.filterwarnings("ignore", module=r"kernels(\.|$)")


@functools.cache
def quiet_kernel_lookup() -> None:
    """At ``import lorakit``: bitsandbytes looks up an optional CPU kernel while it is imported (on CPUs with
    AVX512-BF16) and logs "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels"
    when offline; peft and transformers import it before any lorakit call could quiet it (a Studio's planner
    thread), and a beginner takes the red line for a broken install. Imports nothing."""
    if not os.environ.get("LORAKIT_VERBOSE"):
        quiet_accelerator_packages()
