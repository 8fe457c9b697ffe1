"""Sweep panel: pick axis values, read the trials and their planned memory, Run / Stop, a live table and the
loss curves overlaid. Forwards values to ``controller.sweep`` (widgets/sweep.py); draws what it holds."""
from __future__ import annotations

import html
import threading

import ipywidgets as W
import plotly.graph_objects as go

from lorakit.common import fmt_bytes
from lorakit.run import RunFinished
from lorakit.sweeps import EXECUTORS

from ..fields import Field, advanced, plain_text, status_html
from ..sweepstate import AXES, DONE, show
from ..throttle import Throttle
from .base import Panel

# planned: for the form's batch_size x seq_len (before anything runs); measured: the batch the first steps trained
COLUMNS = ("#", "trial", "status", "step", "loss", "tokens/s", "measured memory (peak)", "planned memory",
           "planned peak", "fits")
STATUS_COLORS = {"finished": "#2e7d32", "stopped": "#b26a00", "failed": "#c62828", "invalid": "#c62828",
                 "running": "#1565c0", "loading": "#1565c0"}


class SweepPanel(Panel):
    """Each axis takes several values (pick them, or type numbers); every combination of the form's run
    with them is a trial. Run trains them one after another (or on Ray) in the background."""

    title = "Sweep"
    subtitle = "a grid of runs from the form's settings"

    def __init__(self, controller=None, interval: float = 0.3, **kwargs):
        super().__init__(controller, **kwargs)
        self.sweep = self.controller.sweep
        self.axes: dict = {}  # axis -> Field
        for name, choices in AXES.items():
            if choices is None:
                widget = W.Text(placeholder="e.g. 1e-4, 3e-4", layout=W.Layout(width="250px"))
            else:
                widget = W.SelectMultiple(options=[(show(v), v) for v in choices], rows=min(6, len(choices)),
                                          layout=W.Layout(width="250px"))
            widget.add_class(f"lorakit-sweep-{name}")  # for the browser test
            f = Field(name, widget, name.replace("_", " "))
            widget.observe(self._guard(lambda ch, n=name: self.sweep.set_axis(n, ch["new"])), "value")
            self.axes[name] = f
        self.skip_invalid = W.Checkbox(value=self.sweep.skip_invalid, indent=False, layout=W.Layout(width="auto"),
                                       description="skip invalid combinations (run only the valid ones)")
        self.skip_invalid.observe(self._guard(lambda ch: self.sweep.set_option("skip_invalid", ch["new"])), "value")
        self.executor = W.Dropdown(options=EXECUTORS, value=self.sweep.executor, description="executor",
                                   layout=W.Layout(width="180px"))
        self.executor.style.description_width = "60px"
        self.executor.observe(self._guard(lambda ch: self.sweep.set_option("executor", ch["new"])), "value")
        self.run_button = self.button("Run sweep", self.sweep.run, style="success", width="120px",
                                      tooltip="Train every valid trial in the background")
        self.stop_button = self.button("Stop sweep", self.sweep.stop, style="danger", width="120px",
                                       tooltip="The running trial ends after its current step; queued ones never start")
        self.summary = W.HTML("")
        self.table = W.HTML("", layout=W.Layout(overflow="auto", max_height="320px"))
        self.status = W.HTML("")
        self.chart = go.FigureWidget(layout=go.Layout(
            title=dict(text="Loss per trial", x=0.02), height=300, width=640, template="plotly_white",
            margin=dict(t=40, r=10, b=40, l=50), xaxis_title="step", yaxis_title="loss",
            # empty: axes from 0 and what will appear (never plotly's -1..4)
            xaxis=dict(rangemode="nonnegative"), yaxis=dict(rangemode="tozero"),
            annotations=[_EMPTY_NOTE]))
        self._traced: list = []  # the trials the chart's traces draw, in order
        # redraws come from the main, planner, sweep and timer threads: one at a time, each reading the
        # newest state, so a slow redraw never overwrites a newer one with what it read before
        self._draw = threading.RLock()
        self.throttle = Throttle(self._redraw_live, interval=interval,
                                 on_error=lambda e: self.controller.report("error", f"sweep redraw failed: {e}"))
        c = self.controller
        c.on("sweep", self._guard(self._redraw_all))
        c.on("sweep_event", self._guard(self._event))
        c.on("sweep_status", self._guard(self._render_status))
        c.on("status", self._guard(self._render_status))
        self._set_children([
            W.HTML('<div style="font-size:12px;color:#555">Ctrl-click (⌘-click on a Mac) or Shift-click picks '
                   'several values of an axis; every combination is one trial.</div>'),
            W.HBox([f.box for f in self.axes.values()], layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.run_button, self.stop_button], layout=W.Layout(align_items="center", margin="4px 0")),
            advanced([W.HBox([self.executor, self.skip_invalid], layout=W.Layout(align_items="center"))],
                     "Advanced: executor (local or Ray), invalid combinations"),
            self.summary, self.status, self.table, self.chart,
        ])
        self.add_class("lorakit-sweep")
        self._redraw_all()

    # no RunConfig fields: the sweep controller follows the form itself and announces ``sweep``
    def _sync_values(self, changes: dict) -> None:
        pass

    def _show_problems(self, problems: dict) -> None:
        pass

    # --- from the controller (any thread) ---------------------------------------------------------
    def _event(self, trial, event) -> None:
        self.throttle.push(event)
        if isinstance(event, RunFinished):
            self.throttle.flush()  # a trial's end, at once

    def _redraw_all(self) -> None:
        """The trials changed (or the sweep ended): messages, table, chart traces, buttons."""
        s = self.sweep
        with self._draw, s._lock:
            for name, f in self.axes.items():
                f.show(s.problems.get(name, ""))
            self.summary.value = f'<div class="lorakit-sweep-summary" style="font-size:13px">{_summary(s)}</div>'
            trials = [t for t in s.trials if t.config is not None]
            if [id(t) for t in trials] != [id(t) for t in self._traced]:
                self._traced = trials
                with self.chart.batch_update():
                    self.chart.data = ()
                    self.chart.add_traces([go.Scatter(x=[], y=[], mode="lines+markers", name=t.label)
                                           for t in trials])
            self._redraw_live(())

    def _redraw_live(self, _items) -> None:
        s = self.sweep
        with self._draw:
            with s._lock:
                self.table.value = _table_html(s.trials)
                curves = [list(t.steps) for t in self._traced]
            with self.chart.batch_update():
                for trace, steps in zip(self.chart.data, curves, strict=False):
                    trace.x = [step for step, _ in steps]
                    trace.y = [loss for _, loss in steps]
                drawn = any(curves)
                if drawn == bool(self.chart.layout.annotations):  # the note goes with the first point
                    self.chart.layout.annotations = () if drawn else (_EMPTY_NOTE,)
            self._render_status()

    def _render_status(self) -> None:
        with self._draw:
            text = status_html(*self.sweep.status)
            if self.status.value != text:
                self.status.value = text
            busy = self.sweep.running
            self.stop_button.disabled = not busy
            self.run_button.disabled = busy

    # --- for tests and scripts --------------------------------------------------------------------
    @property
    def status_text(self) -> str:
        return plain_text(self.status.value)

    @property
    def summary_text(self) -> str:
        return plain_text(self.summary.value)

    @property
    def table_text(self) -> str:
        return plain_text(self.table.value)

    def click_run(self) -> None:
        self.run_button.click()

    def click_stop(self) -> None:
        self.stop_button.click()


_EMPTY_NOTE = dict(text="each trial's loss curve appears here when the sweep runs", xref="paper", yref="paper",
                   x=0.5, y=0.5, showarrow=False, font=dict(size=13, color="#999"))


def _summary(s) -> str:
    if s.base_error:
        return html.escape(s.base_error)
    if not s.trials:
        return "Pick values for one or more axes: every combination with the form's other settings is a trial."
    bad = len(s.invalid)
    text = f"<b>{len(s.trials)} trial(s)</b>"
    if bad:
        what = "skipped when the sweep runs" if s.skip_invalid else "the sweep will not start while any is invalid"
        text += f' · <span style="color:#c62828">{bad} invalid ({what})</span>'
    ended = sum(t.status in DONE for t in s.trials)
    if s.running:  # the words follow the sweep: before, while and after it runs
        return text + f" · running: {ended} of {len(s.trials)} ended · measured memory fills in beside the planned"
    if ended:
        return text + f" · {ended} ended: measured memory beside the planned, per trial below"
    return text + " · planned memory per trial below, before anything runs"


def _table_html(trials: list) -> str:
    if not trials:
        return ""
    head = "".join(f'<th style="padding:1px 8px">{c}</th>' for c in COLUMNS)
    rows = "".join(_row(i, t) for i, t in enumerate(trials, 1))
    return (f'<table class="lorakit-sweep-table" style="font-size:12px;border-collapse:collapse">'
            f"<tr>{head}</tr>{rows}</table>")


def _row(i: int, t) -> str:
    status = t.status + (" (stopping)" if t.stopping else "")
    color = STATUS_COLORS.get(t.status, "#555")
    cells = [str(i), html.escape(t.label), f'<span style="color:{color}">{html.escape(status)}</span>']
    if t.config is None:  # invalid: say why across the rest of the row
        cells.append(f'<span class="lorakit-sweep-invalid" style="color:#c62828">{html.escape(t.error)}</span>')
        return _tr(cells, span=len(COLUMNS) - 3)
    step = f"{t.steps[-1][0]}/{t.max_steps}" if t.steps else "—"
    loss = f"{t.loss:.4g}" if t.loss is not None else "—"
    speed = f"{t.tokens_per_s:,.0f}" if t.tokens_per_s else "—"
    measured = "—" if t.memory is None else fmt_bytes(t.memory.total) + (
        f" ({fmt_bytes(t.memory.peak)})" if t.memory.peak is not None else "")
    planned = fmt_bytes(t.planned.total) if t.planned is not None else (html.escape(t.plan_error) or "planning…")
    peak = fmt_bytes(t.planned.peak) if t.planned is not None and t.planned.peak is not None else "—"
    fit = "—" if t.fit is None else ("fits" if t.fit.fits else "does not fit") + f" ({html.escape(t.fit.device)})"
    if t.reason and t.status in ("failed", "stopped"):
        cells[2] += f'<div style="color:#777;font-size:11px">{html.escape(t.reason)}</div>'
    return _tr(cells + [step, loss, speed, measured, planned, peak, fit])


def _tr(cells: list, span: int = 0) -> str:
    tds = [f'<td style="padding:1px 8px">{c}</td>' for c in cells]
    if span:
        tds[-1] = tds[-1].replace("<td ", f'<td colspan="{span}" ', 1)
    return f"<tr>{''.join(tds)}</tr>"
