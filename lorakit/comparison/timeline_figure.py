"""A step's memory timeline per run: what coexists at each phase, by category, planned next to measured.

The steady five-category bars (``figures.memory_figure``) never all exist at once; a timeline bar is one moment
of a training step (``MemoryBreakdown.timeline``), so its tallest bar is the step peak. plotly is imported on
first use.
"""
from __future__ import annotations

from typing import Any

from lorakit.common.display import TIMELINE_COLORS as COLORS
from lorakit.common.display import TIMELINE_NAMES as NAMES
from lorakit.common.display import MiB
from lorakit.comparison.figures import _empty_note, _names
from lorakit.comparison.table import RunsArg, as_records
from lorakit.memory.timeline import TIMELINE_CATEGORIES

# the phases of a step in order ("end of backward": planned only, a tied output head under full fine-tuning)
STEP_ORDER = ("forward", "logits-loss", "backward", "end of backward", "optimizer step")


def timeline_bars(planned, measured) -> list:
    """[(phase, 'planned' | 'measured', {category: bytes})] in step order, planned first within a phase;
    a side without a timeline (an older record) is left out."""
    sides = [(kind, dict(m.timeline)) for kind, m in (("planned", planned), ("measured", measured))
             if m is not None and m.timeline]
    phases = [p for p in STEP_ORDER if any(p in moments for _, moments in sides)]
    return [(p, kind, moments[p]) for p in phases for kind, moments in sides if p in moments]


def timeline_figure(records: RunsArg = None, store: Any = None):
    """One row of stacked bars per run that has a timeline: each phase of its peak step, planned next to
    measured (``records``/``store``: as ``compare``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    recs = as_records(records, store)
    runs = [(name, bars) for r, name in zip(recs, _names(recs), strict=True)
            if (bars := timeline_bars(r.planned_memory, r.memory))]
    fig = make_subplots(rows=max(1, len(runs)), cols=1, subplot_titles=[name for name, _ in runs] or None,
                        vertical_spacing=0.12 / max(1, len(runs)) + 0.06)
    for row, (_, bars) in enumerate(runs, start=1):
        x = [[phase for phase, _, _ in bars], [kind for _, kind, _ in bars]]
        for c in TIMELINE_CATEGORIES:
            fig.add_trace(go.Bar(
                x=x, y=[parts.get(c, 0) / MiB for _, _, parts in bars], name=NAMES[c], marker_color=COLORS[c],
                legendgroup=c, showlegend=row == 1,
                customdata=[sum(parts.values()) / MiB for _, _, parts in bars],
                hovertemplate=f"{NAMES[c]}: %{{y:,.1f}} MiB<br>in all: %{{customdata:,.1f}} MiB<extra></extra>",
            ), row=row, col=1)
    fig.update_layout(
        barmode="stack", template="plotly_white", height=max(340, 90 + 280 * len(runs)),
        title="A step, moment by moment: what coexists at each phase (the tallest bar is the step peak)",
        legend=dict(traceorder="normal", font=dict(size=11)),  # beside the bars: the report is page-wide
        margin=dict(t=70, r=20, b=50, l=60),
    )
    fig.update_yaxes(title_text="MiB", rangemode="tozero")
    if not runs:
        _empty_note(fig, "a step's timeline appears here once a run has recorded its first two optimizer steps")
    return fig
