"""Runs side by side: a pandas table, plotly charts, and one self-contained HTML report.

``compare()`` turns run records (or a run store) into a DataFrame, one row per run. The figure
functions take the same inputs (records, run ids, or nothing for the whole default store) and
return ``plotly.graph_objects.Figure`` objects. Memory is in bytes in the table and in MiB
(2**20 bytes) on charts and in ``styled()``.

pandas and plotly are imported on first use, so ``import lorakit`` stays quick.
"""
from __future__ import annotations

import html
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from .memory import CATEGORIES, MemoryBreakdown
from .record import RunRecord

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from .store import RunStore

__all__ = [
    "compare", "styled", "loss_figure", "memory_figure", "pareto_figure", "pareto_front",
    "export_csv", "export_html", "COLUMNS", "MiB",
]

MiB = 1024 ** 2
MEM_COLUMNS = tuple(f"mem_{c}" for c in CATEGORIES) + ("mem_total",)
COLUMNS = (
    "run_id", "label", "status", "reason", "model", "method", "quant", "double_quant", "rank", "alpha",
    "target_modules", "optimizer", "dataset", "max_steps", "steps_done", "batch_size", "seq_len",
    "learning_rate", "trainable_params", "total_params", "trainable_pct",
    *MEM_COLUMNS, "planned_total", "tokens_per_s", "train_loss", "eval_loss", "perplexity",
    "task_metric_before", "task_metric", "wall_s", "load_s", "time_to_first_loss_s", "adapter_bytes",
    "device", "created_at",
)
FULL_TARGETS = "(all weights)"  # target_modules shown for full fine-tuning
# The columns of the HTML report's table (the full frame is wide).
REPORT_COLUMNS = (
    "label", "status", "method", "quant", "rank", "alpha", "target_modules", "trainable_params",
    "trainable_pct", *MEM_COLUMNS, "tokens_per_s", "train_loss", "eval_loss", "task_metric_before",
    "task_metric", "wall_s", "run_id",
)
CATEGORY_NAMES = {
    "base_weights": "base weights", "adapters": "adapters", "gradients": "gradients",
    "optimizer": "optimizer state", "activations": "activations",
}
CATEGORY_COLORS = {
    "base_weights": "#8c96a6", "adapters": "#e45756", "gradients": "#f2a93b",
    "optimizer": "#4c78a8", "activations": "#54a24b",
}
LOWER_IS_BETTER = ("train_loss", "eval_loss", "perplexity", "wall_s", "load_s", "time_to_first_loss_s")

RunsArg = Union[None, RunRecord, str, Iterable[Union[RunRecord, str]], "pd.DataFrame"]


# --------------------------------------------------------------------------- inputs

def _open_store(store: Any) -> tuple["RunStore", bool]:
    """(store, opened_here): accepts a RunStore, a path, or None (the default store)."""
    from .store import RunStore

    if isinstance(store, RunStore):
        return store, False
    return RunStore(store), True


def _records(runs: Any = None, store: Any = None) -> list[RunRecord]:
    """Normalise the ``runs`` argument of every public function into a list of RunRecords."""
    from .store import RunStore

    if isinstance(runs, RunStore):
        return runs.records()
    if isinstance(runs, RunRecord):
        return [runs]
    if isinstance(runs, str):
        runs = [runs]
    if runs is None:
        st, opened = _open_store(store)
        try:
            return st.records()
        finally:
            if opened:
                st.close()
    runs = list(runs)
    bad = [type(r).__name__ for r in runs if not isinstance(r, (RunRecord, str))]
    if bad:
        raise TypeError(f"runs must be RunRecords or run ids, got {', '.join(sorted(set(bad)))}")
    if not any(isinstance(r, str) for r in runs):
        return runs
    st, opened = _open_store(store)
    try:
        return [st.load(r) if isinstance(r, str) else r for r in runs]
    finally:
        if opened:
            st.close()


def _display_names(records: Sequence[RunRecord]) -> list[str]:
    """Each run's label, with a run-id suffix where two runs share a label."""
    return _unique([_label(r) for r in records], [r.run_id for r in records])


def _label(r: RunRecord) -> str:
    label = getattr(r.config, "label", "")
    return str(label) if label else r.run_id


def _finite(x: Any) -> Optional[float]:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------- the table

def _targets(cfg) -> str:
    if cfg.method == "full":
        return FULL_TARGETS
    tm = cfg.target_modules
    return tm if isinstance(tm, str) else ",".join(tm)


def _row(r: RunRecord) -> dict:
    cfg = r.config
    lora = cfg.method != "full"
    four_bit = cfg.quant in ("nf4", "fp4")
    mem = r.memory.as_dict() if r.memory is not None else {}
    row = {
        "run_id": r.run_id,
        "label": _label(r),
        "status": r.status,
        "reason": r.reason or "",
        "model": cfg.model,
        "method": cfg.method,
        "quant": cfg.quant,
        "double_quant": bool(cfg.double_quant) and four_bit,  # only 4-bit storage has double quantization
        "rank": cfg.rank if lora else None,
        "alpha": float(cfg.alpha) if lora else None,
        "target_modules": _targets(cfg),
        "optimizer": cfg.optimizer,
        "dataset": cfg.dataset,
        "max_steps": cfg.max_steps,
        "steps_done": r.steps_done,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "learning_rate": cfg.learning_rate,
        "trainable_params": int(r.trainable_params or 0),
        "total_params": int(r.total_params or 0),
        "trainable_pct": r.trainable_pct if r.total_params else None,
        **{f"mem_{c}": mem.get(c) for c in (*CATEGORIES, "total")},
        "planned_total": r.planned_memory.total if r.planned_memory is not None else None,
        "tokens_per_s": _finite(r.tokens_per_s),
        "train_loss": _finite(r.train_loss),
        "eval_loss": _finite(r.eval_loss),
        "perplexity": _finite(r.perplexity),
        "task_metric_before": _finite(r.task_metric_before),
        "task_metric": _finite(r.task_metric),
        "wall_s": _finite(r.wall_s),
        "load_s": _finite(r.load_s),
        "time_to_first_loss_s": _finite(r.time_to_first_loss_s),
        "adapter_bytes": r.adapter_bytes,
        "device": r.device,
        "created_at": r.created_at or None,
    }
    return row


def compare(runs: RunsArg = None, store: Any = None) -> "pd.DataFrame":
    """One row per run, in the given order (the store's: oldest first).

    ``runs``: RunRecords and/or run ids (looked up in ``store``), or None for every run in
    ``store``; ``store``: a RunStore, a path, or None for the default store
    (``$LORAKIT_STORE`` or ``./lorakit_runs.db``). Memory columns are measured bytes
    (``planned_total`` is the planner's total); ``rank``/``alpha`` are empty for full fine-tuning;
    ``trainable_pct`` is in percent; ``created_at`` is local time.
    """
    import pandas as pd

    if isinstance(runs, pd.DataFrame):
        return runs.copy()
    records = _records(runs, store)
    df = pd.DataFrame([_row(r) for r in records], columns=list(COLUMNS))
    ints = ("rank", "steps_done", "max_steps", "batch_size", "seq_len", "trainable_params", "total_params",
            *MEM_COLUMNS, "planned_total", "adapter_bytes")
    for c in ints:
        df[c] = df[c].astype("Int64")
    floats = ("alpha", "learning_rate", "trainable_pct", "tokens_per_s", "train_loss", "eval_loss", "perplexity",
              "task_metric_before", "task_metric", "wall_s", "load_s", "time_to_first_loss_s")
    for c in floats:
        df[c] = df[c].astype("float64")
    df["double_quant"] = df["double_quant"].astype(bool)
    for c in ("run_id", "label", "status", "reason", "model", "method", "quant", "target_modules", "optimizer",
              "dataset", "device"):
        df[c] = df[c].astype(object)
    df["created_at"] = pd.to_datetime(
        [pd.Timestamp.fromtimestamp(t) if _finite(t) else pd.NaT for t in df["created_at"]]
    )
    return df


def styled(df: "pd.DataFrame", columns: Optional[Sequence[str]] = None):
    """A pandas Styler for notebooks: memory in MiB with bars on one shared scale, percentages, rounding."""
    import pandas as pd

    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]

    def mib(v):
        return "" if pd.isna(v) else f"{v / MiB:,.1f} MiB"

    def num(fmt):
        return lambda v: "" if pd.isna(v) else format(v, fmt)

    formats: dict[str, Any] = {c: mib for c in (*MEM_COLUMNS, "planned_total", "adapter_bytes")}
    formats.update({
        "trainable_pct": lambda v: "" if pd.isna(v) else f"{v:.3g}%",
        "trainable_params": num(","), "total_params": num(","),
        "tokens_per_s": num(",.0f"), "train_loss": num(".4f"), "eval_loss": num(".4f"),
        "perplexity": num(".2f"), "task_metric": num(".3f"), "task_metric_before": num(".3f"),
        "alpha": num("g"), "learning_rate": num("g"), "wall_s": lambda v: "" if pd.isna(v) else f"{v:.1f} s",
        "load_s": lambda v: "" if pd.isna(v) else f"{v:.1f} s",
        "time_to_first_loss_s": lambda v: "" if pd.isna(v) else f"{v:.1f} s",
        "created_at": lambda v: "" if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M"),
    })
    formats = {c: f for c, f in formats.items() if c in df.columns}
    styler = df.style.format(formats, na_rep="").hide(axis="index")
    mem_cols = [c for c in MEM_COLUMNS if c in df.columns]
    if mem_cols and len(df):
        vals = pd.to_numeric(df[mem_cols].stack(), errors="coerce").dropna()
        vmax = float(vals.max()) if len(vals) else 0.0
        if vmax > 0:  # one scale for every memory column, so bars compare across categories
            styler = styler.bar(subset=mem_cols, color="#9ecae1", vmin=0, vmax=vmax, height=70, width=100)
    return styler


# --------------------------------------------------------------------------- figures

def _palette() -> list[str]:
    from plotly.colors import qualitative

    return list(qualitative.Plotly) + list(qualitative.D3)


def loss_figure(records: RunsArg = None, store: Any = None) -> "go.Figure":
    """Training-loss curves of the runs, overlaid; evaluation losses as dashed lines with markers."""
    import plotly.graph_objects as go

    records = _records(records, store)
    fig = go.Figure()
    colors = _palette()
    for i, (r, name) in enumerate(zip(records, _display_names(records))):
        color = colors[i % len(colors)]
        if r.history:
            fig.add_trace(go.Scatter(
                x=[h.get("step") for h in r.history], y=[_finite(h.get("loss")) for h in r.history],
                mode="lines", name=name, legendgroup=r.run_id, line=dict(color=color, width=2),
                hovertemplate=f"{html.escape(name)}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>",
            ))
        if r.evals:
            fig.add_trace(go.Scatter(
                x=[e.get("step") for e in r.evals], y=[_finite(e.get("eval_loss")) for e in r.evals],
                mode="lines+markers", name=f"{name} (eval)", legendgroup=r.run_id,
                line=dict(color=color, dash="dash", width=1.5), marker=dict(size=8, symbol="diamond"),
                hovertemplate=f"{html.escape(name)}<br>step %{{x}}<br>eval loss %{{y:.4f}}<extra></extra>",
            ))
    fig.update_layout(
        title="Loss", xaxis_title="step", yaxis_title="loss", template="plotly_white",
        legend=dict(groupclick="togglegroup"), hovermode="closest", margin=dict(t=50, r=20, b=50, l=60),
    )
    return fig


def memory_figure(records: RunsArg = None, planned: bool = True, store: Any = None) -> "go.Figure":
    """Stacked bars of the five memory categories per run, in MiB; the planned bar beside the measured one."""
    import plotly.graph_objects as go

    records = _records(records, store)
    bars: list[tuple[str, str, MemoryBreakdown]] = []  # (run name, kind, breakdown)
    for r, name in zip(records, _display_names(records)):
        if r.memory is not None:
            bars.append((name, "measured", r.memory))
        if planned and r.planned_memory is not None:
            bars.append((name, "planned", r.planned_memory))
    two_level = any(kind == "planned" for _, kind, _ in bars)
    if two_level:
        x: Any = [[b[0] for b in bars], [b[1] for b in bars]]
    else:
        x = [b[0] for b in bars]
    fig = go.Figure()
    for c in CATEGORIES:
        fig.add_trace(go.Bar(
            x=x, y=[getattr(b[2], c) / MiB for b in bars], name=CATEGORY_NAMES[c],
            marker_color=CATEGORY_COLORS[c],
            customdata=[[b[1], b[2].total / MiB] for b in bars],
            hovertemplate=(f"{CATEGORY_NAMES[c]}: %{{y:,.1f}} MiB<br>%{{customdata[0]}} total "
                           "%{customdata[1]:,.1f} MiB<extra></extra>"),
        ))
    fig.update_layout(
        barmode="stack", title="Memory by category", yaxis_title="memory (MiB)", template="plotly_white",
        legend=dict(traceorder="normal"), margin=dict(t=50, r=20, b=50, l=60),
    )
    if not bars:
        _empty_note(fig, "no run has a memory breakdown yet")
    return fig


def _direction(metric: str, higher_is_better: Optional[bool]) -> bool:
    if higher_is_better is not None:
        return bool(higher_is_better)
    return metric not in LOWER_IS_BETTER and "loss" not in metric


def _memory_column(memory: str) -> str:
    if memory not in ("measured", "planned"):
        raise ValueError(f"memory must be 'measured' or 'planned', got {memory!r}")
    return "mem_total" if memory == "measured" else "planned_total"


def pareto_front(runs: RunsArg = None, metric: str = "task_metric", higher_is_better: Optional[bool] = None,
                 memory: str = "measured", store: Any = None) -> list[str]:
    """Run ids on the Pareto front (no other run uses no more memory and scores at least as well,
    better in one), ordered by memory. ``runs``: records, run ids or a ``compare()`` frame.
    The metric's direction is guessed (losses and perplexity lower is better) unless given."""
    df = compare(runs, store)
    pts = _points(df, metric, _memory_column(memory))
    return [p[0] for p in _front(pts, _direction(metric, higher_is_better))]


def _points(df, metric: str, mem_col: str) -> list[tuple[str, float, float, str]]:
    if metric not in df.columns:
        raise ValueError(f"unknown metric {metric!r}; use a numeric column of compare(), e.g. task_metric, eval_loss")
    out = []
    for _, row in df.iterrows():
        m, y = _finite(row[mem_col]), _finite(row[metric])
        if m is not None and y is not None:
            out.append((row["run_id"], m, y, row["label"]))
    return out


def _front(pts: list, higher: bool) -> list:
    def better_or_equal(a, b):  # a at least as good as b on both axes
        return a[1] <= b[1] and (a[2] >= b[2] if higher else a[2] <= b[2])

    def dominates(a, b):
        return better_or_equal(a, b) and (a[1] < b[1] or a[2] != b[2])

    front = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(front, key=lambda p: (p[1], -p[2] if higher else p[2]))


def pareto_figure(records: RunsArg = None, metric: str = "task_metric", higher_is_better: Optional[bool] = None,
                  memory: str = "measured", store: Any = None) -> "go.Figure":
    """Total memory (MiB) against ``metric``; the Pareto front (less memory, better metric) joined by a line.

    Trace 0 holds every run with both numbers (front runs colored, dominated ones grey);
    trace 1 is the front, ordered by memory.
    """
    import pandas as pd
    import plotly.graph_objects as go

    df = records.copy() if isinstance(records, pd.DataFrame) else compare(_records(records, store))
    mem_col = _memory_column(memory)
    higher = _direction(metric, higher_is_better)
    pts = _points(df, metric, mem_col)
    front = _front(pts, higher)
    names = dict(zip(df["run_id"], _unique(df["label"].tolist(), df["run_id"].tolist())))
    on_front = {p[0] for p in front}
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p[1] / MiB for p in pts], y=[p[2] for p in pts], mode="markers+text", name="runs",
        text=[names[p[0]] for p in pts], textposition="top center",
        marker=dict(size=11, color=["#e45756" if p[0] in on_front else "#b0b0b0" for p in pts],
                    line=dict(width=1, color="#333")),
        customdata=[p[0] for p in pts],
        hovertemplate="%{text}<br>%{x:,.1f} MiB<br>" + metric + " %{y:.4g}<br>run %{customdata}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=[p[1] / MiB for p in front], y=[p[2] for p in front], mode="lines+markers", name="Pareto front",
        line=dict(color="#e45756", width=2),
        marker=dict(size=6, color="#e45756"), customdata=[p[0] for p in front], hoverinfo="skip",
    ))
    better = "higher is better" if higher else "lower is better"
    fig.update_layout(
        title=f"Memory vs {metric}", xaxis_title=f"total memory, {memory} (MiB)",
        yaxis_title=f"{metric} ({better})", template="plotly_white", margin=dict(t=50, r=20, b=50, l=60),
    )
    if not pts:
        _empty_note(fig, f"no run has both {memory} memory and {metric}")
    return fig


def _unique(labels: list[str], run_ids: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [f"{lab} [{rid[:6]}]" if counts[lab] > 1 else lab for lab, rid in zip(labels, run_ids)]


def _empty_note(fig, text: str) -> None:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=14, color="#888"))


# --------------------------------------------------------------------------- export

def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_csv(df_or_records: RunsArg, path: Union[str, os.PathLike], store: Any = None) -> Path:
    """Write the comparison table (a ``compare()`` frame, or runs to compare) as CSV; returns the path."""
    df = compare(df_or_records, store)
    out = Path(path)
    _atomic_write(out, df.to_csv(index=False))
    return out


def _samples_html(records: Sequence[RunRecord]) -> str:
    parts = []
    for r, name in zip(records, _display_names(records)):
        if not r.samples:
            continue
        rows = []
        for s in r.samples:
            cells = "".join(
                f"<td><pre>{html.escape(str(s.get(k, '') if s.get(k) is not None else ''))}</pre></td>"
                for k in ("prompt", "reference", "before", "after")
            )
            rows.append(f"<tr>{cells}</tr>")
        parts.append(
            f"<h3>{html.escape(name)}</h3><table class='samples'><thead><tr><th>prompt</th><th>reference</th>"
            f"<th>before training</th><th>after training</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    if not parts:
        return "<p class='note'>No sample generations recorded.</p>"
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .note { color: #666; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 24px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
table.samples pre { white-space: pre-wrap; margin: 0; max-width: 32em; font-size: 12px; }
.figure { margin: 16px 0 32px; }
"""


def export_html(records: RunsArg = None, path: Union[str, os.PathLike] = "lorakit_report.html",
                title: str = "lorakit runs", store: Any = None, metric: Optional[str] = None) -> Path:
    """One self-contained HTML file (plotly.js inlined once): the table, loss / memory / Pareto charts,
    and the sample generations before and after training. Returns the path.

    ``metric`` for the Pareto chart: default ``task_metric`` when any run has one, else ``eval_loss``.
    """
    recs = _records(records, store)
    df = compare(recs)
    if metric is None:
        metric = "task_metric" if df["task_metric"].notna().any() else "eval_loss"
    figures = [loss_figure(recs), memory_figure(recs), pareto_figure(df, metric=metric)]
    fig_html = []
    for i, fig in enumerate(figures):
        fig_html.append("<div class='figure'>" + fig.to_html(
            full_html=False, include_plotlyjs=(i == 0), include_mathjax=False,
            config={"displaylogo": False, "responsive": True},
        ) + "</div>")
    table = styled(df, REPORT_COLUMNS).to_html() if len(df) else "<p class='note'>No runs.</p>"
    stamp = time.strftime("%Y-%m-%d %H:%M")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{len(recs)} run(s) &middot; generated {stamp} by lorakit. Memory in MiB (2<sup>20</sup> bytes).</p>
<h2>Runs</h2>
{table}
<h2>Loss</h2>
{fig_html[0]}
<h2>Memory</h2>
{fig_html[1]}
<h2>Memory vs {html.escape(metric)}</h2>
{fig_html[2]}
<h2>Sample generations</h2>
{_samples_html(recs)}
</body></html>
"""
    out = Path(path)
    _atomic_write(out, doc)
    return out
