"""LiveCallback: the Studio's live loss and memory panels for your own ``transformers.Trainer`` (or TRL).

    from lorakit.widgets import LiveCallback
    cb = LiveCallback()            # or LiveCallback(studio) to feed an open Studio's panels
    cb                             # shows the dashboard
    trainer = Trainer(..., callbacks=[cb])
    with cb:                       # an exception in train() marks the dashboard failed (and is re-raised)
        trainer.train()

Without the ``with``, a Trainer that raises never calls ``on_train_end``, so the dashboard would
keep saying "running".

The callback turns the Trainer's hooks into lorakit's events (RunStarted, StepLogged, EvalDone,
MemoryMeasured, RunFinished), so the same panels draw them. Memory is measured with
``lorakit.memory.measure`` after the first optimizer step, on the batch that step trained on; its
activations are the tensors autograd saved during that step's own forward (recorded between a
forward pre-hook and a forward hook on your model), so no extra forward runs.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

import ipywidgets as W
from transformers import TrainerCallback

from lorakit.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged, error_line

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


class LiveCallback(TrainerCallback):
    """A ``TrainerCallback`` that feeds lorakit's live panels.

    target: None (a new ``LiveDashboard``, shown when the callback is displayed), a ``Studio`` or its
    controller (its Train and Memory panels show the run), or any callable sink of lorakit events.
    config: an optional ``lorakit.RunConfig`` describing the run, for the planner's prediction next
    to the measured memory. measure_memory: False skips the one-off measurement.
    """

    def __init__(self, target: Any = None, label: str = "your run", config=None, measure_memory: bool = True):
        if target is None:
            target = LiveDashboard(label)
        self.dashboard = target if isinstance(target, LiveDashboard) else None
        controller = getattr(target, "controller", target)
        self.sink: Callable = getattr(controller, "feed", controller)
        if not callable(self.sink):
            raise TypeError("LiveCallback target must be a Studio, a StudioController, a LiveDashboard or a callable")
        self.label, self.config, self.measure_memory = label, config, measure_memory
        self.run_id = ""
        self.finished = False  # RunFinished was sent for the current run
        self.errors: list = []
        self._hook = None
        self._batch = None
        self._recorder = None  # ActivationRecorder of the first training forward, while it runs
        self._post_hook = None  # the forward hook that ends that recording
        self._recording_thread = None
        self._probe_batch = None  # the batch whose forward was recorded (measured and planned for)
        self._record = True
        self._activations: Optional[int] = None  # bytes it counted
        self._measuring = False
        self._probed = False
        self._tokens = 0  # real tokens since the last logged step
        self._t_log = self._t0 = 0.0

    def _ipython_display_(self):
        from IPython.display import display

        display(self.dashboard if self.dashboard is not None else W.HTML(
            "LiveCallback feeds the Studio's panels above."))

    # --- the context manager: a Trainer that raises skips on_train_end ------------------------------
    def __enter__(self) -> "LiveCallback":
        self.finished = False
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not self.finished:
            stopped = isinstance(exc, KeyboardInterrupt)
            reason = "interrupted (KeyboardInterrupt)" if stopped else f"{type(exc).__name__}: {exc}"
            self._end("stopped" if stopped else "failed", reason)
        return False  # the user's exception goes on: the dashboard only reports it

    def _end(self, status: str, reason: str) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._stop_recording()
        self._batch = self._probe_batch = None
        self.finished = True
        self._emit(RunFinished(self.run_id, status, None, reason))

    # --- events out --------------------------------------------------------------------------------
    def _emit(self, event) -> None:
        try:
            self.sink(event)
        except Exception as exc:  # noqa: BLE001 - the user's training must never die of the dashboard
            self.errors.append(exc)

    # --- Trainer hooks -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # a previous run interrupted mid-forward (Ctrl-C skips always_call hooks) may have left hooks
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._stop_recording()
        self.run_id = uuid.uuid4().hex[:12]
        self.finished = False
        self._t0 = self._t_log = time.perf_counter()
        self._tokens, self._probed, self._activations, self._probe_batch = 0, False, None, None
        # DataParallel (several GPUs in one process) runs replicas on threads that share the hooks: a
        # recording entered on one thread cannot be left on another, so measure by replay there
        self._record = int(getattr(args, "n_gpu", 1) or 1) <= 1
        trainable = total = 0
        if model is not None:
            for p in model.parameters():
                total += p.numel()
                trainable += p.numel() if p.requires_grad else 0
            self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)
        event = RunStarted(self.run_id, self.config, trainable, total)
        self._emit(event)
        self._max_steps = int(state.max_steps or args.max_steps or 0)

    def _capture(self, module, args, kwargs):
        """Forward pre-hook: remember the training batch (for the memory probe) and count its real tokens."""
        if self._measuring or not module.training:
            return None
        batch = dict(kwargs)
        if args and "input_ids" not in batch:
            batch["input_ids"] = args[0]
        self._batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")
                       and hasattr(v, "shape")}
        mask = self._batch.get("attention_mask")
        ids = self._batch.get("input_ids")
        try:
            self._tokens += int(mask.sum()) if mask is not None else (int(ids.numel()) if ids is not None else 0)
        except Exception:  # noqa: BLE001
            pass
        if (self.measure_memory and self._record and not self._probed and self._recorder is None
                and self._probe_batch is None):
            self._start_recording(module)
        return None

    # --- activations of the first training forward, without replaying it ----------------------------
    def _start_recording(self, module) -> None:
        """Count what autograd saves from here to the end of this forward (the loss included: a causal
        LM computes it inside forward when given labels)."""
        try:
            from lorakit.memory import ActivationRecorder

            # with gradient accumulation the step ends several batches later: keep this one for the
            # measurement and the prediction, so both describe the recorded forward
            self._probe_batch = self._batch
            self._recording_thread = threading.get_ident()
            self._recorder = ActivationRecorder(module, self._batch).__enter__()
            # always_call: a forward that raises must not leave the saved-tensor hooks installed
            self._post_hook = module.register_forward_hook(self._finish_recording, always_call=True)
        except Exception as exc:  # noqa: BLE001 - the probe then falls back to one replay forward
            self.errors.append(exc)
            self._stop_recording()

    def _finish_recording(self, module, args, output):
        if threading.get_ident() != self._recording_thread:
            return None  # another thread's forward of a shared module: not the one being recorded
        recorder = self._recorder
        self._stop_recording()
        if recorder is not None:
            try:
                recorder.add_outputs(output)  # tensors custom autograd Functions keep on ctx
                self._activations = recorder.nbytes
            except Exception as exc:  # noqa: BLE001
                self.errors.append(exc)
        return None

    def _stop_recording(self) -> None:
        if self._post_hook is not None:
            self._post_hook.remove()
            self._post_hook = None
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            try:
                recorder.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - never into the user's forward
                self.errors.append(exc)

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self._probed or not self.measure_memory or model is None or self._batch is None:
            return
        self._probed = True
        recorded = self._activations is not None
        self._probe_batch = batch = self._probe_batch if recorded else self._batch
        try:
            from lorakit.memory import measure

            self._measuring = True  # a replay forward (when nothing was recorded) is not a training batch
            measured = measure(model, optimizer, batch, activations=self._activations)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(exc)
            return
        finally:
            self._measuring = False
        planned, why = self._planned()
        self._emit(MemoryMeasured(self.run_id, state.global_step + 1, measured, planned, plan_error=why))

    def _planned(self) -> tuple:
        """(prediction for the trained batch or None, why there is none)."""
        if self.config is None:
            return None, "pass LiveCallback(config=RunConfig(...)) for the planner's prediction"
        batch = self._probe_batch
        if batch is None or "input_ids" not in batch:
            return None, "no training batch was seen"
        try:
            from lorakit.planner import plan_for_batch

            return plan_for_batch(self.config, batch), ""  # its shape, and padding if it has any
        except Exception as exc:  # noqa: BLE001 - a prediction is optional
            self.errors.append(exc)
            return None, error_line(exc)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        dt, self._t_log = now - self._t_log, now
        tokens, self._tokens = self._tokens, 0
        self._emit(StepLogged(self.run_id, int(state.global_step), int(state.max_steps or self._max_steps),
                              float(logs["loss"]), float(logs.get("learning_rate", 0.0) or 0.0),
                              tokens / dt if dt > 0 else 0.0, now - self._t0,
                              _maybe_float(logs.get("grad_norm"))))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            loss = float(metrics["eval_loss"])
            import math

            self._emit(EvalDone(self.run_id, int(state.global_step), loss, math.exp(loss) if loss < 50 else float("inf")))

    def on_train_end(self, args, state, control, **kwargs):
        done = state.max_steps and state.global_step >= state.max_steps
        status = "finished" if done or not state.max_steps else "stopped"
        reason = "" if status == "finished" else f"the Trainer stopped at step {state.global_step}"
        self._end(status, reason)


def _maybe_float(x) -> Optional[float]:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None
