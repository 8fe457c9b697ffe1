"""Memory panel: the five categories as stacked bars, planned next to measured, this run and the previous."""
from __future__ import annotations

import html

import ipywidgets as W

from lorakit.common import CATEGORY_NAMES, fmt_bytes
from lorakit.memory import CATEGORIES
from lorakit.run import MemoryMeasured, RunFinished, RunStarted

from ..charts import MemoryChart, memory_bars, planned_tick
from ..timeline_chart import TimelineChart
from .base import Panel


class MemoryPanel(Panel):
    """Base weights, adapters, gradients, optimizer state, activations: what the planner planned and
    what was measured after the first optimizer step, for this run and the one before it (so LoRA and
    QLoRA read side by side); and the step peak of the first two optimizer steps, planned and
    measured, with its phase (a marker over each bar, and rows of the table)."""

    title = "Memory"
    subtitle = "planned vs measured"

    def __init__(self, controller=None, compact: bool = False, **kwargs):
        """``compact``: no title line above the chart (its own title says what it is), so that in the Studio
        the chart ends inside a laptop's first screen."""
        if compact:
            self.title = ""
        super().__init__(controller, **kwargs)
        self.chart = MemoryChart(title="Memory: steady, by category (not all at once)")
        self.timeline = TimelineChart()
        self.table = W.HTML("")
        c = self.controller
        c.on("run", self._guard(lambda live: self.redraw()))
        c.on("event", self._guard(self._event))
        if c.previous is None:  # the newest stored run; a run started then is set beside one of its own model
            c.previous = c._previous_candidate()
        self.meaning = W.HTML(MEANING)
        self._set_children([self.chart.figure, self.timeline.figure, self.table, self.meaning])
        self.redraw()

    def _event(self, event) -> None:
        if isinstance(event, (MemoryMeasured, RunFinished, RunStarted)):
            self.redraw()

    def runs(self) -> list:
        """[(label, LiveRun)]: the previous run (if any) then the current one."""
        c = self.controller
        out = []
        if c.previous is not None and c.previous is not c.live:
            out.append((f"{c.previous.label} (previous)", c.previous))
        if c.live is not None:
            out.append((f"{c.live.label} (this run)", c.live))
        return out

    def redraw(self) -> None:
        runs = self.runs()
        bars, notes = memory_bars(runs)
        self.chart.show(bars, notes)
        if runs:  # this run's step, moment by moment (the last listed: this run, else the previous)
            label, live = runs[-1]
            self.timeline.show(label, live.planned, live.memory)
        else:
            self.timeline.show("", None, None)
        self.table.value = _verdict_html(runs) + _table_html(runs, notes)


def _verdict_html(runs: list) -> str:
    """One line comparing this run's measured step peak with the previous run's on the same model, e.g.
    "qlora-nf4-r8 used 65 % of lora-r8's memory at the step's peak (663 vs 1,015 MiB)"; "" otherwise."""
    if len(runs) != 2:
        return ""
    (_, before), (_, now) = runs
    a, b = (getattr(r.memory, "peak", None) for r in (now, before))
    if not a or not b:
        return ""
    text = (f"{now.label} used {100 * a / b:.0f} % of {before.label}'s memory at the step's peak "
            f"({fmt_bytes(a)} vs {fmt_bytes(b)}, both on {getattr(now.config, 'model', '?')})")
    return f'<div class="lorakit-memory-verdict" style="font-size:12px;margin:2px 0">{html.escape(text)}</div>'


# What the numbers are, beside them (a beginner reads "planned 8.5 MiB" next to "peak 14.4 MiB" as a contradiction)
MEANING = (
    '<div class="lorakit-memory-meaning" style="font-size:11px;color:#666;line-height:1.35;margin-top:4px">'
    '<b>What these numbers mean.</b> The first chart\'s bars are the steady memory after step 1, by category: '
    '<b>these never all exist at once</b> (the activations are freed during backward as the gradients '
    'appear). '
    '<b>planned</b> is the planner\'s estimate (before training: for the run\'s own first batch; after the '
    'first step: for the batch that step trained), <b>measured</b> is what the tensors took after the first '
    'optimizer step. The <b>step peak</b> (the marker) is the most held at one moment during a training step: '
    'steady memory plus short-lived buffers (e.g. the loss\'s gradients), so it can stand above the bar or below '
    'it; the planned one is the whole run\'s: its largest batch, or loading the base where that holds '
    'more. The second chart shows what does coexist: a step moment by moment (after the forward, at the loss, in '
    'backward, at the optimizer step), planned next to measured; the step peak is its tallest bar.</div>')


def _row(name: str, cells, bold: bool = False) -> str:
    tds = "".join(f'<td style="padding:1px 8px;text-align:right">{v}</td>' for v in cells)
    style = ' style="font-weight:bold"' if bold else ""
    return f'<tr{style}><td style="padding:1px 8px">{name}</td>{tds}</tr>'


def _table_html(runs: list, notes: list = ()) -> str:
    if not runs:
        return ('<div style="font-size:12px;color:#777">No run yet: press Train. The bars appear after the '
                'first optimizer step (measured) next to the planner\'s plan.</div>')
    head = "".join(f'<th colspan="2" style="padding:1px 8px">{html.escape(label)}</th>' for label, _ in runs)
    sub = "".join(f'<th style="padding:1px 8px">{planned_tick(live).replace("<br>", " ")}</th>'
                  '<th style="padding:1px 8px">measured</th>' for _, live in runs)
    pairs = [m for _, live in runs for m in (live.planned, live.memory)]  # the columns, in order
    rows = []
    for c in (*CATEGORIES, "total"):
        values = [None if m is None else (m.total if c == "total" else getattr(m, c)) for m in pairs]
        rows.append(_row(CATEGORY_NAMES.get(c, c), map(fmt_bytes, values), bold=c == "total"))
    # the step peak: the most memory held during the first optimizer steps (measured), or planned
    rows.append(_row("step peak", (fmt_bytes(None if m is None else m.peak) for m in pairs), bold=True))
    rows.append(_row("peak at", (html.escape(m.peak_at) if m is not None and m.peak_at else "—" for m in pairs)))
    if any(m is not None and m.device_overhead is not None for m in pairs):
        rows.append(_row("+ CUDA overhead", (fmt_bytes(None if m is None else m.device_overhead) for m in pairs)))
    why = "".join(f'<div class="lorakit-no-plan" style="font-size:12px;color:#b26a00">'
                  f'{html.escape(n)}</div>' for n in notes)
    return (f'<table class="lorakit-memory-table" style="font-size:12px;border-collapse:collapse">'
            f'<tr><th></th>{head}</tr><tr><th></th>{sub}</tr>{"".join(rows)}</table>{why}')
