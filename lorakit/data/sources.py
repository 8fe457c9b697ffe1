"""Where ``RunConfig.dataset`` points: a built-in task, a local file, a ``save_to_disk`` folder, or a
Hugging Face Hub dataset.

User data (a file, a saved or a hub dataset) is in one of ``rows.FORMATS`` (prompt/completion,
messages, Alpaca, ShareGPT, classification), detected from its columns and kept in ``Source.format``.
A file is read into records by ``readers``, a saved or hub dataset by ``datasets``; ``collect``
checks each record into a row (``rows.to_row``), stopping at the first bad one or, when the user
asks, skipping and counting them; ``split_rows`` splits the rows into train and eval deterministically with the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lorakit.common.hub import unreachable_reason
from lorakit.common.quiet import progress_bars_off
from lorakit.config.run_config import ON_BAD_ROWS, not_one_of
from lorakit.data.readers import FILE_SUFFIXES, Table, from_dataset, read_file
from lorakit.data.rows import (
    EXPECTED_COLUMNS,
    FORMATS,
    SKIP_HINT,
    DataError,
    RowProblem,
    Skipped,
    record_format,
    to_row,
)
from lorakit.data.saved import is_saved_dataset, load_saved
from lorakit.data.tasks import TaskInfo, did_you_mean, list_tasks


@dataclass
class Source:
    """What ``dataset`` resolved to: user rows or a task, a description, the rows left out and the
    records' format; unpacks as ``rows, task, description, skipped``."""
    rows: list  # [{prompt, answer, messages}]; empty for a task
    task: Optional[TaskInfo]
    description: str  # "file '...'", "hub dataset '...'", "built-in task '...'", "saved dataset '...'"
    skipped: Skipped
    format: str = ""  # a key of rows.FORMATS, detected from the columns; "" for a task

    def __iter__(self):
        return iter((self.rows, self.task, self.description, self.skipped))

    @property
    def format_label(self) -> str:
        """The detected format in words ("Alpaca ('instruction' and ...)"), "" for a built-in task."""
        return FORMATS.get(self.format, "")

    @property
    def kind(self) -> str:
        """The model task the data trains: the task's kind, or 'classification' for rows with a label column."""
        if self.task is not None:
            return self.task.kind
        return "classification" if self.rows and self.rows[0].get("kind") == "classification" else "causal-lm"

    def labels(self) -> tuple:
        """A classification source's label names in the classifier's output order: the task's own, or the
        distinct labels of the rows (numbers in numeric order, else sorted as text); () for other kinds."""
        if self.kind != "classification":
            return ()
        if self.task is not None:
            return tuple(self.task.labels)
        names = {r["answer"] for r in self.rows}
        numeric = all(n.lstrip("-").isdigit() for n in names)
        return tuple(sorted(names, key=lambda n: (int(n), n) if numeric else (0, n)))


def load_rows(dataset: str, encoding: str = "utf-8", on_bad_rows: str = "error") -> Source:
    """Resolve ``dataset`` to user rows or a task. ``encoding``: a text file's encoding;
    ``on_bad_rows``: 'error' (a DataError naming the first bad row) or 'skip' (left out, counted)."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError("dataset: must be a built-in task name, a local file or a hub dataset; got "
                        f"{dataset!r}")
    if problem := not_one_of("on_bad_rows", on_bad_rows, ON_BAD_ROWS):
        raise DataError(f"dataset: {problem}")
    tasks = {t.name: t for t in list_tasks()}
    if dataset in tasks:
        return Source([], tasks[dataset], f"built-in task {dataset!r}", Skipped())
    path = Path(dataset).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        description = f"saved dataset {str(path)!r}"
        return _source(from_dataset(load_saved(path)), description, on_bad_rows)
    if path.is_dir():
        raise DataError(f"dataset: {dataset!r} is a directory but not a datasets save_to_disk folder; give one "
                        f"data file ({', '.join(FILE_SUFFIXES)}) or a folder Dataset.save_to_disk wrote")
    if path.exists():
        return _source(read_file(path, encoding), f"file {str(path)!r}", on_bad_rows, repr(str(path)))
    parent = path.parent
    looks_like_file = (path.suffix.lower() in FILE_SUFFIXES or dataset.startswith(("./", "../", "/", "~"))
                       or (str(parent) not in ("", ".") and parent.is_dir()))
    if looks_like_file:
        raise DataError(f"dataset: file {dataset!r} not found (built-in tasks: {', '.join(tasks)})")
    description = f"hub dataset {dataset!r}"
    return _source(from_dataset(_load_hub(dataset)), description, on_bad_rows)


def _source(table: Table, description: str, on_bad_rows: str, name: str = "") -> Source:
    """A user table's rows as a Source; ``name``: how errors name it (default: ``description``)."""
    rows, skipped = collect(table, name or description, on_bad_rows)
    return Source(rows, None, description, skipped, record_format(table.columns, name or description))


def data_labels(cfg) -> tuple:
    """The label names ``cfg.dataset`` holds, in the classifier's output order (() unless classification
    data): what a classifier is built with before its data is tokenized."""
    return load_rows(cfg.dataset, cfg.data_encoding, cfg.on_bad_rows).labels()


def collect(table: Table, source: str, on_bad_rows: str = "error") -> tuple[list, Skipped]:
    """A table's records as rows: the first bad one a DataError naming where it is and the column, or,
    with ``on_bad_rows='skip'``, left out and counted."""
    if not table.records:
        raise DataError(f"dataset: {source} is empty (no rows); it needs {EXPECTED_COLUMNS}")
    fmt = record_format(table.columns, source)
    rows, skipped = [], Skipped()
    for where, record in table.records:
        try:
            rows.append(to_row(record, fmt))
        except RowProblem as problem:
            if on_bad_rows != "skip":
                raise DataError(problem.message(source, where) + SKIP_HINT) from None
            skipped.add(where, problem)
    return rows, skipped


def _load_hub(name: str):
    import datasets

    def fail(reason: str):
        unknown = f"unknown built-in task {name!r}{did_you_mean(name)}; " if "/" not in name else ""
        return DataError(
            f"dataset: {unknown}could not download dataset {name!r} from the Hugging Face Hub "
            f"({reason}); use a built-in task ({', '.join(t.name for t in list_tasks())}) or a local file "
            f"({', '.join(FILE_SUFFIXES)}) with {EXPECTED_COLUMNS}")

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


def split_rows(rows: list, n_train: int, n_eval: int, seed: int, skipped: Optional[Skipped] = None
               ) -> tuple[list, list, str]:
    """Deterministic train/eval split of user rows with ``Dataset.train_test_split``: (train, eval,
    a note when the eval set had to shrink, else "")."""
    import datasets

    n = len(rows)
    if n < 2:
        left_out = f", after {skipped.count} bad row(s) were skipped" if skipped and skipped.count else ""
        raise DataError(f"dataset: needs at least 2 rows (one to train, one to evaluate); found {n}{left_out}")
    note = ""
    test = min(n_eval, n // 2)
    if test < n_eval:
        note = f"eval_examples reduced to {test}: the dataset has only {n} rows"
    index = datasets.Dataset.from_dict({"i": list(range(n))})
    split = index.train_test_split(test_size=test, seed=seed, shuffle=True)
    train_idx = split["train"]["i"][:n_train]
    eval_idx = split["test"]["i"]
    return [rows[i] for i in train_idx], [rows[i] for i in eval_idx], note
