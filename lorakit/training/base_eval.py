"""The "before training" task result, computed once per base and reused by later runs in the store.

``train`` evaluates the base as loaded, before an adapter is attached or a weight trained, so LoRA
(every variant), QLoRA and full fine-tuning on one base share one result, which depends only on
what :func:`cache_key` hashes: the model and its storage (quantization, dtype), the device kind,
the prompts as the chat template renders them, the references, the generation settings and the
library versions that compute them. The key's description is stored beside the result.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

from lorakit.config.run_config import RunConfig
from lorakit.data import prompt_text

log = logging.getLogger("lorakit")

KEY_VERSION = 2  # bump when generation or scoring changes what a cached result would be (2: batches of 32)


def _sha(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _file_identity(path: str) -> Optional[str]:
    """Content hash of a local data file (its name can stay while its rows change)."""
    p = Path(path).expanduser()
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_identity(name: str) -> Optional[str]:
    """A local model directory: its files' names, sizes and modification times (new weights, new key)."""
    p = Path(name).expanduser()
    if not p.is_dir():
        return None  # a built-in or hub name identifies its weights
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(p) if e.is_file())
    return _sha(entries)


def _versions() -> dict:
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except Exception:  # noqa: BLE001 - not installed, or not importable here: quantized runs fail earlier
        pass
    return out


def cache_key(cfg: RunConfig, tokenizer, eval_raw: list, device: str, max_new_tokens: int,
              labels: tuple = ()) -> tuple[str, dict]:
    """``(key, description)``: the hash and the readable inputs it was made from. ``labels``: a classifier's
    (its untrained head, drawn from ``cfg.seed`` while loading, is part of the base it evaluates)."""
    four_bit = cfg.base.four_bit
    prompts = [prompt_text(tokenizer, list(r["messages"])) for r in eval_raw]  # the chat template's text
    desc = {
        "version": KEY_VERSION, "model": cfg.model, "model_files": _model_identity(cfg.model),
        "quant": cfg.quant, "double_quant": bool(cfg.double_quant) and four_bit, "dtype": cfg.dtype,
        "device": device.split(":")[0], "dataset": cfg.dataset, "data_file": _file_identity(cfg.dataset),
        "data_encoding": cfg.data_encoding, "on_bad_rows": cfg.on_bad_rows, "train_examples": cfg.train_examples,
        "eval_examples": cfg.eval_examples, "seed": cfg.seed, "max_new_tokens": int(max_new_tokens),
        "n_eval": len(eval_raw), "prompts": _sha(prompts), "references": _sha(r["reference"] for r in eval_raw),
        "tokenizer": _sha([type(tokenizer).__name__, len(tokenizer), tokenizer.eos_token, tokenizer.pad_token,
                           getattr(tokenizer, "chat_template", None)]),
        **_versions(),
        **({"task": "classification", "labels": list(labels)} if labels else {}),  # no change to other keys
    }
    return _sha([json.dumps(desc, sort_keys=True)]), desc


def cached_before(store, key: str) -> Optional[tuple]:
    """``(metric, details)`` an earlier run stored under ``key``, or None (none stored, or no store)."""
    from lorakit.store.eval_cache import lookup

    return lookup(store, key) if store is not None else None


def before_training(store, key: str, description: dict,
                    compute: Callable[[], tuple]) -> tuple[Optional[float], list, bool, float]:
    """``(metric, details, cached, seconds)``: the store's result under ``key``, else ``compute()``'s,
    which is then stored. ``store`` None (a run that keeps nothing) always computes."""
    from lorakit.store import StoreError
    from lorakit.store.eval_cache import remember

    t0 = time.perf_counter()
    hit = cached_before(store, key)
    if hit is not None:
        return hit[0], hit[1], True, time.perf_counter() - t0
    metric, details = compute()
    seconds = time.perf_counter() - t0
    if store is not None:
        try:
            remember(store, key, description, metric, details, seconds)
        except StoreError as e:  # a full disk costs the next run this pass, not this run its result
            log.warning("%s", e)
    return metric, details, False, seconds
