"""A step's memory timeline as stacked bars: by category at each phase, planned next to measured.

What one bar stacks is what coexists at that moment (``MemoryBreakdown.timeline``), so the tallest bar is
the step peak; the steady five-category bars (``charts.MemoryChart``) never all exist at once.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go

from lorakit.common import TIMELINE_COLORS as COLORS
from lorakit.common import TIMELINE_NAMES as NAMES
from lorakit.common import MiB
from lorakit.comparison import timeline_bars as planned_and_measured
from lorakit.memory import TIMELINE_CATEGORIES

from .charts import repair_first_view

EMPTY = "no timeline yet: it appears after the first two optimizer steps"


class TimelineChart:
    """Stacked bars per phase of a step (forward, logits-loss, backward, optimizer step), the planned bar next
    to the measured one; one trace per category (``TIMELINE_CATEGORIES``)."""

    def __init__(self, height: int = 250, width: int = 470, title: str = "A step, moment by moment"):
        self.figure = repair_first_view(go.FigureWidget(
            data=[go.Bar(x=[], y=[], name=NAMES[c], marker_color=COLORS[c],
                         hovertemplate=f"%{{customdata}}<br>{NAMES[c]}: %{{y:,.1f}} MiB<extra></extra>")
                  for c in TIMELINE_CATEGORIES],
            layout=go.Layout(
                barmode="stack", title=dict(text=title, x=0.02), height=height, width=width,
                template="plotly_white", yaxis=dict(title="MiB", rangemode="tozero"),
                margin=dict(t=40, r=10, b=80, l=55),
                legend=dict(orientation="h", x=0.0, xanchor="left", y=1.0, yanchor="top", font=dict(size=10),
                            traceorder="normal", bgcolor="rgba(255,255,255,0.8)"),
                annotations=[_note(EMPTY)],
            ),
        ))
        self.bars: list = []

    def show(self, label: str, planned, measured) -> None:
        """One run's timelines (``MemoryBreakdown`` s or None); a side without a timeline is left out."""
        self.bars = timeline_bars(planned, measured)
        x = [[phase for phase, _, _ in self.bars], [kind for _, kind, _ in self.bars]] if self.bars else []
        f = self.figure
        with f.batch_update():
            f.layout.annotations = () if self.bars else (_note(EMPTY),)
            f.layout.title.text = (f"A step, moment by moment: {html.escape(label)}" if self.bars
                                   else "A step, moment by moment")
            for trace, c in zip(f.data, TIMELINE_CATEGORIES, strict=True):
                trace.x = x
                trace.y = [parts.get(c, 0) / MiB for _, _, parts in self.bars]
                trace.customdata = [f"{phase}, {kind}: {sum(parts.values()) / MiB:,.1f} MiB in all"
                                    for phase, kind, parts in self.bars]
            top = max([sum(parts.values()) / MiB for _, _, parts in self.bars] or [0])
            f.layout.yaxis.range = [0, top * 1.5] if top else None  # the top third for the legend

    def values(self) -> dict:
        """{(phase, kind): {category: bytes}} as drawn (for tests)."""
        return {(phase, kind): parts for phase, kind, parts in self.bars}


def timeline_bars(planned, measured) -> list:
    """[(phase, 'planned' | 'measured', {category: bytes})] in step order, planned first within a phase (the
    report's words: one vocabulary)."""
    return list(planned_and_measured(planned, measured))


def _note(text: str) -> dict:
    return dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                font=dict(size=13, color="#999"))
