"""RunRecord: everything known about one run, finished or not. The store persists these."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Optional

from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown

STATUSES = ("running", "finished", "stopped", "failed")
TIMINGS = (("load", "load_s"), ("train", "train_s"), ("eval loss", "eval_s"), ("task metric", "task_eval_s"),
           ("samples", "samples_s"))  # (what a person reads, the RunRecord field), in the run's order


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class RunRecord:
    """One run: its config, what happened (history, evals), what it cost and what it achieved."""
    config: RunConfig
    run_id: str = field(default_factory=new_run_id)
    status: str = "running"
    reason: str = ""  # why a run stopped or failed
    created_at: float = 0.0  # unix time
    device: str = "cpu"
    task: str = ""  # what the model trained for: 'causal-lm', 'classification', 'seq2seq' ('' : not loaded yet)
    family: str = ""  # the model's family: 'decoder', 'encoder', 'encoder-decoder'
    node: str = ""  # the Ray node that trained it (a sweep with executor="ray"); "" for a run in this process
    history: list = field(default_factory=list)  # [{step, loss, learning_rate, tokens_per_s, elapsed_s, grad_norm}]
    evals: list = field(default_factory=list)  # [{step, eval_loss, perplexity, task_metric}]
    memory: Optional[MemoryBreakdown] = None  # measured after the first optimizer step
    planned_memory: Optional[MemoryBreakdown] = None  # plan_memory for the same settings
    load_peak: Optional[int] = None  # bytes the allocator held at loading's highest (CUDA; None: not measured)
    trainable_params: int = 0
    total_params: int = 0
    head_params: int = 0  # of trainable_params: a classifier's new head, trained in full (0: no such head)
    train_loss: Optional[float] = None  # mean loss over the last 10 logged steps
    eval_loss: Optional[float] = None
    perplexity: Optional[float] = None
    task_metric: Optional[float] = None  # the task's own score on held-out examples (after training)
    task_metric_before: Optional[float] = None
    metric: str = ""  # the task metric's name, e.g. 'exact match' or 'accuracy (and macro-F1)' ('' : user data)
    macro_f1: Optional[float] = None  # classification: macro-averaged F1 over the labels, after training
    macro_f1_before: Optional[float] = None
    token_f1: Optional[float] = None  # seq2seq: mean token overlap (SQuAD F1) of the answers, after training
    token_f1_before: Optional[float] = None
    tokens_per_s: Optional[float] = None  # real (non-padding) tokens per second of training
    wall_s: Optional[float] = None
    # Where the time went (seconds): loading the model and data, the optimizer steps (without the
    # loss evaluations), the eval-loss passes, the task metric's generations (after training, and before
    # unless the store had the base's result), and the sample generations not taken from those.
    load_s: Optional[float] = None
    train_s: Optional[float] = None
    eval_s: Optional[float] = None
    task_eval_s: Optional[float] = None
    samples_s: Optional[float] = None
    before_cached: bool = False  # task_metric_before and the 'before' samples came from the store's cache
    time_to_first_loss_s: Optional[float] = None
    adapter_path: Optional[str] = None  # the run's saved result: its LoRA adapter, or a full run's kept model
    adapter_bytes: Optional[int] = None
    weights_bytes: Optional[int] = None  # disk a full fine-tuning's kept model takes (config.keep_weights)
    checkpoint_step: Optional[int] = None  # the step of the newest resumable checkpoint (None: none kept)
    checkpoint_bytes: Optional[int] = None  # disk the kept checkpoints take (the adapter's or the full state)
    resumed_at: list = field(default_factory=list)  # the checkpoint steps this run was resumed from, in order
    samples: list = field(default_factory=list)  # [{prompt, reference, before, after}]
    data_stats: dict = field(default_factory=dict)  # {n_train, n_eval, truncated, ...}

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / self.total_params if self.total_params else 0.0

    @property
    def steps_done(self) -> int:
        return self.history[-1]["step"] if self.history else 0

    def add(self, event) -> None:
        """Take a step, an eval pass or a memory measurement into the record, as the run sends them (here
        or on a sweep's remote worker)."""
        from lorakit.run.events import EvalDone, MemoryMeasured, StepLogged

        if isinstance(event, StepLogged):
            self.history.append(dict(step=event.step, loss=event.loss, learning_rate=event.learning_rate,
                                     tokens_per_s=event.tokens_per_s, elapsed_s=event.elapsed_s,
                                     grad_norm=event.grad_norm))
            if self.time_to_first_loss_s is None:
                self.time_to_first_loss_s = event.elapsed_s
        elif isinstance(event, EvalDone):
            self.evals.append(dict(step=event.step, eval_loss=event.eval_loss, perplexity=event.perplexity,
                                   task_metric=event.task_metric))
            self.eval_loss, self.perplexity = event.eval_loss, event.perplexity
        elif isinstance(event, MemoryMeasured):
            self.memory, self.planned_memory = event.measured, event.planned

    def timing_text(self, sep: str = " · ") -> str:
        """Where the run's time went, e.g. ``load 2.1 s · train 61.0 s · eval loss 1.3 s · task metric
        9.8 s (before: cached) · samples 0.0 s``; empty when nothing was timed."""
        parts = []
        for label, attr in TIMINGS:
            v = getattr(self, attr)
            if v is not None:
                cached = " (before: cached)" if attr == "task_eval_s" and self.before_cached else ""
                parts.append(f"{label} {v:.1f} s{cached}")
        return sep.join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["memory"] = self.memory.as_dict() if self.memory else None
        d["planned_memory"] = self.planned_memory.as_dict() if self.planned_memory else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        d = dict(d)
        d["config"] = RunConfig.from_dict(d["config"])
        for k in ("memory", "planned_memory"):
            if d.get(k):
                d[k] = MemoryBreakdown.from_dict(d[k])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})
