"""Import the engine's heavy libraries once, on one thread at a time.

transformers resolves its names lazily, and two threads resolving them for the first time at once
can fail (``ImportError: cannot import name 'AutoConfig'``). The Studio loads a model, plans memory
and trains on background threads while the notebook's own thread may call the engine, so every
engine entry point (load_model, plan_memory, train, load_adapter) and every Studio job calls
``warm()`` first: the first caller imports everything under a lock, the others wait for it, later
calls return at once.
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_done: set = set()

_NAMES = {
    "transformers": ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "PretrainedConfig",
                     "PreTrainedTokenizerFast", "Trainer", "TrainingArguments", "TrainerCallback",
                     "DataCollatorForSeq2Seq", "GenerationConfig", "BitsAndBytesConfig", "set_seed"),
    "peft": ("LoraConfig", "PeftModel", "get_peft_model", "prepare_model_for_kbit_training"),
    "accelerate": ("init_empty_weights",),
    "datasets": ("Dataset",),
}
_SUBMODULES = {"transformers": ("transformers.trainer_callback", "transformers.utils.logging")}


def warm(*modules: str) -> None:
    """Resolve the names lorakit uses from ``modules`` (default: transformers, peft, accelerate and
    datasets); idempotent. The planner asks only for what it needs: peft and datasets add ~6 s."""
    wanted = [m for m in (modules or tuple(_NAMES)) if m not in _done]
    if not wanted:
        return
    with _lock:
        import importlib

        import torch  # noqa: F401

        for module in wanted:
            if module in _done:
                continue
            _resolve(importlib, module)
            _done.add(module)


def _resolve(importlib, module: str) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return  # an optional library: its own availability check reports it
    for name in _NAMES[module]:
        try:
            getattr(mod, name)
        except (ImportError, AttributeError):
            pass
    for sub in _SUBMODULES.get(module, ()):
        try:
            importlib.import_module(sub)
        except ImportError:
            pass


# Building modules is not thread-safe in this stack: accelerate's ``init_empty_weights`` (the planner)
# patches ``nn.Module.register_parameter`` and transformers' loading patches ``torch.nn.init``, both
# process-wide. A LoRA layer created on another thread meanwhile would land on the meta device or
# skip its initialisation. Every place lorakit creates modules holds this lock; it is re-entrant
# because loading may plan and planning may load a config.
_BUILD_LOCK = threading.RLock()


def building():
    """Context manager: hold lorakit's module-construction lock (see ``_BUILD_LOCK``)."""
    return _BUILD_LOCK
