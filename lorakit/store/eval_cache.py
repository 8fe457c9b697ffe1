"""The base model's task result, kept once per store: ``lookup`` and ``remember`` by key.

The key (made by :func:`lorakit.training.base_eval.cache_key`) is a hash of everything that decides the
result: the model, its storage, the prompts and references, the generation settings. A key that
changes is a miss; nothing is ever updated in place, so a stale row is never read.
"""
from __future__ import annotations

import json
import time
from typing import Optional

from lorakit.store.record_rows import dumps, num
from lorakit.store.schema import EVAL_CACHE


def lookup(store, key: str) -> Optional[tuple[Optional[float], list]]:
    """``(task_metric, details)`` stored under ``key``, or None."""
    rows = store._query("SELECT task_metric, details FROM eval_cache WHERE key = ?", (key,))
    if not rows:
        return None
    metric, details = rows[0]
    return metric, json.loads(details)


def remember(store, key: str, description: dict, metric: Optional[float], details: list, seconds: float) -> None:
    """Store a result under ``key`` (a row already there is kept: it was computed from the same inputs)."""
    with store._writing("cannot cache the base model's evaluation") as c:
        c.execute(EVAL_CACHE.insert("INSERT OR IGNORE"),
                  (key, time.time(), dumps(description), num(metric), dumps(details), num(seconds)))


def size(store) -> int:
    """How many results the store holds."""
    return store._query("SELECT COUNT(*) FROM eval_cache")[0][0]
