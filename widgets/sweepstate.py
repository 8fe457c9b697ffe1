"""The sweep's state, no threads and no widgets: the axes the Sweep panel offers, one trial of the grid as
its table shows it (folded from lorakit's events like ``runstate.LiveRun``), and axis values from text."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from lorakit.config import INITS, METHODS, PRESETS, QUANTS, RunConfig
from lorakit.run import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged

from .form import RANKS

# The axes the panel offers: name -> the values to pick from, or None for numbers typed as "1e-4, 3e-4".
AXES: dict = {
    "rank": RANKS, "alpha": None, "quant": QUANTS, "method": METHODS, "target_modules": tuple(PRESETS),
    "learning_rate": None, "use_dora": (False, True), "use_rslora": (False, True), "init": INITS,
    "loraplus_lr_ratio": None,
}
DONE = ("finished", "stopped", "failed", "not started")


@dataclass
class Trial:
    """One combination of the grid, as the Sweep panel's table shows it."""
    changes: dict
    config: Optional[RunConfig] = None  # None: the combination is invalid
    error: str = ""  # why it is invalid, "field: message; ..."
    planned: Any = None  # the planner's MemoryBreakdown for the form's batch_size x seq_len
    plan_error: str = ""
    fit: Any = None  # lorakit.memory.fit.Fit on ``fit_device``
    fit_device: str = ""
    # invalid | planned | queued | loading | running | finished | stopped | failed | not started
    status: str = "planned"
    stopping: bool = False
    run_id: str = ""
    steps: list = field(default_factory=list)  # [(step, loss)]
    max_steps: int = 0
    tokens_per_s: Optional[float] = None
    memory: Any = None  # the measured MemoryBreakdown
    eval_loss: Optional[float] = None
    reason: str = ""

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={show(v)}" for k, v in self.changes.items()) or "the form's run"

    @property
    def loss(self) -> Optional[float]:
        return self.steps[-1][1] if self.steps else None

    def apply(self, event) -> None:
        """Fold one lorakit event of this trial in (the caller holds the sweep's lock)."""
        self.run_id = self.run_id or event.run_id
        if isinstance(event, RunStarted):
            self.status = "running"
        elif isinstance(event, StepLogged):
            self.status = "running"
            self.steps.append((event.step, event.loss))
            self.max_steps, self.tokens_per_s = event.max_steps or self.max_steps, event.tokens_per_s
        elif isinstance(event, MemoryMeasured):
            self.memory = event.measured
        elif isinstance(event, EvalDone):
            self.eval_loss = event.eval_loss
        elif isinstance(event, RunFinished):
            self.status, self.reason, self.stopping = event.status, event.reason or "", False
            rec = event.record
            if self.memory is None and getattr(rec, "memory", None) is not None:
                self.memory = rec.memory


def parse_values(values) -> list:
    """An axis's values: a picked sequence as it is, text as numbers ("1e-4, 3e-4"); ValueError names a bad one."""
    if not isinstance(values, str):
        return list(dict.fromkeys(values or ()))
    out = []
    for token in values.replace(";", ",").replace(" ", ",").split(","):
        if not token:
            continue
        try:
            number = int(token) if token.lstrip("+-").isdigit() else float(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a number (give numbers separated by commas)") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{token!r} is not a finite number")
        out.append(number)
    return list(dict.fromkeys(out))


def show(value) -> str:
    """A value as the table and the axis pickers say it."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "+".join(map(str, value))
    return str(value)
