"""Runs side by side as a pandas table: ``compare()``, one row per run, and ``styled()`` for notebooks.

The columns are listed once, in ``SPEC`` (name, dtype, how a run record gives the value): a new
column is one line there (and, if it reads a record's history, evaluations or samples, a word in
``store/table_read.py``, whose light records a whole store's table is built from). ``SHORT_COLUMNS`` is the
short view (``compare(columns="short")``, the CLI, the report). Labels: :mod:`.run_labels`. Memory is in
bytes in the table and in MiB wherever it is shown (``styled()``, the CLI). ``as_records``
turns what every comparison function accepts (records, run ids, a store, nothing) into records; the
figures and the report use it too.

pandas is imported on first use, so ``import lorakit`` stays quick.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

from lorakit.common.display import MiB, finite
from lorakit.comparison.run_labels import AXES, own_label, tell_apart
from lorakit.config.run_config import variant_name
from lorakit.memory.breakdown import CATEGORIES
from lorakit.run.record import RunRecord

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["compare", "styled", "as_records", "display_names", "COLUMNS", "MEM_COLUMNS", "PEAK_COLUMNS",
           "SHORT_COLUMNS", "BYTE_COLUMNS", "HEADERS", "FULL_TARGETS", "column_names"]

FULL_TARGETS = "(all weights)"  # target_modules shown for full fine-tuning
# How styled() escapes every cell (pandas' Styler escape): labels, dataset paths and reasons are user text,
# and the report and the Studio show the table as HTML. One switch, so a test can prove it matters.
_ESCAPE = "html"

RunsArg = Union[None, RunRecord, str, Iterable[Union[RunRecord, str]], "pd.DataFrame"]


def _label(r: RunRecord) -> str:
    """The run's own label (see :mod:`.run_labels`); compare() adds what tells it from the rows beside it."""
    kind = getattr(r.config, "label", "")
    if not kind:
        return r.run_id
    return own_label(str(getattr(r.config, "name", "") or ""), getattr(r.config, "model", ""), str(kind))


def _lora(r: RunRecord) -> bool:
    return r.config.method != "full"


def _targets(r: RunRecord) -> str:
    if not _lora(r):
        return FULL_TARGETS
    tm = r.config.target_modules
    return tm if isinstance(tm, str) else ",".join(tm)


def _cfg(name: str) -> Callable[[RunRecord], Any]:
    return lambda r: getattr(r.config, name)


def _num(name: str) -> Callable[[RunRecord], Any]:
    return lambda r: finite(getattr(r, name))


def _assumed(memory, key: str):
    """A run plan's or a measurement's note (``MemoryBreakdown.assumes``), None where not recorded."""
    return (memory.assumes or {}).get(key) if memory is not None else None


def _measured(category: str) -> Callable[[RunRecord], Any]:  # a category, "total" or "peak"
    return lambda r: getattr(r.memory, category) if r.memory is not None else None


# (column, pandas dtype, value from a RunRecord), in the table's order. "datetime": unix time shown local.
SPEC: tuple[tuple[str, str, Callable[[RunRecord], Any]], ...] = (
    ("run_id", "object", lambda r: r.run_id),
    ("label", "object", _label),
    ("status", "object", lambda r: r.status),
    ("reason", "object", lambda r: r.reason or ""),
    ("model", "object", _cfg("model")),
    ("family", "object", lambda r: r.family or None),  # decoder, encoder, encoder-decoder (None: not loaded)
    ("task", "object", lambda r: r.task or None),  # causal-lm, classification, seq2seq
    ("method", "object", _cfg("method")),
    ("variant", "object", lambda r: variant_name(r.config)),  # lora, dora, rslora, pissa, olora, loftq, lora+
    ("quant", "object", _cfg("quant")),
    # only 4-bit storage has double quantization
    ("double_quant", "bool", lambda r: bool(r.config.double_quant) and r.config.base.four_bit),
    ("rank", "Int64", lambda r: r.config.rank if _lora(r) else None),
    ("alpha", "float64", lambda r: float(r.config.alpha) if _lora(r) else None),
    ("target_modules", "object", _targets),
    ("optimizer", "object", _cfg("optimizer")),
    ("dataset", "object", _cfg("dataset")),
    ("max_steps", "Int64", _cfg("max_steps")),
    ("steps_done", "Int64", lambda r: r.steps_done),
    ("batch_size", "Int64", _cfg("batch_size")),
    ("seq_len", "Int64", _cfg("seq_len")),
    ("learning_rate", "float64", _cfg("learning_rate")),
    ("trainable_params", "Int64", lambda r: int(r.trainable_params or 0)),
    ("total_params", "Int64", lambda r: int(r.total_params or 0)),
    ("trainable_pct", "float64", lambda r: r.trainable_pct if r.total_params else None),
    ("head_params", "Int64", lambda r: int(r.head_params or 0)),  # of trainable_params: a classifier's new head
    *((f"mem_{c}", "Int64", _measured(c)) for c in (*CATEGORIES, "total")),
    ("planned_total", "Int64", lambda r: r.planned_memory.total if r.planned_memory is not None else None),
    ("mem_peak", "Int64", _measured("peak")),  # the first optimizer steps' measured peak (None: not measured)
    ("mem_peak_at", "object", lambda r: (r.memory.peak_at or None) if r.memory is not None else None),
    ("mem_peak_planned", "Int64", lambda r: r.planned_memory.peak if r.planned_memory is not None else None),
    ("mem_peak_step", "Int64", lambda r: _assumed(r.memory, "peak_step")),  # the measured peak's step
    ("mem_peak_planned_step", "Int64", lambda r: _assumed(r.planned_memory, "peak_step")),  # the run plan's
    ("mem_load_peak", "Int64", lambda r: r.load_peak),  # loading the base, measured (CUDA)
    ("mem_load_peak_planned", "Int64", lambda r: _assumed(r.planned_memory, "load_peak")),
    ("tokens_per_s", "float64", _num("tokens_per_s")),
    ("train_loss", "float64", _num("train_loss")),
    ("eval_loss", "float64", _num("eval_loss")),
    # exp(eval loss) is a perplexity only over tokens: blank for a classifier (also a run stored before this rule)
    ("perplexity", "float64", lambda r: None if r.task == "classification" else finite(r.perplexity)),
    ("task_metric_before", "float64", _num("task_metric_before")),
    ("task_metric", "float64", _num("task_metric")),
    ("metric", "object", lambda r: r.metric or None),  # what task_metric measures, e.g. exact match, accuracy
    ("macro_f1_before", "float64", _num("macro_f1_before")),  # classification only
    ("macro_f1", "float64", _num("macro_f1")),
    ("token_f1_before", "float64", _num("token_f1_before")),  # seq2seq only: token overlap with the reference
    ("token_f1", "float64", _num("token_f1")),
    ("wall_s", "float64", _num("wall_s")),
    ("load_s", "float64", _num("load_s")),
    ("train_s", "float64", _num("train_s")),  # the optimizer steps, without the eval-loss passes
    ("eval_s", "float64", _num("eval_s")),  # eval-loss passes
    ("task_eval_s", "float64", _num("task_eval_s")),  # task-metric generation, after and (uncached) before
    ("samples_s", "float64", _num("samples_s")),  # sample generations beyond the metric's pass
    ("time_to_first_loss_s", "float64", _num("time_to_first_loss_s")),
    ("adapter_bytes", "Int64", lambda r: r.adapter_bytes),
    ("weights_bytes", "Int64", lambda r: r.weights_bytes),  # a full fine-tuning's kept model on disk
    ("checkpoint_step", "Int64", lambda r: r.checkpoint_step),  # the newest resumable checkpoint's step
    ("checkpoint_bytes", "Int64", lambda r: r.checkpoint_bytes),  # the kept checkpoints on disk
    ("device", "object", lambda r: r.device),
    ("node", "object", lambda r: r.node or None),  # the Ray node that trained it (None: this process)
    ("created_at", "datetime", lambda r: r.created_at or None),
)
COLUMNS = tuple(name for name, _, _ in SPEC)
MEM_COLUMNS = tuple(f"mem_{c}" for c in CATEGORIES) + ("mem_total",)
PEAK_COLUMNS = ("mem_peak", "mem_peak_planned")
# shown in MiB, every one
BYTE_COLUMNS = (*MEM_COLUMNS, *PEAK_COLUMNS, "mem_load_peak", "mem_load_peak_planned", "planned_total",
                "adapter_bytes", "weights_bytes", "checkpoint_bytes")
# The short view (CLI, report, the Studio's table): who the run is, what it cost, what it reached, how long.
# mem_total: the measured steady bytes (memory); mem_peak: the step's measured peak; task_metric: the task's score.
SHORT_COLUMNS = ("label", "model", "method", "quant", "rank", "mem_total", "mem_peak", "eval_loss", "task_metric",
                 "wall_s")
COLUMN_SETS = {"all": COLUMNS, "short": SHORT_COLUMNS}
# Words a reader sees for the short set's columns (styled(headers=True): the report; the Studio's table).
HEADERS = {"label": "run", "model": "model", "method": "method", "quant": "quant", "rank": "rank",
           "mem_total": "memory", "mem_peak": "peak", "eval_loss": "eval loss", "task_metric": "task metric",
           "wall_s": "time", "status": "status", "run_id": "run id"}
ColumnsArg = Union[str, Sequence[str]]


# --------------------------------------------------------------------------- inputs

def as_records(runs: Any = None, store: Any = None) -> list[RunRecord]:
    """The ``runs`` argument of every comparison function as a list of RunRecords: records and/or run
    ids (looked up in ``store``), a RunStore, or None for every run in ``store`` (None: the default)."""
    from lorakit.store import RunStore, store_of

    if isinstance(runs, RunStore):
        return runs.records()
    if isinstance(runs, RunRecord):
        return [runs]
    if isinstance(runs, str):
        runs = [runs]
    if runs is None:
        with store_of(store, required=True) as st:
            return st.records()
    try:
        runs = list(runs)
    except TypeError:
        raise TypeError(f"runs must be RunRecords or run ids (None: every run in the store), got {runs!r}") from None
    bad = [type(r).__name__ for r in runs if not isinstance(r, (RunRecord, str))]
    if bad:
        raise TypeError(f"runs must be RunRecords or run ids, got {', '.join(sorted(set(bad)))}")
    if not any(isinstance(r, str) for r in runs):
        return runs
    with store_of(store, required=True) as st:
        return [st.load(r) if isinstance(r, str) else r for r in runs]


def display_names(records: Sequence[RunRecord]) -> list[str]:
    """Each run's label as the table shows it among ``records`` (the model, and what differs from the runs
    sharing its label: :mod:`.run_labels`), with a run-id suffix where two runs still share one."""
    if not records:
        return []
    # a name depends on the run ids and configs alone (frozen): the report's three charts and a redraw of the
    # same runs ask again, and the frame it takes costs ~50 ms however few the runs
    key = tuple((r.run_id, r.config) for r in records)
    try:
        names = _NAMES_SEEN.get(key)
    except TypeError:  # a config holding something unhashable: no reuse
        key, names = None, None
    if names is None:
        labels = tell_apart(_frame(records, ("run_id", "label", *(c for c, _ in AXES))))
        names = unique_names(labels.tolist(), [r.run_id for r in records])
        if key is not None:
            with _NAMES_LOCK:
                _NAMES_SEEN[key] = names
                while len(_NAMES_SEEN) > 16:
                    _NAMES_SEEN.pop(next(iter(_NAMES_SEEN)))
    return list(names)


_NAMES_SEEN: dict = {}  # (run id, config) pairs -> their display names; the newest 16 lists
_NAMES_LOCK = threading.Lock()


def unique_names(labels: list[str], run_ids: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [f"{lab} [{rid[:6]}]" if counts[lab] > 1 else lab for lab, rid in zip(labels, run_ids, strict=True)]


# --------------------------------------------------------------------------- the table

def compare(runs: RunsArg = None, store: Any = None, columns: ColumnsArg = "all") -> "pd.DataFrame":
    """One row per run, in the given order (the store's: oldest first).

    ``runs``: RunRecords and/or run ids (looked up in ``store``), or None for every run in
    ``store``; ``store``: a RunStore, a path, or None for the default store
    (``$LORAKIT_STORE`` or ``./lorakit_runs.db``). A DataFrame comes back as a copy.
    ``columns``: "all" (every column, ``COLUMNS``), "short" (``SHORT_COLUMNS``: label, model, method,
    quant, rank, memory, peak, eval loss, task metric, time) or a list of column names.

    ``label`` names the model and the run (its name, or method / quant / rank), and where runs share that,
    the settings that differ between them (``lr 0.0002``: see :mod:`lorakit.comparison.run_labels`). Memory columns
    are measured bytes (``planned_total`` is the planner's total); ``mem_peak`` is the most the tensor
    allocator held during the first optimizer steps, ``mem_peak_at`` its phase (forward, logits-loss,
    backward, optimizer step) and also during the step the run's plan names as its peak (``mem_peak_step``: the
    step of the measured peak); ``mem_peak_planned`` the run's planned peak (``lorakit.plan``: every step's batch
    and loading, without the CUDA device overhead; the number the Studio showed before Train), at
    ``mem_peak_planned_step``; ``mem_load_peak`` and ``mem_load_peak_planned`` loading the base, measured (CUDA)
    and planned; empty where not known. ``rank``/``alpha`` are empty for
    full fine-tuning; ``trainable_pct`` is in percent; ``created_at`` is local time.
    """
    import pandas as pd

    wanted = column_names(columns)
    if isinstance(runs, pd.DataFrame):  # kept whole (with any column a user added) unless columns are chosen
        return runs.copy() if columns == "all" else runs[[c for c in wanted if c in runs.columns]].copy()
    records = _whole_store(runs) if _is_whole_store(runs) else as_records(runs, store) if runs is not None \
        else _whole_store(store)
    # only the columns asked for are computed, and those a label is told apart by
    df = _frame(records, wanted if "label" not in wanted else (*wanted, *(c for c, _ in AXES)))
    if "label" in df:
        df["label"] = tell_apart(df)
    return df if tuple(df.columns) == wanted else df[list(wanted)]


def column_names(columns: ColumnsArg) -> tuple[str, ...]:
    """``columns`` of compare() as column names; ValueError naming what is allowed."""
    if isinstance(columns, str):
        if columns not in COLUMN_SETS:
            raise ValueError(f"columns must be 'all', 'short' or a list of column names; got {columns!r}")
        return tuple(COLUMN_SETS[columns])
    names = tuple(columns)
    unknown = [c for c in names if c not in COLUMNS]
    if unknown:
        raise ValueError(f"columns: unknown column(s) {', '.join(map(repr, unknown))}; "
                         f"the columns are {', '.join(COLUMNS)}")
    return names


def _frame(records: Sequence[RunRecord], names: Sequence[str]) -> "pd.DataFrame":
    """The SPEC columns ``names`` of ``records``, typed (column by column: a table of thousands of rows)."""
    import pandas as pd

    spec = [line for line in SPEC if line[0] in set(names)]
    df = pd.DataFrame({name: [get(r) for r in records] for name, _, get in spec}, columns=[n for n, _, _ in spec])
    for name, dtype, _ in spec:
        if dtype == "datetime":
            df[name] = pd.to_datetime(
                [pd.Timestamp.fromtimestamp(t) if finite(t) else pd.NaT for t in df[name]])
        else:
            df[name] = df[name].astype(dtype)
    return df


def _is_whole_store(runs: Any) -> bool:
    from lorakit.store import RunStore

    return isinstance(runs, RunStore)


def _whole_store(store: Any) -> list[RunRecord]:
    """Every run of a store for the table only: light records read in one query (a store of thousands of
    runs in about a second; see :mod:`.store.table_read`)."""
    from lorakit.store import store_of

    with store_of(store, required=True) as st:
        return st.table_records()


def plain_html(df: "pd.DataFrame", columns: Optional[Sequence[str]] = None, headers: bool = False) -> str:
    """``styled``'s table as plain, escaped HTML (the same formats, no bars): quick for thousands of rows."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    formats = _formats(df)
    out = df.copy()
    for c, f in formats.items():
        out[c] = [f(v) for v in out[c]]
    if headers:
        out = out.rename(columns=lambda c: HEADERS.get(c, c))
    return out.to_html(index=False, escape=_ESCAPE is not None, na_rep="", border=0)


def _formats(df: "pd.DataFrame") -> dict:
    """Column -> a function giving the cell's text (MiB, percentages, rounding, seconds, dates)."""
    import pandas as pd

    def mib(v):
        return "" if pd.isna(v) else f"{v / MiB:,.1f} MiB"

    def num(fmt):
        return lambda v: "" if pd.isna(v) else format(v, fmt)

    def seconds(v):
        return "" if pd.isna(v) else f"{v:.1f} s"

    formats: dict[str, Any] = {c: mib for c in BYTE_COLUMNS}
    formats.update({
        "trainable_pct": lambda v: "" if pd.isna(v) else f"{v:.3g}%",
        "trainable_params": num(","), "total_params": num(","),
        "tokens_per_s": num(",.0f"), "train_loss": num(".4f"), "eval_loss": num(".4f"),
        "perplexity": num(".2f"), "task_metric": num(".3f"), "task_metric_before": num(".3f"),
        "alpha": num("g"), "learning_rate": num("g"),
        "wall_s": seconds, "load_s": seconds, "time_to_first_loss_s": seconds, "train_s": seconds,
        "eval_s": seconds, "task_eval_s": seconds, "samples_s": seconds,
        "created_at": lambda v: "" if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M"),
    })
    return {c: f for c, f in formats.items() if c in df.columns}


def styled(df: "pd.DataFrame", columns: Optional[Sequence[str]] = None, headers: bool = False):
    """A pandas Styler for notebooks: memory in MiB with bars on one shared scale, percentages, rounding.
    ``headers``: the short set's columns under the words of ``HEADERS`` (memory, peak, eval loss, ...)."""
    import pandas as pd

    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    formats = _formats(df)
    styler = df.style.format(formats, na_rep="", escape=_ESCAPE).hide(axis="index")
    if headers:
        styler = styler.format_index(lambda c: HEADERS.get(c, c), axis=1)
    mem_cols = [c for c in (*MEM_COLUMNS, *PEAK_COLUMNS) if c in df.columns]
    if mem_cols and len(df):
        vals = pd.to_numeric(df[mem_cols].stack(), errors="coerce").dropna()
        vmax = float(vals.max()) if len(vals) else 0.0
        if vmax > 0:  # one scale for every memory column, so bars compare across categories
            styler = styler.bar(subset=mem_cols, color="#9ecae1", vmin=0, vmax=vmax, height=70, width=100)
    return styler
