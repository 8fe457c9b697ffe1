"""Where ``RunConfig.dataset`` points: a built-in task, a local file, or a Hugging Face Hub dataset.

User data (a file or a hub dataset) has ``prompt`` and ``completion`` columns, or a ``messages``
column in chat format whose last assistant turn is the answer. It is read into rows
(``rows.make_row``) and split into train and eval deterministically with the seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..hub import unreachable_reason
from ..logging_setup import progress_bars_off
from .rows import DataError, make_row
from .tasks import TaskInfo, did_you_mean, list_tasks

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}  # datasets' builders
_EXPECTED_COLUMNS = "'prompt' and 'completion' columns, or a 'messages' column (chat format)"


def load_rows(dataset: str) -> tuple[list[dict], Optional[TaskInfo], str]:
    """Resolve ``dataset`` to rows (user data) or a task: (rows, task, source description)."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError("dataset: must be a built-in task name, a local file or a hub dataset; got "
                        f"{dataset!r}")
    tasks = {t.name: t for t in list_tasks()}
    if dataset in tasks:
        return [], tasks[dataset], f"built-in task {dataset!r}"
    path = Path(dataset).expanduser()
    if path.is_dir():
        raise DataError(f"dataset: {dataset!r} is a directory; give one data file "
                        f"({', '.join(FILE_SUFFIXES)})")
    if path.exists():
        ds = _load_file(path)
        return rows_from_dataset(ds, repr(str(path))), None, f"file {str(path)!r}"
    parent = path.parent
    looks_like_file = (path.suffix.lower() in FILE_SUFFIXES or dataset.startswith(("./", "../", "/", "~"))
                       or (str(parent) not in ("", ".") and parent.is_dir()))
    if looks_like_file:
        raise DataError(f"dataset: file {dataset!r} not found (built-in tasks: {', '.join(tasks)})")
    ds = _load_hub(dataset)
    return rows_from_dataset(ds, f"hub dataset {dataset!r}"), None, f"hub dataset {dataset!r}"


def _load_file(path: Path):
    import datasets

    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise DataError(f"dataset: {str(path)!r} has an unsupported type {suffix or '(no suffix)'}; "
                        f"use one of {', '.join(FILE_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"dataset: {str(path)!r} is empty; it needs {_EXPECTED_COLUMNS}")
    try:
        with progress_bars_off("datasets"):  # no "Map: 100%" bars in notebook output
            return datasets.load_dataset(_LOADERS[suffix], data_files=str(path), split="train")
    except Exception as exc:  # pyarrow / json / csv parse errors
        raise DataError(f"dataset: could not read {str(path)!r} as {suffix[1:]}: {_first_line(exc)}") from exc


def _load_hub(name: str):
    import datasets

    def fail(reason: str):
        unknown = f"unknown built-in task {name!r}{did_you_mean(name)}; " if "/" not in name else ""
        return DataError(
            f"dataset: {unknown}could not download dataset {name!r} from the Hugging Face Hub "
            f"({reason}); use a built-in task ({', '.join(t.name for t in list_tasks())}) or a local file "
            f"({', '.join(FILE_SUFFIXES)}) with {_EXPECTED_COLUMNS}")

    reason = unreachable_reason("HF_DATASETS_OFFLINE")
    if reason:
        raise fail(reason)
    try:
        with progress_bars_off("datasets"):  # no "Map: 100%" bars in notebook output
            return datasets.load_dataset(name, split="train")
    except Exception as exc:
        raise fail(_first_line(exc)) from exc


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def rows_from_dataset(ds, source: str) -> list[dict]:
    """Rows {prompt, answer, messages} from a ``datasets.Dataset`` with the supported columns."""
    cols = list(ds.column_names)
    if len(ds) == 0:
        raise DataError(f"dataset: {source} is empty (no rows); it needs {_EXPECTED_COLUMNS}")
    if "messages" in cols:
        return [_row_from_messages(m, i, source) for i, m in enumerate(ds["messages"])]
    if "prompt" in cols and "completion" in cols:
        rows = []
        for i, (p, c) in enumerate(zip(ds["prompt"], ds["completion"], strict=True)):
            if p is None or c is None or not str(p).strip():
                which = "prompt" if p is None or not str(p).strip() else "completion"
                raise DataError(f"dataset: row {i} of {source} has an empty {which!r}")
            rows.append(make_row(str(p), str(c)))
        return rows
    raise DataError(f"dataset: {source} has columns {', '.join(map(repr, cols)) or '(none)'}; "
                    f"expected {_EXPECTED_COLUMNS}")


def _row_from_messages(messages: Any, i: int, source: str) -> dict:
    """The last assistant turn is the answer, the turns before it the context; later turns are dropped."""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError:
            raise DataError(f"dataset: row {i} of {source}: 'messages' is not a JSON list of "
                            "{role, content} turns") from None
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise DataError(f"dataset: row {i} of {source}: 'messages' must be a list of {{role, content}} turns")
    last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise DataError(f"dataset: row {i} of {source}: 'messages' needs an assistant turn after "
                        "at least one other turn (the last assistant turn is the answer)")
    context = [{"role": m["role"], "content": str(m["content"])} for m in messages[:last]]
    users = [m["content"] for m in context if m["role"] == "user"]
    prompt = users[-1] if users else context[-1]["content"]
    return make_row(prompt, str(messages[last]["content"]), context)


def split_rows(rows: list, n_train: int, n_eval: int, seed: int) -> tuple[list, list, str]:
    """Deterministic train/eval split of user rows with ``Dataset.train_test_split``: (train, eval,
    a note when the eval set had to shrink, else "")."""
    import datasets

    n = len(rows)
    if n < 2:
        raise DataError(f"dataset: needs at least 2 rows (one to train, one to evaluate); found {n}")
    note = ""
    test = min(n_eval, n // 2)
    if test < n_eval:
        note = f"eval_examples reduced to {test}: the dataset has only {n} rows"
    index = datasets.Dataset.from_dict({"i": list(range(n))})
    split = index.train_test_split(test_size=test, seed=seed, shuffle=True)
    train_idx = split["train"]["i"][:n_train]
    eval_idx = split["test"]["i"]
    return [rows[i] for i in train_idx], [rows[i] for i in eval_idx], note
