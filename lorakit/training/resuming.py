"""``resume(run_id)``: a stopped, failed or killed run goes on from its newest checkpoint as the same run.

The Trainer's ``resume_from_checkpoint`` restores the weights (the adapter, or every weight for full
fine-tuning), the optimizer, the scheduler, the RNG states and the data position; lorakit keeps the run's
id and record: the history up to the checkpoint (steps a killed run logged after it are trained again and
replaced), the memory its first steps measured, and the base's "before" result (the store's cache).
"""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable, Iterable, Optional

from lorakit.run.record import RunRecord

RESUMABLE = ("stopped", "failed")


class ResumeError(ValueError):
    """A run that cannot be resumed, with the reason in words."""


@dataclasses.dataclass
class Resumption:
    """What a resumed run starts from."""
    record: RunRecord
    """The stored record, its history and evals cut at the checkpoint's step, status 'running'."""
    checkpoint: Path
    """The Trainer's checkpoint folder to resume from."""
    prior_s: float = 0.0
    """The run's elapsed seconds at the checkpoint's step (elapsed_s and wall_s go on from there)."""
    prior_train_s: float = 0.0
    """Optimizer-step seconds of the earlier sessions up to the checkpoint (an estimate when it was killed)."""
    had_before: bool = False
    """The run had its base's "before" result already (the store's cache gives it back, not computed again)."""

    @property
    def step(self) -> int:
        from lorakit.store.checkpoints import step_of

        return step_of(self.checkpoint)


def resume_point(record: RunRecord, store, max_steps: Optional[int] = None) -> Path:
    """The checkpoint ``record`` would resume from in ``store``; ResumeError saying why there is none."""
    from lorakit.store.checkpoints import folder_of, latest

    rid = record.run_id
    steps = max_steps if max_steps is not None else record.config.max_steps
    if record.status == "running":
        raise ResumeError(f"run {rid} is still running; stop it first (a killed run is marked stopped "
                          "when the store is next opened)")
    if record.status == "finished" and steps <= record.steps_done:
        raise ResumeError(f"run {rid} finished all its {record.steps_done} steps; give max_steps above that "
                          "to train it further")
    if record.status not in (*RESUMABLE, "finished"):
        raise ResumeError(f"run {rid} has status {record.status!r}; only {', '.join(RESUMABLE)} runs resume")
    checkpoint = latest(folder_of(store.adapter_dir(rid)))
    if checkpoint is None:
        why = ("checkpoint_every=0" if not record.config.checkpoint_every
               else f"it ended before step {record.config.checkpoint_every}, its first checkpoint")
        raise ResumeError(f"run {rid} has no checkpoint to resume from ({why}); train it again instead")
    return checkpoint


def why_not(record: RunRecord, store) -> str:
    """'' when ``record`` can be resumed as it is (a stopped or failed run with a checkpoint), else why not."""
    if record.status == "finished":
        return f"run {record.run_id} finished; lorakit.resume(run_id, max_steps=...) trains it further"
    try:
        resume_point(record, store)
    except ResumeError as exc:
        return str(exc)
    return ""


def prepare(record: RunRecord, checkpoint: Path, max_steps: Optional[int]) -> Resumption:
    """The record cut back to the checkpoint's step, as the resumed run starts from it."""
    from lorakit.store.checkpoints import step_of

    step = step_of(checkpoint)
    cfg = record.config if max_steps is None else record.config.replace(max_steps=max_steps)
    if cfg.max_steps <= step:
        raise ResumeError(f"max_steps must be above the checkpoint's step {step} to train further; got {cfg.max_steps}")
    kept = [h for h in record.history if h["step"] <= step]
    prior_s = float(kept[-1].get("elapsed_s") or 0.0) if kept else 0.0
    # a stopped run's train_s covers its steps; a killed one has none: its elapsed time stands in
    share = step / record.steps_done if record.steps_done else 0.0
    prior_train = (record.train_s or prior_s) * min(1.0, share) if record.train_s else prior_s
    record = dataclasses.replace(
        record, config=cfg, status="running", reason="", history=kept,
        evals=[e for e in record.evals if e["step"] <= step], resumed_at=[*record.resumed_at, step],
        task_metric=None, train_loss=None, samples=[])
    return Resumption(record, checkpoint, prior_s, prior_train, record.task_metric_before is not None)


def resume(run_id: str, max_steps: Optional[int] = None, store=None, sinks: Iterable[Callable] = (),
           stop: Optional[threading.Event] = None, device: Optional[str] = None) -> RunRecord:
    """Continue the stored run ``run_id`` from its newest checkpoint: the same run (id, history extended,
    status updated), trained exactly as if it had never stopped. Returns the RunRecord, as ``train`` does.

    max_steps: train to this many steps instead of the run's own (a finished run trains further; the
    linear decay is then re-planned to the new end). store: the run's store (None: the default one).
    sinks, stop, device: as for ``lorakit.train``. Raises ResumeError when the run cannot be resumed.
    """
    from lorakit.store import open_store
    from lorakit.training.one_run import run_job

    store, opened_here = open_store(store, required=True)  # opening marks a killed run 'stopped'
    try:
        record = store.load(run_id)
        resumption = prepare(record, resume_point(record, store, max_steps), max_steps)
        store.save(resumption.record)  # 'running', this process its owner; later steps are the resumed ones
        return run_job(resumption.record.config, sinks, store, stop, device, resume=resumption)
    finally:
        if opened_here:
            store.close()
