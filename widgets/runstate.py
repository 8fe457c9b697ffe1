"""LiveRun: what the live panels show about one run, folded from lorakit's events.

Pure state, no widgets: the Studio's controller keeps one per run, and ``LiveCallback`` keeps one
for a user's own ``Trainer``. ``apply(event)`` is called from the training thread; panels read the
fields when they redraw.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from lorakit.memory import MemoryBreakdown
from lorakit.run import EvalDone, MemoryMeasured, PhaseStarted, RunFinished, RunStarted, StepLogged


@dataclass
class LiveRun:
    """One run as the panels see it."""
    label: str = "run"
    max_steps: int = 0
    config: Any = None
    planned: Optional[MemoryBreakdown] = None
    # what ``planned`` plans: "config" (before training: the form's batch_size x seq_len) or
    # "batch" (the batch the first step actually trained, from MemoryMeasured.planned)
    plan_scope: str = "config"
    plan_error: str = ""  # why there is no plan for the trained batch
    run_id: str = ""
    status: str = "starting"  # starting | running | finished | stopped | failed
    reason: str = ""
    steps: list = field(default_factory=list)  # [(step, loss)]
    evals: list = field(default_factory=list)  # [(step, eval_loss)]
    tokens_per_s: Optional[float] = None
    elapsed_s: float = 0.0
    memory: Optional[MemoryBreakdown] = None
    trainable_params: int = 0
    total_params: int = 0
    record: Any = None
    stopping: bool = False  # Stop was pressed; the run ends after the current step
    phase: str = ""  # what the run does after its last step (PhaseStarted.text), "" while it trains
    holds_engine: bool = False  # the Studio's run holds the engine lock until its first step
    eval_s_planned: Optional[float] = None  # the evaluation's planned seconds (lorakit.plan_time), for the ETA
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def for_config(cls, cfg, planned: Optional[MemoryBreakdown] = None) -> "LiveRun":
        return cls(label=cfg.label, max_steps=cfg.max_steps, config=cfg, planned=planned)

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    @property
    def last_step(self) -> int:
        return self.steps[-1][0] if self.steps else 0

    @property
    def eta_s(self) -> Optional[float]:
        """Seconds left while it trains: the steps left at the mean step time so far plus the planned
        evaluation (``lorakit.memory.remaining_seconds``); None before the first step or once it is done."""
        if self.done or not self.steps or self.phase:
            return None
        from lorakit.memory import remaining_seconds

        return remaining_seconds(self.last_step, self.max_steps, self.elapsed_s, self.eval_s_planned or 0.0)

    def apply(self, event) -> None:
        """Fold one lorakit event into the state."""
        with self.lock:
            if isinstance(event, RunStarted):
                self.run_id, self.status = event.run_id, "running"
                self.trainable_params, self.total_params = event.trainable_params, event.total_params
                if event.planned_memory is not None:
                    self.planned = event.planned_memory
            elif isinstance(event, StepLogged):
                self.status = "running"
                self.run_id = self.run_id or event.run_id
                self.steps.append((event.step, event.loss))
                self.max_steps = event.max_steps or self.max_steps
                self.tokens_per_s, self.elapsed_s = event.tokens_per_s, event.elapsed_s
            elif isinstance(event, EvalDone):
                self.evals.append((event.step, event.eval_loss))
            elif isinstance(event, PhaseStarted):
                self.phase = event.text
            elif isinstance(event, MemoryMeasured):
                self.memory = event.measured
                if event.planned is not None:
                    self.planned, self.plan_scope, self.plan_error = event.planned, "batch", ""
                else:
                    self.plan_error = event.plan_error or "none came with the measurement"
            elif isinstance(event, RunFinished):
                self.status, self.reason, self.record = event.status, event.reason or "", event.record
                rec = event.record
                if rec is not None and getattr(rec, "memory", None) is not None and self.memory is None:
                    self.memory = rec.memory

    # --- what the status line says ------------------------------------------------------------
    def message(self) -> tuple[str, str]:
        """(level, text) for the status line: level is info, running, ok, warn or error."""
        with self.lock:
            return self._message()

    def _message(self) -> tuple[str, str]:
        name = self.label
        if self.status in ("starting", "running"):
            if self.status == "starting":
                text = f"{name}: loading the model and preparing data…"
            elif not self.steps:
                text = f"{name}: training started, waiting for the first step…"
            else:
                step, loss = self.steps[-1]
                speed = f" · {self.tokens_per_s:,.0f} tokens/s" if self.tokens_per_s else ""
                text = f"{name}: step {step}/{self.max_steps} · loss {_num(loss)}{speed}"
                eta = self.eta_s
                if eta is not None:
                    from lorakit.memory import about

                    text += f" · {about(eta)} left"
                if self.phase:  # after the last step: what the run waits for (the engine's PhaseStarted)
                    text = f"{name}: trained {step}/{self.max_steps} steps · {self.phase}…"
            if self.stopping:
                return "warn", text + " · stopping after the current step…"
            return "running", text
        rec = self.record
        if self.status == "finished":
            parts = [f"{name} finished"]
            wall = getattr(rec, "wall_s", None) or (self.elapsed_s if rec is None else None)
            if wall:
                parts[0] += f" in {wall:.1f} s"
            if rec is None and self.steps:
                parts.append(f"{len(self.steps)} steps · last loss {_num(self.steps[-1][1])}")
            for label, attr in (("train loss", "train_loss"), ("eval loss", "eval_loss")):
                v = getattr(rec, attr, None)
                if v is not None:
                    parts.append(f"{label} {_num(v)}")
            metric = getattr(rec, "task_metric", None)
            if metric is not None:
                before = getattr(rec, "task_metric_before", None)
                extra = f" (before training {_num(before, 3)})" if before is not None else ""
                parts.append(f"task metric {_num(metric, 3)}{extra}")
            timing = rec.timing_text(", ") if hasattr(rec, "timing_text") else ""
            if timing:  # where the time went
                parts.append(f"time: {timing}")
            return "ok", " · ".join(parts)
        if self.status == "stopped":
            n = len(self.steps)
            if rec is None:  # an outside run (LiveCallback): no run store, say why it stopped instead
                return "warn", f"{name} stopped after step {self.last_step}: {self.reason or 'stopped'}"
            if not self.steps:
                return "warn", (f"{name} stopped before its first step: nothing was trained (recorded in the "
                                "run store as stopped, with no history)")
            return "warn", (f"{name} stopped after step {self.last_step} of {self.max_steps}; its history "
                            f"({n} step{'s' if n != 1 else ''}) is kept in the run store")
        if self.status == "failed":
            return "error", f"{name} failed: {self.reason or 'unknown reason'}"
        return "info", name


def _num(x, digits: int = 4) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{f:.{digits}g}" if math.isfinite(f) else str(f)
