"""A full fine-tuning run's trained model, kept in its run folder (``RunConfig.keep_weights``) so it can be
exported: transformers' own ``save_pretrained`` (safetensors, config, generation config) plus the tokenizer
(its chat template with it), read back by ``from_pretrained`` with the auto class of the run's task.

LoRA keeps an adapter; full fine-tuning has none, so this folder is the run's only trained result.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Union

from lorakit.adapters.base_record import AdapterError
from lorakit.common.threads import building, warm

MARKER = "config.json"  # what tells a kept model from an adapter (adapter_config.json) in a run folder


def kept(folder: Union[str, Path, None]) -> bool:
    """Whether ``folder`` holds a kept full model."""
    return folder is not None and (Path(folder) / MARKER).is_file()


def save_full(model, tokenizer, path: Union[str, Path]) -> int:
    """Save the whole model and its tokenizer into ``path`` (other files there, e.g. checkpoints, stay);
    returns the bytes written. Written to a sibling folder first: a full disk leaves no half-written model."""
    path = Path(path)
    partial = path.with_name(path.name + ".weights-partial")
    shutil.rmtree(partial, ignore_errors=True)
    use_cache = getattr(model.config, "use_cache", None)
    try:
        if use_cache is not None:
            model.config.use_cache = True  # training switched it off; an answering model wants it
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        written = sorted(p for p in partial.rglob("*") if p.is_file())
        nbytes = sum(f.stat().st_size for f in written)
        for f in written:
            (path / f.relative_to(partial)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, path / f.relative_to(partial))
    except OSError as exc:
        raise AdapterError(f"weights: not kept in {str(path)!r}: {exc.strerror or exc} "
                           "(nothing was left half-written)") from exc
    finally:
        if use_cache is not None:
            model.config.use_cache = use_cache
        shutil.rmtree(partial, ignore_errors=True)
    return nbytes


def load_full(path: Union[str, Path], task: str = "causal-lm"):
    """(model, tokenizer) of a kept full model, with ``task``'s head, on CPU in its saved dtype."""
    warm("transformers")
    from transformers import AutoTokenizer

    from lorakit.models.heads import auto_class

    with building():
        model = auto_class(task or "causal-lm").from_pretrained(str(path), dtype="auto")
    return model.eval(), AutoTokenizer.from_pretrained(str(path))
