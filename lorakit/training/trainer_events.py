"""The Trainer -> events bridge: one ``transformers.TrainerCallback`` that turns a Trainer's hooks into
lorakit's events (``events.py``) for sinks, used by ``lorakit.train`` and by ``widgets.LiveCallback``.

- every logged step: ``StepLogged`` (real tokens per second since the previous log);
- every evaluation: ``EvalDone`` with the perplexity;
- after the first optimizer step, when gradients and optimizer state exist: one ``MemoryMeasured``,
  ``memory.measure`` with the activations of the first training forward (``probe.py``; replayed only
  when none were recorded) next to the planner's prediction for that very batch;
- after the second (or the last, if the run is shorter): ``MemoryMeasured`` again, now with the
  measured peak of the first two steps (``step_peak.TrainingPeak``) and the planned one for their batches.

Two modes, chosen by ``run_id``:

- given (``lorakit.train``): the run is train()'s. It announces the run (RunStarted, RunFinished
  with the record) and its ``ProbingTrainer`` records the first forward; a non-finite loss ends the
  run (``StopRun``), a failed measurement fails it, a planner failure is one logged warning line.
- None (someone else's Trainer): each ``trainer.train()`` is a run of its own, announced from the
  hooks; forward hooks record the first forward (replay under DataParallel, whose replica threads
  share the hooks). Nothing here may break the user's training: failures are kept in ``errors``.
  Used as a context manager, an exception out of ``train()`` (which skips ``on_train_end``) is
  reported as a failed run, a KeyboardInterrupt as a stopped one.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from typing import Callable, Iterable, Optional

from transformers import TrainerCallback

from lorakit.adapters.base_record import plain_model
from lorakit.run.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged, emit, error_line
from lorakit.training.probe import ForwardHooks

log = logging.getLogger("lorakit")


class StopRun(Exception):
    """Raised inside the loop to end a run with a given status ('stopped' or 'failed')."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def perplexity(loss: float, model=None) -> Optional[float]:
    """exp(eval loss): a language model's perplexity, over the next tokens (causal LM) or the target's
    tokens (seq2seq); None for a classifier (``model``), whose loss is a cross-entropy over its labels,
    not over a vocabulary."""
    if model is not None and is_classifier(model):
        return None
    return math.exp(loss) if loss < 50 else float("inf")


def is_classifier(model) -> bool:
    """A sequence classifier: transformers' ``*ForSequenceClassification``, bare or wrapped by peft."""
    return any(type(m).__name__.endswith("ForSequenceClassification") for m in (model, plain_model(model)))


def _num_labels(model) -> Optional[int]:
    """A classifier's outputs (None for another model, or none given)."""
    if model is None or not is_classifier(model):
        return None
    return int(plain_model(model).config.num_labels)


def _maybe_float(x) -> Optional[float]:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


class TrainerEvents(TrainerCallback):
    """Emits lorakit events to ``sinks`` from a Trainer's hooks (see the module docstring for the modes).

    config: the run's ``RunConfig``, for the planner's prediction next to the measured memory.
    stop: a ``threading.Event``; set, the Trainer stops after the current step.
    clock_start: ``time.perf_counter()`` that ``elapsed_s`` counts from (default: the loop's start).
    """

    NO_CONFIG = "pass config=RunConfig(...) for the planner's prediction"

    def __init__(self, sinks: Iterable[Callable] = (), config=None, run_id: Optional[str] = None,
                 measure_memory: bool = True, stop: Optional[threading.Event] = None,
                 clock_start: Optional[float] = None):
        self.sinks = list(sinks)
        self.config, self.measure_memory, self.stop, self.clock_start = config, measure_memory, stop, clock_start
        self.num_labels: Optional[int] = None  # a classifier's outputs, read from the model at on_train_begin
        self.outside = run_id is None  # someone else's Trainer: each train() is a run of its own
        self.run_id = run_id or ""
        self.errors: list = []
        self.finished = False  # RunFinished was sent for the current (outside) run
        self.hooks = ForwardHooks(self.activations_recorded, self.errors.append)
        self.activations: Optional[int] = None  # bytes the first training forward saved for backward
        self.recorded_batch: Optional[dict] = None  # the batch of that forward
        self.train_started_at: Optional[float] = None  # perf_counter when the Trainer's loop began
        self.last_step_at: Optional[float] = None  # ... and when its last step ended
        self._probed = False
        self.peak = None  # step_peak.TrainingPeak while the first steps are recorded
        self._memory: Optional[tuple] = None  # (step, measured, planned, why) of the first MemoryMeasured
        self.run_plan = None  # lorakit.train's: the whole run's plan (memory.run_plan), whose peak is the planned one
        self._t0 = self._t_log = 0.0
        self._tokens_seen = 0  # the Trainer's token count at the previous log
        self.tokens_at_start = 0  # ... when the loop began (a resumed Trainer's count starts at its checkpoint's)
        self._max_steps = 0

    def activations_recorded(self, nbytes: int, batch: dict) -> None:
        """The first training forward's activations (from ``ForwardHooks`` or ``ProbingTrainer``)."""
        self.activations, self.recorded_batch = nbytes, batch

    def close(self) -> None:
        """Take the hooks off the model, end a step-peak recording, let go of the batches."""
        self.hooks.detach()
        if self.peak is not None:
            self.peak.step_end()  # a run interrupted mid-step must not leave the profiler running
            self.peak = None
        self.recorded_batch = None

    # --- events out ---------------------------------------------------------------------------------
    def _emit(self, event) -> None:
        # outside, a failing sink (a dashboard) is kept, not logged into the user's notebook
        emit(self.sinks, event, errors=self.errors if self.outside else None)

    # --- the run's beginning and end (outside mode) -------------------------------------------------
    def _start_run(self, model) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.finished = False
        trainable = total = 0
        for p in model.parameters() if model is not None else ():
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        self._emit(RunStarted(self.run_id, self.config, trainable, total))

    def end_run(self, status: str, reason: str) -> None:
        self.close()
        self.finished = True
        self._emit(RunFinished(self.run_id, status, None, reason))

    def __enter__(self) -> "TrainerEvents":
        self.finished = False
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self.outside and not self.finished:
            stopped = isinstance(exc, KeyboardInterrupt)
            reason = "interrupted (KeyboardInterrupt)" if stopped else f"{type(exc).__name__}: {exc}"
            self.end_run("stopped" if stopped else "failed", reason)
        return False  # the exception goes on: the sinks only report it

    # --- Trainer hooks ------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.hooks.detach()
        now = time.perf_counter()
        self.train_started_at = self._t_log = now
        self._t0 = self.clock_start if self.clock_start is not None else now
        self._probed, self.activations, self.recorded_batch, self._memory = False, None, None, None
        if self.peak is not None:
            self.peak.step_end()  # a run interrupted mid-step (Ctrl-C skips on_train_end) left it recording
        self.peak = None
        if model is not None and self.measure_memory:
            from lorakit.common.devices import model_device
            from lorakit.memory.step_peak import TrainingPeak

            also = self.run_plan.peak_step if self.run_plan is not None else None  # the plan's peak, checked
            self.peak = TrainingPeak(str(model_device(model)), also=also)
        self._tokens_seen = self.tokens_at_start = state.num_input_tokens_seen
        self._max_steps = int(state.max_steps or args.max_steps or 0)
        self.num_labels = _num_labels(model)  # a classifier is planned with the head it trains
        if model is not None:
            # DataParallel (several GPUs in one process) runs replicas on threads that share the hooks: a
            # recording entered on one thread cannot be left on another, so the probe replays there
            record = self.outside and self.measure_memory and int(getattr(args, "n_gpu", 1) or 1) <= 1
            self.hooks.attach(model, record=record, count_tokens=not self._trainer_counts_tokens(args))
        if self.outside:
            self._start_run(model)

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        # Gradients and optimizer state both exist only here, between step() and zero_grad().
        if self._probed or not self.measure_memory or model is None:
            return
        recorded = self.activations is not None
        batch = self.recorded_batch if recorded else self.hooks.batch
        if batch is None:
            return
        self._probed, self.hooks.record = True, False
        measured = self._measure(model, optimizer, batch)
        if measured is not None:
            planned, why = self._plan(batch)
            planned = self._whole_run(planned)
            self._memory = (int(state.global_step) + 1, measured, planned, why)
            self._emit(MemoryMeasured(self.run_id, int(state.global_step) + 1, measured, planned, plan_error=why))

    # --- the step peak: recorded over the first two optimizer steps ------------------------------------
    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.peak is not None and not self.peak.done and model is not None:
            self.peak.step_begin(model, optimizer, step=int(state.global_step) + 1)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.peak is not None:
            self.peak.mark("optimizer step")

    def _end_peak_step(self, state) -> None:
        if self.peak is None or not self.peak.recording:
            return
        recorded = len(self.peak.readings)
        self.peak.step_end()
        last = self.peak.done or (state.max_steps and state.global_step >= state.max_steps)
        if last or (self.peak.first_done and recorded < self.peak.steps <= len(self.peak.readings)):
            self._report_peak(last)  # after the first steps, and again after the plan's peak step

    def _report_peak(self, last: bool = True) -> None:
        """MemoryMeasured again, the measured and planned breakdowns now carrying the step peak (``last``: no
        more steps to record)."""
        peak = self.peak
        if last:
            self.peak = None
        reading = peak.reading
        if self._memory is None or reading is None:
            if peak.errors:
                log.warning("lorakit: no step peak: %s", peak.errors[0])
            return
        step, measured, planned, why = self._memory
        measured.peak, measured.peak_at, measured.timeline = reading.peak, reading.peak_at, reading.timeline
        measured.assumes = dict(measured.assumes or {}, peak_step=peak.peak_step, steps=list(peak.reading_steps))
        if reading.reserved is not None:
            measured.cuda = dict(measured.cuda or {}, max_reserved=reading.reserved)
            measured.device_overhead = reading.context
        if planned is not None and peak.batches:
            # the steady categories stay the recorded forward's; the peak is planned for the first steps' batches
            stepped, why = self._plan(None, peak.batches[:peak.steps])
            if stepped is not None:
                planned.peak, planned.peak_at = stepped.peak, stepped.peak_at
                planned.transient, planned.assumes = stepped.transient, stepped.assumes
                planned.timeline = stepped.timeline
                planned.device_overhead = stepped.device_overhead
            self._whole_run(planned)
        self._emit(MemoryMeasured(self.run_id, step, measured, planned, plan_error=why))

    def _whole_run(self, planned):
        """``planned`` carrying the run plan's peak (what ``lorakit.plan`` showed before the run), the planned
        peak of the measured steps' batches kept as ``assumes['first_steps_peak']``; as is without a run plan."""
        if planned is None or self.run_plan is None:
            return planned
        run = self.run_plan.as_planned()
        first = planned.peak
        planned.peak, planned.peak_at, planned.transient = run.peak, run.peak_at, run.transient
        planned.timeline = run.timeline or planned.timeline  # the moments of the step the run's peak is planned at
        planned.device_overhead = run.device_overhead
        planned.assumes = {**run.assumes, "first_steps_peak": first}
        return planned

    def on_step_end(self, args, state, control, **kwargs):
        self._end_peak_step(state)
        self.last_step_at = time.perf_counter()
        if self.stop is not None and self.stop.is_set():
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        dt, self._t_log = now - self._t_log, now
        tokens = self._tokens_since_log(args, state)
        step, loss = int(state.global_step), float(logs["loss"])
        self._emit(StepLogged(self.run_id, step, int(state.max_steps or self._max_steps), loss,
                              float(logs.get("learning_rate", 0.0) or 0.0), tokens / dt if dt > 0 else 0.0,
                              now - self._t0, _maybe_float(logs.get("grad_norm"))))
        if not self.outside and not math.isfinite(loss):
            raise StopRun("failed", f"non-finite loss ({loss}) at step {step}")

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            loss = float(metrics["eval_loss"])
            self._emit(EvalDone(self.run_id, int(state.global_step), loss, perplexity(loss, model)))

    def on_train_end(self, args, state, control, **kwargs):
        if self.peak is not None and self.peak.readings and not self.peak.recording:
            self._report_peak()  # a run stopped after its first step: that step's peak
        if not self.outside:
            self.close()
            return
        done = state.max_steps and state.global_step >= state.max_steps
        status = "finished" if done or not state.max_steps else "stopped"
        reason = "" if status == "finished" else f"the Trainer stopped at step {state.global_step}"
        self.end_run(status, reason)

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _trainer_counts_tokens(args) -> bool:
        return getattr(args, "include_num_input_tokens_seen", "no") == "non_padding"

    def _tokens_since_log(self, args, state) -> int:
        """Real (non-padding) tokens since the previous log: the Trainer's own count when it keeps one,
        else what the forward pre-hook counted."""
        hooked = self.hooks.take_tokens()
        if not self._trainer_counts_tokens(args):
            return hooked
        before, self._tokens_seen = self._tokens_seen, state.num_input_tokens_seen
        return self._tokens_seen - before

    def _measure(self, model, optimizer, batch):
        from lorakit.memory.breakdown import measure

        self.hooks.paused = True  # a replay forward (when nothing was recorded) is not a training batch
        try:
            return measure(model, optimizer, batch, activations=self.activations)
        except Exception as exc:
            if not self.outside:
                raise  # lorakit.train: a run whose probe fails is a failed run, with the reason
            self.errors.append(exc)  # the user's training must never die of the probe
            return None
        finally:
            self.hooks.paused = False

    def _plan(self, batch: Optional[dict], peak_batches: Optional[list] = None) -> tuple:
        """(the planner's prediction for the measured batch, or for the batches of the steps whose peak
        was recorded; None if there is none, and why)."""
        if self.config is None:
            return None, self.NO_CONFIG
        if peak_batches is None and "input_ids" not in batch:
            return None, "no training batch was seen"
        try:
            from lorakit.memory.planner import plan_for_batch, plan_for_steps

            config = self.config
            if self.outside and getattr(config, "labelled_head", False):
                config = config.replace(labelled_head=False)  # their Trainer takes the model's own loss
            if peak_batches:
                return plan_for_steps(config, peak_batches, num_labels=self.num_labels), ""
            # its shape, and padding if it has any
            return plan_for_batch(config, batch, num_labels=self.num_labels), ""
        except Exception as exc:  # noqa: BLE001 - a model the planner cannot read is no reason to fail
            why = error_line(exc)
            if self.outside:
                self.errors.append(exc)
            else:  # one line: with no logging handler (a notebook) a traceback would land in the cell's output
                log.warning("memory planner failed for %s: %s", self.config.model, why)
                log.debug("memory planner traceback", exc_info=True)
            return None, why
