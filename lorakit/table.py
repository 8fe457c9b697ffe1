"""Runs side by side as a pandas table: ``compare()``, one row per run, and ``styled()`` for notebooks.

The columns are listed once, in ``SPEC`` (name, dtype, how a run record gives the value): a new
column is one line there. Memory is in bytes in the table and in MiB in ``styled()``. ``as_records``
turns what every comparison function accepts (records, run ids, a store, nothing) into records; the
figures and the report use it too.

pandas is imported on first use, so ``import lorakit`` stays quick.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

from .display import MiB, finite
from .memory import CATEGORIES
from .record import RunRecord
from .variants import variant_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["compare", "styled", "as_records", "display_names", "COLUMNS", "MEM_COLUMNS", "PEAK_COLUMNS",
           "FULL_TARGETS"]

FULL_TARGETS = "(all weights)"  # target_modules shown for full fine-tuning
# How styled() escapes every cell (pandas' Styler escape): labels, dataset paths and reasons are user text,
# and the report and the Studio show the table as HTML. One switch, so a test can prove it matters.
_ESCAPE = "html"

RunsArg = Union[None, RunRecord, str, Iterable[Union[RunRecord, str]], "pd.DataFrame"]


def _label(r: RunRecord) -> str:
    label = getattr(r.config, "label", "")
    return str(label) if label else r.run_id


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
    ("double_quant", "bool", lambda r: bool(r.config.double_quant) and r.config.quant in ("nf4", "fp4")),
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
    ("checkpoint_step", "Int64", lambda r: r.checkpoint_step),  # the newest resumable checkpoint's step
    ("checkpoint_bytes", "Int64", lambda r: r.checkpoint_bytes),  # the kept checkpoints on disk
    ("device", "object", lambda r: r.device),
    ("node", "object", lambda r: r.node or None),  # the Ray node that trained it (None: this process)
    ("created_at", "datetime", lambda r: r.created_at or None),
)
COLUMNS = tuple(name for name, _, _ in SPEC)
MEM_COLUMNS = tuple(f"mem_{c}" for c in CATEGORIES) + ("mem_total",)
PEAK_COLUMNS = ("mem_peak", "mem_peak_planned")


# --------------------------------------------------------------------------- inputs

def as_records(runs: Any = None, store: Any = None) -> list[RunRecord]:
    """The ``runs`` argument of every comparison function as a list of RunRecords: records and/or run
    ids (looked up in ``store``), a RunStore, or None for every run in ``store`` (None: the default)."""
    from .store import RunStore, open_store

    if isinstance(runs, RunStore):
        return runs.records()
    if isinstance(runs, RunRecord):
        return [runs]
    if isinstance(runs, str):
        runs = [runs]
    if runs is None:
        st, opened = open_store(store, required=True)
        try:
            return st.records()
        finally:
            if opened:
                st.close()
    try:
        runs = list(runs)
    except TypeError:
        raise TypeError(f"runs must be RunRecords or run ids (None: every run in the store), got {runs!r}") from None
    bad = [type(r).__name__ for r in runs if not isinstance(r, (RunRecord, str))]
    if bad:
        raise TypeError(f"runs must be RunRecords or run ids, got {', '.join(sorted(set(bad)))}")
    if not any(isinstance(r, str) for r in runs):
        return runs
    st, opened = open_store(store, required=True)
    try:
        return [st.load(r) if isinstance(r, str) else r for r in runs]
    finally:
        if opened:
            st.close()


def display_names(records: Sequence[RunRecord]) -> list[str]:
    """Each run's label, with a run-id suffix where two runs share a label."""
    return unique_names([_label(r) for r in records], [r.run_id for r in records])


def unique_names(labels: list[str], run_ids: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [f"{lab} [{rid[:6]}]" if counts[lab] > 1 else lab for lab, rid in zip(labels, run_ids, strict=True)]


# --------------------------------------------------------------------------- the table

def compare(runs: RunsArg = None, store: Any = None) -> "pd.DataFrame":
    """One row per run, in the given order (the store's: oldest first).

    ``runs``: RunRecords and/or run ids (looked up in ``store``), or None for every run in
    ``store``; ``store``: a RunStore, a path, or None for the default store
    (``$LORAKIT_STORE`` or ``./lorakit_runs.db``). A DataFrame comes back as a copy. Memory columns
    are measured bytes (``planned_total`` is the planner's total); ``mem_peak`` is the most the tensor
    allocator held during the first optimizer steps, ``mem_peak_at`` its phase (forward, logits-loss,
    backward, optimizer step), ``mem_peak_planned`` the planner's peak for those steps (without the
    CUDA device overhead); empty where not known. ``rank``/``alpha`` are empty for
    full fine-tuning; ``trainable_pct`` is in percent; ``created_at`` is local time.
    """
    import pandas as pd

    if isinstance(runs, pd.DataFrame):
        return runs.copy()
    records = _whole_store(runs) if _is_whole_store(runs) else as_records(runs, store) if runs is not None \
        else _whole_store(store)
    df = pd.DataFrame([[get(r) for _, _, get in SPEC] for r in records], columns=list(COLUMNS))
    for name, dtype, _ in SPEC:
        if dtype == "datetime":
            df[name] = pd.to_datetime(
                [pd.Timestamp.fromtimestamp(t) if finite(t) else pd.NaT for t in df[name]])
        else:
            df[name] = df[name].astype(dtype)
    return df


def _is_whole_store(runs: Any) -> bool:
    from .store import RunStore

    return isinstance(runs, RunStore)


def _whole_store(store: Any) -> list[RunRecord]:
    """Every run of a store for the table only: without histories (a store of thousands of runs is read
    in seconds, not minutes; the table needs only each run's last step)."""
    from .store import open_store

    st, opened = open_store(store, required=True)
    try:
        return st.records(history=False)
    finally:
        if opened:
            st.close()


def styled(df: "pd.DataFrame", columns: Optional[Sequence[str]] = None):
    """A pandas Styler for notebooks: memory in MiB with bars on one shared scale, percentages, rounding."""
    import pandas as pd

    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]

    def mib(v):
        return "" if pd.isna(v) else f"{v / MiB:,.1f} MiB"

    def num(fmt):
        return lambda v: "" if pd.isna(v) else format(v, fmt)

    def seconds(v):
        return "" if pd.isna(v) else f"{v:.1f} s"

    formats: dict[str, Any] = {c: mib for c in (*MEM_COLUMNS, *PEAK_COLUMNS, "planned_total", "adapter_bytes",
                                                    "checkpoint_bytes")}
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
    formats = {c: f for c, f in formats.items() if c in df.columns}
    styler = df.style.format(formats, na_rep="", escape=_ESCAPE).hide(axis="index")
    mem_cols = [c for c in (*MEM_COLUMNS, *PEAK_COLUMNS) if c in df.columns]
    if mem_cols and len(df):
        vals = pd.to_numeric(df[mem_cols].stack(), errors="coerce").dropna()
        vmax = float(vals.max()) if len(vals) else 0.0
        if vmax > 0:  # one scale for every memory column, so bars compare across categories
            styler = styler.bar(subset=mem_cols, color="#9ecae1", vmin=0, vmax=vmax, height=70, width=100)
    return styler
