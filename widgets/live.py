"""LiveCallback: the Studio's live loss and memory panels for your own ``transformers.Trainer`` (or TRL).

    from lorakit.widgets import LiveCallback
    cb = LiveCallback()            # or LiveCallback(studio) to feed an open Studio's panels
    cb                             # shows the dashboard
    trainer = Trainer(..., callbacks=[cb])
    with cb:                       # an exception in train() marks the dashboard failed (and is re-raised)
        trainer.train()

Without the ``with``, a Trainer that raises never calls ``on_train_end``, so the dashboard would
keep saying "running".

The callback is the engine's Trainer -> events bridge (``lorakit.training.trainer_events.TrainerEvents``: RunStarted,
StepLogged, EvalDone, MemoryMeasured, RunFinished) with a widget sink, so the same panels draw them.
Memory is measured after the first optimizer step, on the batch that step trained on; its activations
are the tensors autograd saved during that step's own forward (recorded between a forward pre-hook and
a forward hook on your model), so no extra forward runs.
"""
from __future__ import annotations

from typing import Any

import ipywidgets as W

from lorakit.run import MemoryMeasured, RunFinished, RunStarted
from lorakit.training import TrainerEvents

from .charts import LossChart, MemoryChart, memory_bars
from .fields import plain_text, status_html
from .runstate import LiveRun
from .throttle import Throttle


class LiveDashboard(W.VBox):
    """Live loss chart, progress, status line and memory bars for one outside run; a sink of lorakit events."""

    def __init__(self, label: str = "your run", interval: float = 0.3):
        super().__init__()
        self.label = label
        self.live = LiveRun(label=label)
        self.chart = LossChart()
        self.memory = MemoryChart(title="Memory after the first optimizer step")
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="260px"))
        self.status = W.HTML(status_html("info", f"{label}: waiting for the Trainer to start…"))
        self.errors: list = []
        self.throttle = Throttle(self._redraw, interval=interval, on_error=self._error)
        self.children = [W.HBox([self.progress, self.status], layout=W.Layout(align_items="center")),
                         W.HBox([self.chart.figure, self.memory.figure])]

    def __call__(self, event) -> None:
        """The sink: called from the training thread; never raises."""
        try:
            if isinstance(event, RunStarted):
                self.live = LiveRun(label=self.label, max_steps=self.live.max_steps)
            self.live.apply(event)
            self.throttle.push(event)
            if isinstance(event, (RunStarted, MemoryMeasured, RunFinished)):
                self.throttle.flush()
        except Exception as exc:  # noqa: BLE001
            self._error(exc)

    def _redraw(self, _items) -> None:
        live = self.live
        with live.lock:
            steps, evals, max_steps = list(live.steps), list(live.evals), live.max_steps
        self.chart.show(steps, evals, max_steps, title=f"Loss · {live.label}")
        bars, notes = memory_bars([(live.label, live)]) if (live.planned or live.memory) else ([], [])
        self.memory.show(bars, notes)
        self.progress.max = max(1, max_steps)
        self.progress.value = min(steps[-1][0] if steps else 0, self.progress.max)
        self.status.value = status_html(*live.message())

    def _error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.status.value = status_html("error", f"display error: {type(exc).__name__}: {exc}")

    @property
    def status_text(self) -> str:
        return plain_text(self.status.value)


class LiveCallback(TrainerEvents):
    """A ``TrainerCallback`` that feeds lorakit's live panels: ``lorakit.training.trainer_events.TrainerEvents`` (each
    ``trainer.train()`` a run of its own) with a widget as its sink.

    target: None (a new ``LiveDashboard``, shown when the callback is displayed), a ``Studio`` or its
    controller (its Train and Memory panels show the run), or any callable sink of lorakit events.
    config: an optional ``lorakit.RunConfig`` describing the run, for the planner's plan next
    to the measured memory. measure_memory: False skips the one-off measurement.
    """

    NO_CONFIG = "pass LiveCallback(config=RunConfig(...)) for the planner's plan"

    def __init__(self, target: Any = None, label: str = "your run", config=None, measure_memory: bool = True):
        if target is None:
            target = LiveDashboard(label)
        self.dashboard = target if isinstance(target, LiveDashboard) else None
        controller = getattr(target, "controller", target)
        sink = getattr(controller, "feed", controller)
        if not callable(sink):
            raise TypeError("LiveCallback target must be a Studio, a StudioController, a LiveDashboard or a callable")
        super().__init__([sink], config=config, measure_memory=measure_memory)
        self.label = label

    def _ipython_display_(self):
        from IPython.display import display

        display(self.dashboard if self.dashboard is not None else W.HTML(
            "LiveCallback feeds the Studio's panels above."))
