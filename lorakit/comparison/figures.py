"""Runs side by side as plotly charts: loss curves, memory bars, memory against a metric (Pareto front).

Every function takes what ``compare()`` takes (records, run ids, or nothing for the whole default
store) and returns a ``plotly.graph_objects.Figure``. Memory is drawn in MiB (2**20 bytes).
plotly is imported on first use.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Optional

from lorakit.common.display import CATEGORY_COLORS, CATEGORY_NAMES, PEAK_COLORS, MiB, finite
from lorakit.comparison.table import RunsArg, as_records, compare, display_names, unique_names
from lorakit.memory.breakdown import CATEGORIES, MemoryBreakdown

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["loss_figure", "memory_figure", "pareto_figure", "pareto_front", "LOWER_IS_BETTER"]

LOWER_IS_BETTER = ("train_loss", "eval_loss", "perplexity", "wall_s", "load_s", "time_to_first_loss_s")


def _palette() -> list[str]:
    from plotly.colors import qualitative

    return list(qualitative.Plotly) + list(qualitative.D3)


def _names(records) -> list[str]:
    """display_names made safe for plotly, which renders a subset of HTML tags in names, labels and hover
    text: a run's label is user text, shown literally (plotly turns the entities back into characters)."""
    return [html.escape(n) for n in display_names(records)]


def _empty_note(fig, text: str) -> None:
    """Say what will appear, instead of drawing empty axes (plotly's -1..4 default)."""
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


# Legends sit inside the plot area, top right, over a translucent box: never clipped by a narrow figure
# (a legend to the right of the plot is cut at the figure's edge: "eval lo...").
LEGEND_INSIDE = dict(x=0.99, xanchor="right", y=0.99, yanchor="top", bgcolor="rgba(255,255,255,0.75)",
                     bordercolor="#ddd", borderwidth=1, font=dict(size=11))


def _height(rows: int, per_row: int = 22, base: int = 130, least: int = 340) -> int:
    """A figure's height that gives each of ``rows`` (bars, legend entries) room as the runs grow."""
    return max(least, base + per_row * rows)


# --------------------------------------------------------------------------- loss

def loss_figure(records: RunsArg = None, store: Any = None) -> "go.Figure":
    """Training-loss curves of the runs, overlaid; evaluation losses as dashed lines with markers."""
    import plotly.graph_objects as go

    records = as_records(records, store)
    fig = go.Figure()
    colors = _palette()
    for i, (r, name) in enumerate(zip(records, _names(records), strict=True)):
        color = colors[i % len(colors)]
        if r.history:
            fig.add_trace(go.Scatter(
                x=[h.get("step") for h in r.history], y=[finite(h.get("loss")) for h in r.history],
                mode="lines", name=name, legendgroup=r.run_id, line=dict(color=color, width=2),
                hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>",
            ))
        if r.evals:
            fig.add_trace(go.Scatter(
                x=[e.get("step") for e in r.evals], y=[finite(e.get("eval_loss")) for e in r.evals],
                mode="lines+markers", name=f"{name} (eval)", legendgroup=r.run_id, showlegend=not r.history,
                line=dict(color=color, dash="dash", width=1.5), marker=dict(size=8, symbol="diamond"),
                hovertemplate=f"{name}<br>step %{{x}}<br>eval loss %{{y:.4f}}<extra></extra>",
            ))
    fig.update_layout(
        title="Loss (dashed with diamonds: eval loss)", xaxis_title="step", yaxis_title="loss",
        template="plotly_white", legend=dict(groupclick="togglegroup", **LEGEND_INSIDE), hovermode="closest",
        margin=dict(t=50, r=20, b=50, l=60), height=_height(len(records), per_row=20),
        xaxis=dict(rangemode="nonnegative"), yaxis=dict(rangemode="tozero"),
    )
    if not fig.data:
        _empty_note(fig, "loss curves appear here once a run has logged a step")
    return fig


# --------------------------------------------------------------------------- memory

def memory_figure(records: RunsArg = None, planned: bool = True, store: Any = None) -> "go.Figure":
    """Stacked bars of the five memory categories per run, in MiB; the planned bar beside the measured one.

    The step peak (the most the allocator held during the first optimizer steps, or the planned one) is a
    marker over its bar: traces "step peak (measured)" and "step peak (planned)" after the five bars. The
    peak can sit above or below the stacked total: the categories are not all alive at the same moment."""
    import plotly.graph_objects as go

    records = as_records(records, store)
    bars: list[tuple[str, str, MemoryBreakdown]] = []  # (run name, kind, breakdown)
    for r, name in zip(records, _names(records), strict=True):
        if r.memory is not None:
            bars.append((name, "measured", r.memory))
        if planned and r.planned_memory is not None:
            bars.append((name, "planned", r.planned_memory))
    two_level = any(kind == "planned" for _, kind, _ in bars)
    if two_level:
        y: Any = [[b[0] for b in bars], [b[1] for b in bars]]
    else:
        y = [b[0] for b in bars]
    fig = go.Figure()
    # horizontal bars: run labels read left to right however many runs there are (vertical ones overlap)
    for c in CATEGORIES:
        fig.add_trace(go.Bar(
            y=y, x=[getattr(b[2], c) / MiB for b in bars], name=CATEGORY_NAMES[c], orientation="h",
            marker_color=CATEGORY_COLORS[c],
            customdata=[[b[1], b[2].total / MiB] for b in bars],
            hovertemplate=(f"{CATEGORY_NAMES[c]}: %{{x:,.1f}} MiB<br>%{{customdata[0]}} total "
                           "%{customdata[1]:,.1f} MiB<extra></extra>"),
        ))
    for kind in ("measured", "planned"):
        _add_peak(fig, [(yi, b) for yi, b in zip(_each_x(y), bars, strict=True) if b[1] == kind], kind, two_level)
    widest = max([max(b[2].total, b[2].peak or 0) for b in bars] or [0]) / MiB
    fig.update_layout(
        barmode="stack", xaxis_title="memory (MiB)",
        title="Steady memory by category after step 1 (never all alive at once), and the step peak",
        template="plotly_white", legend=dict(traceorder="normal", **LEGEND_INSIDE),
        margin=dict(t=50, r=20, b=50, l=60), height=_height(len(bars)),
        # the first run on top; the right third left free for the legend
        yaxis=dict(autorange="reversed"), xaxis=dict(rangemode="tozero", range=[0, widest * 1.6] if widest else None),
    )
    if not bars:
        _empty_note(fig, "memory bars appear here once a run has measured its first optimizer step")
    return fig


def _each_x(x: Any) -> list:
    """The x of each bar: (run, kind) on a two-level axis, else the run."""
    return list(zip(*x, strict=True)) if x and isinstance(x[0], list) else list(x)


def _add_peak(fig, points: list, kind: str, two_level: bool) -> None:
    """A marker at the step peak of each ``kind`` bar that has one: ``points`` is [(x, (run, kind, breakdown))]."""
    import plotly.graph_objects as go

    points = [(xi, b[2]) for xi, b in points if b[2].peak is not None]
    if not points:
        return
    ys = [list(level) for level in zip(*(yi for yi, _ in points), strict=True)] if two_level else [p[0] for p in points]
    fig.add_trace(go.Scatter(
        y=ys, x=[m.peak / MiB for _, m in points], mode="markers", name=f"step peak ({kind})",
        marker=dict(symbol="line-ns", size=18, line=dict(color=PEAK_COLORS[kind], width=3)),  # across its bar
        customdata=[_peak_note(m) for _, m in points],
        hovertemplate=f"step peak ({kind}): %{{x:,.1f}} MiB<br>%{{customdata}}<extra></extra>",
    ))


def _peak_note(m: MemoryBreakdown) -> str:
    note = f"at {html.escape(m.peak_at or '?')}"
    if m.transient:
        note += "<br>on top: " + ", ".join(f"{html.escape(k)} {v / MiB:,.1f} MiB" for k, v in m.transient.items())
    return note


# --------------------------------------------------------------------------- memory against a metric

def _direction(metric: str, higher_is_better: Optional[bool]) -> bool:
    if higher_is_better is not None:
        return bool(higher_is_better)
    return metric not in LOWER_IS_BETTER and "loss" not in metric


def _memory_column(memory: str) -> str:
    if memory not in ("measured", "planned"):
        raise ValueError(f"memory must be 'measured' or 'planned', got {memory!r}")
    return "mem_total" if memory == "measured" else "planned_total"


def _points(df, metric: str, mem_col: str) -> list[tuple[str, float, float, str]]:
    """(run id, memory bytes, metric, label) of every run that has both numbers."""
    if metric not in df.columns:
        raise ValueError(f"unknown metric {metric!r}; use a numeric column of compare(), e.g. task_metric, eval_loss")
    out = []
    for _, row in df.iterrows():
        m, y = finite(row[mem_col]), finite(row[metric])
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


def pareto_front(runs: RunsArg = None, metric: str = "task_metric", higher_is_better: Optional[bool] = None,
                 memory: str = "measured", store: Any = None) -> list[str]:
    """Run ids on the Pareto front (no other run uses no more memory and scores at least as well,
    better in one), ordered by memory. ``runs``: records, run ids or a ``compare()`` frame.
    The metric's direction is guessed (losses and perplexity lower is better) unless given."""
    df = compare(runs, store)
    pts = _points(df, metric, _memory_column(memory))
    return [p[0] for p in _front(pts, _direction(metric, higher_is_better))]


def pareto_figure(records: RunsArg = None, metric: str = "task_metric", higher_is_better: Optional[bool] = None,
                  memory: str = "measured", store: Any = None) -> "go.Figure":
    """Total memory (MiB) against ``metric``; the Pareto front (less memory, better metric) joined by a line.

    Trace 0 holds every run with both numbers (front runs colored, dominated ones grey);
    trace 1 is the front, ordered by memory.
    """
    import plotly.graph_objects as go

    df = compare(records, store)
    higher = _direction(metric, higher_is_better)
    pts = _points(df, metric, _memory_column(memory))
    front = _front(pts, higher)
    names = dict(zip(df["run_id"], [html.escape(n) for n in unique_names(df["label"].tolist(), df["run_id"].tolist())],
                     strict=True))
    on_front = {p[0] for p in front}
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p[1] / MiB for p in pts], y=[p[2] for p in pts], mode="markers", name="runs",
        text=[names[p[0]] for p in pts],  # in the hover: labels beside the points overlap past a few runs
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
        legend=LEGEND_INSIDE, xaxis=dict(rangemode="tozero"), yaxis=dict(rangemode="tozero"),
    )
    if not pts:
        _empty_note(fig, f"no run has both {memory} memory and {metric}")
    return fig
