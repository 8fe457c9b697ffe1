"""The live charts: a loss curve and the memory bars, as plotly FigureWidgets.

Both redraw inside ``fig.batch_update()`` so one redraw is one message to the browser; callers
throttle how often they redraw (see ``throttle.py``).
"""
from __future__ import annotations

import html
from typing import Optional, Sequence

import plotly.graph_objects as go

from lorakit.common import CATEGORY_COLORS, CATEGORY_NAMES, PEAK_COLORS, MiB, finite
from lorakit.memory import CATEGORIES

TRAIN, EVAL = 0, 1  # trace indices of the loss chart


def repair_first_view(fig: go.FigureWidget) -> go.FigureWidget:
    """Send the whole layout once more when the first view reports in. plotly's FigureWidget can draw its first
    view before the layout has reached the browser (seen in JupyterLab after Run All on a loaded 2-core machine:
    plotly's default axes, no title, 360 px high) and then only applies later edits; a relayout with every
    property mends such a view and changes nothing in a good one."""
    sent: list = []

    def resend(_change) -> None:
        if sent:  # once: after that the view answers this very relayout, and every later edit
            return
        sent.append(True)
        layout = fig.layout.to_plotly_json()
        fig._send_relayout_msg(layout)  # plotly's own message for a relayout (update_layout sends only changes)

    fig.observe(resend, "_js2py_layoutDelta")
    return fig


class LossChart:
    """Train loss (line) and eval loss (diamonds) against the step."""

    def __init__(self, height: int = 240, width: int = 470):
        self.figure = repair_first_view(go.FigureWidget(
            data=[
                go.Scatter(x=[], y=[], mode="lines+markers", name="train loss",
                           line=dict(color="#1f77b4", width=2), marker=dict(size=5)),
                go.Scatter(x=[], y=[], mode="lines+markers", name="eval loss",
                           line=dict(color="#e45756", dash="dash"), marker=dict(size=9, symbol="diamond")),
            ],
            layout=go.Layout(
                title=dict(text="Loss", x=0.02), height=height, width=width, template="plotly_white",
                margin=dict(t=40, r=10, b=40, l=50), xaxis_title="step", yaxis_title="loss",
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                # empty: a step axis from 0 and the note saying what will appear (never plotly's -1..4)
                xaxis=dict(range=[0, 10], rangemode="nonnegative"), yaxis=dict(range=[0, 4], rangemode="tozero"),
                annotations=[_note("press Train: the loss appears here after the first step")],
            ),
        ))

    def show(self, steps: Sequence, evals: Sequence, max_steps: int = 0, title: str = "Loss") -> None:
        """Redraw from [(step, loss)] and [(step, eval_loss)] in one batched update."""
        f = self.figure
        with f.batch_update():
            f.layout.annotations = () if (steps or evals) else (_note("waiting for the first step…"),)
            if steps or evals:
                f.layout.yaxis.autorange = True  # from zero (rangemode) to the highest loss
            f.data[TRAIN].x = [s for s, _ in steps]
            f.data[TRAIN].y = [finite(v) for _, v in steps]
            f.data[EVAL].x = [s for s, _ in evals]
            f.data[EVAL].y = [finite(v) for _, v in evals]
            f.layout.xaxis.range = [0, max(max_steps, steps[-1][0] if steps else 1, 1)] if max_steps else None
            f.layout.title.text = title

    @property
    def train_points(self) -> list:
        return list(zip(self.figure.data[TRAIN].x or (), self.figure.data[TRAIN].y or (), strict=False))

    @property
    def eval_points(self) -> list:
        return list(zip(self.figure.data[EVAL].x or (), self.figure.data[EVAL].y or (), strict=False))


PEAK_KINDS = ("planned", "measured")  # the step-peak marker traces, after the five bars


class MemoryChart:
    """Stacked bars of the five memory categories: planned next to measured, one pair per run; the step
    peak (the most the allocator holds during a training step) as a marker over each bar that has one."""

    def __init__(self, height: int = 270, width: int = 470, title: str = "Memory: planned vs measured"):
        self.figure = repair_first_view(go.FigureWidget(
            data=[go.Bar(x=[], y=[], name=CATEGORY_NAMES[c], marker_color=CATEGORY_COLORS[c],
                         hovertemplate=f"%{{customdata}}<br>{CATEGORY_NAMES[c]}: %{{y:,.1f}} MiB<extra></extra>")
                  for c in CATEGORIES]
                 + [go.Scatter(x=[], y=[], mode="markers", name=f"step peak ({kind})", showlegend=False,
                               marker=dict(symbol="line-ew", size=34, line=dict(color=_peak_color(kind), width=3)),
                               hovertemplate="%{customdata}<extra></extra>")
                    for kind in PEAK_KINDS],
            layout=go.Layout(
                barmode="stack", title=dict(text=title, x=0.02), height=height, width=width,
                template="plotly_white",
                # two-line ticks (kind, then run label) need the bottom; the legend lies inside the plot's top,
                # in headroom left above the bars (a legend beside a narrow chart is clipped)
                yaxis=dict(title="MiB", rangemode="tozero", range=[0, 4]), xaxis=dict(showticklabels=True),
                margin=dict(t=40, r=10, b=80, l=55),
                legend=dict(orientation="h", x=0.0, xanchor="left", y=1.0, yanchor="top", font=dict(size=10),
                            traceorder="normal", bgcolor="rgba(255,255,255,0.8)"),
                annotations=[_note("no run yet: bars appear after the first optimizer step")],
            ),
        ))
        self.bars: list = []
        self.notes: list = []

    def show(self, bars: Sequence, notes: Sequence = ()) -> None:
        """bars: [(run label, 'planned' | 'measured', MemoryBreakdown or None[, tick text])]; None draws
        an empty slot. The tick text (default: the kind) says what a bar is, e.g. which batch a plan
        is for. notes: lines shown over the bars (why a plan is missing)."""
        self.bars = [tuple(b) + (b[1],) * (4 - len(b)) for b in bars]
        self.notes = list(notes)
        ticks = [b[3] for b in self.bars]
        x = [[b[0] for b in self.bars], ticks] if self.bars else []
        f = self.figure
        with f.batch_update():
            if not self.bars:
                f.layout.annotations = (_note("no run yet: bars appear after the first optimizer step"),)
            elif self.notes:
                f.layout.annotations = (_top_note("<br>".join(html.escape(n) for n in self.notes)),)
            else:
                f.layout.annotations = ()
            for trace, c in zip(f.data[:len(CATEGORIES)], CATEGORIES, strict=True):
                trace.x = x
                trace.y = [(getattr(b[2], c) / MiB if b[2] is not None else 0.0) for b in self.bars]
                trace.customdata = [f"{b[0]}, {b[3].replace('<br>', ' ')}" for b in self.bars]
            for trace, kind in zip(f.data[len(CATEGORIES):], PEAK_KINDS, strict=True):
                peaks = [_peak(b) if b[1] == kind else None for b in self.bars]
                trace.x = x
                trace.y = [None if p is None else p / MiB for p in peaks]
                trace.customdata = [_peak_hover(b) for b in self.bars]
                trace.showlegend = any(p is not None for p in peaks)
            top = max([max(b[2].total, b[2].peak or 0) / MiB for b in self.bars if b[2] is not None] or [0])
            if top:
                f.layout.yaxis.range = [0, top * 1.5]  # the top third for the legend

    def values(self) -> dict:
        """{(run label, kind): {category: bytes}} as drawn (for tests)."""
        return {(label, kind): ({c: getattr(m, c) for c in CATEGORIES} if m is not None else None)
                for label, kind, m, _tick in self.bars}

    def ticks(self) -> dict:
        """{(run label, kind): tick text} as drawn (for tests)."""
        return {(label, kind): tick for label, kind, _m, tick in self.bars}

    def peaks(self) -> dict:
        """{(run label, kind): step peak in bytes or None} as drawn (for tests)."""
        return {(b[0], b[1]): _peak(b) for b in self.bars}


def _peak(bar) -> Optional[int]:
    return None if bar[2] is None else bar[2].peak


def _peak_color(kind: str) -> str:
    return PEAK_COLORS["measured" if kind == "measured" else "planned"]


def _peak_hover(bar) -> str:
    """A peak marker's hover: the run, the bar, the peak's phase and (planned) its transient."""
    m = bar[2]
    if m is None or m.peak is None:
        return ""
    text = f"{html.escape(bar[0])}, {bar[1]}: step peak {m.peak / MiB:,.1f} MiB at {m.peak_at or '?'}"
    for name, nbytes in (m.transient or {}).items():
        text += f"<br>on top: {html.escape(name)} {nbytes / MiB:,.1f} MiB"
    return text


# The two plans differ: before training the planner assumes full batch_size x seq_len rows
# (the Quantization panel); after the first step it plans for the batch that step trained.
PLANNED_TICKS = {"config": "planned<br>(before training)", "batch": "planned<br>(this batch)"}


def memory_bars(runs: Sequence) -> tuple:
    """(bars, notes) for ``MemoryChart.show`` from [(label, LiveRun)]: planned next to measured."""
    bars, notes = [], []
    for label, live in runs:
        bars.append((label, "planned", live.planned, planned_tick(live)))
        bars.append((label, "measured", live.memory))
        note = _plan_note(live)
        if note:
            notes.append(f"{label}: {note}")
    return bars, notes


def planned_tick(live) -> str:
    """What a run's planned bar is: for the trained batch, before training, or missing."""
    if live.planned is not None:
        return PLANNED_TICKS.get(live.plan_scope, "planned")
    return "no plan" if _plan_note(live) else "planned"  # else: not computed yet


def _plan_note(live) -> str:
    """Why a run has no plan (for the trained batch), or ""."""
    if live.planned is not None:
        return f"no plan for the trained batch: {live.plan_error}" if live.plan_error else ""
    if live.plan_error or live.memory is not None:  # measured, yet nothing to set it against
        return f"no plan: {live.plan_error or 'the planner gave none'}"
    return ""


def _note(text: str) -> dict:
    return dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                font=dict(size=13, color="#999"))


def _top_note(text: str) -> dict:
    return dict(text=text, xref="paper", yref="paper", x=0.0, y=1.0, xanchor="left", yanchor="top",
                showarrow=False, align="left", bgcolor="rgba(255,255,255,0.85)",
                font=dict(size=11, color="#b26a00"))

