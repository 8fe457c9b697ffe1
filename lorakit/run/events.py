"""Events a training run emits. Sinks (store, CLI bar, widgets) consume them; training never touches a UI.

A sink is any callable ``sink(event)``. Sinks must be quick and must not raise; the engine
catches and logs a sink's exception so one broken sink never kills a run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from lorakit.memory.breakdown import MemoryBreakdown


def error_line(exc: BaseException) -> str:
    """An exception as one readable line for a status line or a chart note: a ``ConfigError`` gives
    its problems ("model: ...; rank: ..."), anything else its type and first line."""
    problems = getattr(exc, "problems", None)
    if isinstance(problems, dict) and problems:
        return "; ".join(f"{k}: {v}" for k, v in problems.items())
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass(frozen=True)
class RunStarted:
    """The model is loaded and adapters attached; training is about to start."""
    run_id: str
    config: Any
    trainable_params: int
    total_params: int
    planned_memory: Optional[MemoryBreakdown] = None
    resumed_at: int = 0  # the checkpoint's step when a stopped run goes on (lorakit.resume); 0: a new run


@dataclass(frozen=True)
class StepLogged:
    """One optimizer step finished."""
    run_id: str
    step: int
    max_steps: int
    loss: float
    learning_rate: float
    tokens_per_s: float
    elapsed_s: float
    grad_norm: Optional[float] = None


@dataclass(frozen=True)
class EvalDone:
    """An evaluation pass finished."""
    run_id: str
    step: int
    eval_loss: float
    perplexity: Optional[float]  # None for a classifier (its loss is over labels, not a vocabulary)
    task_metric: Optional[float] = None


@dataclass(frozen=True)
class MemoryMeasured:
    """The measured memory breakdown (after the first optimizer step), with the planner's prediction.

    ``planned`` is None when the planner could not predict this run; ``plan_error`` then says why
    in one line (e.g. "ValueError: ..."), for a UI to show next to the measured figures."""
    run_id: str
    step: int
    measured: MemoryBreakdown
    planned: Optional[MemoryBreakdown] = None
    plan_error: str = ""


@dataclass(frozen=True)
class RunFinished:
    """The run ended: status is 'finished', 'stopped' or 'failed'; record is the full RunRecord."""
    run_id: str
    status: str
    record: Any
    reason: str = ""


@dataclass(frozen=True)
class PhaseStarted:
    """The run entered a phase that logs no steps, so a status line can say what it waits for (after the
    last step: the eval loss, then generating and scoring answers, which can take longer than training)."""
    run_id: str
    phase: str  # "evaluating" (the eval loss) or "answering" (the task metric's answers, generated and scored)
    text: str  # what happens, for a status line: "evaluating: generating 32 answers"
    count: int = 0  # examples this phase goes through


Event = Any  # one of the dataclasses above


def emit(sinks: list[Callable[[Event], None]], event: Event, errors: Optional[list] = None) -> None:
    """Send ``event`` to every sink; a failing sink is never fatal: its exception is logged, or kept
    in ``errors`` when given (where a logged traceback would land in someone's notebook)."""
    for sink in sinks:
        try:
            sink(event)
        except Exception as exc:  # noqa: BLE001 - a sink must not kill training
            if errors is not None:
                errors.append(exc)
            else:
                logging.getLogger("lorakit").exception("sink %r failed on %s", sink, type(event).__name__)
