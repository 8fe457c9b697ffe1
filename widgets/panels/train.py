"""Train panel: the loop's knobs, Train / Stop, a progress bar, the status line and the live loss chart."""
from __future__ import annotations

import html

import ipywidgets as W

from lorakit.run import EvalDone, PhaseStarted, RunFinished, StepLogged

from ..charts import LossChart
from ..fields import advanced, plain_text, status_html
from ..throttle import Throttle
from .base import Panel


class TrainPanel(Panel):
    """Press Train: the run goes to a background thread and the chart fills in as steps are logged.

    Redraws from the training thread are coalesced by a Throttle (at most one per ``interval``
    seconds, plus a final one when the run ends).
    """

    title = "Train"
    subtitle = "live"

    def __init__(self, controller=None, interval: float = 0.3, chart_inside: bool = True, **kwargs):
        """``chart_inside=False``: the live chart (``self.chart.figure``) is placed by the caller (the Studio puts
        it beside the form, so Train and the curve share one screen)."""
        super().__init__(controller, **kwargs)
        self.max_steps = W.IntText(layout=W.Layout(width="240px"))
        self.batch_size = W.IntText(layout=W.Layout(width="240px"))
        self.learning_rate = W.FloatText(layout=W.Layout(width="240px"))
        self.seq_len = W.IntText(layout=W.Layout(width="240px"))
        self.field("max_steps", self.max_steps, "steps")
        self.field("batch_size", self.batch_size, "batch size")
        self.field("learning_rate", self.learning_rate, "learning rate")
        self.field("seq_len", self.seq_len, "sequence length")
        self.train_button = self.button("Train", self.controller.train, style="success", width="100px",
                                        tooltip="Start a run in the background")
        self.stop_button = self.button("Stop", self.controller.stop, style="danger", width="100px",
                                       tooltip="End the run after the current step; its history is kept")
        self.stop_button.disabled = True
        self.progress = W.IntProgress(value=0, min=0, max=max(1, int(self.controller.values["max_steps"] or 1)),
                                      layout=W.Layout(width="96px"))
        self.status = W.HTML(status_html(*self.controller.status))
        self.estimate = W.HTML(layout=W.Layout(margin="0 0 0 8px"))  # "about 2 min" before, the ETA during
        self.recommended = W.HTML(layout=W.Layout(margin="0 0 0 8px"))  # which values follow the model
        self.chart = LossChart()
        self.throttle = Throttle(self._redraw, interval=interval,
                                 on_error=lambda e: self.controller.report("error", f"chart redraw failed: {e}"))
        c = self.controller
        c.on("run", self._guard(self._run_started))
        c.on("event", self._guard(self._event))
        c.on("status", self._guard(self._render_status))
        c.on("status", self._guard(self._render_estimate))
        c.on("plan", self._guard(self._render_estimate))
        f = self.fields
        # Train first: the button, the progress and the status line above the settings they use
        self._set_children([
            W.HBox([self.train_button, self.stop_button, self.progress, self.estimate],
                   layout=W.Layout(align_items="center", margin="4px 0", flex_flow="row wrap")),
            self.status,
            # recommended for the model until set: a first run does not need them
            advanced([f["max_steps"].box, f["batch_size"].box, f["learning_rate"].box, f["seq_len"].box,
                      self.recommended], "Steps, batch size, learning rate, sequence length"),
            *([self.chart.figure] if chart_inside else []),
        ])
        self.refresh()

    def refresh(self) -> None:
        note = self.controller.form.recommended_note()
        text = f'<span style="font-size:12px;color:#555">{html.escape(note)}</span>' if note else ""
        if self.recommended.value != text:
            self.recommended.value = text

    # --- from the controller (any thread) ---------------------------------------------------------
    def _run_started(self, live) -> None:
        self.throttle.push()
        self.throttle.flush()

    def _event(self, event) -> None:
        if isinstance(event, (StepLogged, EvalDone)):
            self.throttle.push(event)
        elif isinstance(event, PhaseStarted):  # no step for a while: say what the run is doing, at once
            self.throttle.push(event)
            self.throttle.flush()
        elif isinstance(event, RunFinished):
            self.throttle.push(event)
            self.throttle.flush()  # the final state, at once

    def _render_status(self) -> None:
        html = status_html(*self.controller.status)
        if self.status.value != html:
            self.status.value = html
        running = self.controller.running and not (self.controller.live and self.controller.live.done)
        self.stop_button.disabled = not running

    def _render_estimate(self) -> None:
        text = self.controller.estimate_text
        value = f'<span style="font-size:12px;color:#555">{html.escape(text)}</span>' if text else ""
        if self.estimate.value != value:
            self.estimate.value = value

    def _redraw(self, _items) -> None:
        live = self.controller.live
        if live is None:
            return
        with live.lock:
            steps, evals, max_steps = list(live.steps), list(live.evals), live.max_steps
        self.chart.show(steps, evals, max_steps, title=f"Loss · {live.label}")
        self.progress.max = max(1, max_steps)
        self.progress.value = min(steps[-1][0] if steps else 0, self.progress.max)
        self.progress.bar_style = {"finished": "success", "stopped": "warning", "failed": "danger"}.get(
            live.status, "info")
        self._render_status()
        self._render_estimate()

    # --- for tests and scripts --------------------------------------------------------------------
    @property
    def estimate_text(self) -> str:
        return plain_text(self.estimate.value)

    @property
    def status_text(self) -> str:
        return plain_text(self.status.value)

    def click_train(self) -> None:
        self.train_button.click()

    def click_stop(self) -> None:
        self.stop_button.click()
