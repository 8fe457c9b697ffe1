"""Import the engine's heavy libraries once, on one thread at a time.

transformers resolves its names lazily, and two threads resolving them for the first time at once
can fail (``ImportError: cannot import name 'AutoModelForCausalLM'``). The Studio loads a model,
plans memory and trains on background threads, so each of them calls ``warm()`` first: the first
caller imports everything under a lock, the others wait for it, later calls return at once.
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False

_NAMES = {
    "transformers": ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "PretrainedConfig",
                     "PreTrainedTokenizerFast", "Trainer", "TrainingArguments", "TrainerCallback",
                     "DataCollatorForSeq2Seq", "GenerationConfig", "BitsAndBytesConfig", "set_seed"),
    "peft": ("LoraConfig", "PeftModel", "get_peft_model", "prepare_model_for_kbit_training"),
    "accelerate": ("init_empty_weights",),
    "datasets": ("Dataset",),
}


def warm() -> None:
    """Resolve the names lorakit uses from transformers, peft, accelerate and datasets (idempotent)."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import importlib

        import torch  # noqa: F401

        for module, names in _NAMES.items():
            try:
                mod = importlib.import_module(module)
            except ImportError:
                continue
            for name in names:
                try:
                    getattr(mod, name)
                except (ImportError, AttributeError):
                    pass
        try:
            import transformers.trainer_callback  # noqa: F401
            import transformers.utils.logging  # noqa: F401
        except ImportError:
            pass
        _done = True
