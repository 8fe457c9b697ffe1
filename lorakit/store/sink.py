"""``StoreSink``: an events sink that records a run in a RunStore while it trains."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Optional

from lorakit.run.record import STATUSES, RunRecord
from lorakit.store.errors import StoreError
from lorakit.store.runs import RunStore

_log = logging.getLogger("lorakit")
FLUSH_EVERY = 5  # steps buffered between writes (a run's last step, an eval and its end flush at once)


class StoreSink:
    """An events sink that records a run in a :class:`RunStore` as it happens.

    RunStarted inserts the run as 'running'; StepLogged is buffered and written every
    ``flush_every`` steps; EvalDone and MemoryMeasured are written at once; RunFinished saves the
    full record in one transaction. A sink never raises: a store error is logged and kept in
    ``errors``, and training goes on.
    """

    def __init__(self, store: RunStore, flush_every: Optional[int] = None,
                 on_failure: Optional[Callable[[str], None]] = None):
        if store.read_only:  # before a run starts, not at its first write
            raise StoreError(f"this store is read-only: {store.path} ({store.read_only_reason}); pass another "
                             "store to train (store=..., --store or $LORAKIT_STORE)")
        self.store = store
        self.flush_every = max(1, int(flush_every or FLUSH_EVERY))
        self.errors: list[BaseException] = []
        self.failure = ""  # the first write that failed (a full disk, an I/O error), in words; "" while all is well
        self.final_saved = False  # whether the run's final record reached the store
        self.on_failure = on_failure  # train() passes one that ends the run after the current step
        self._buffer: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        from lorakit.run import events as ev

        try:
            if isinstance(event, ev.RunStarted):
                self._started(event)
            elif isinstance(event, ev.StepLogged):
                self._step(event)
            elif isinstance(event, ev.EvalDone):
                self.flush(event.run_id)
                self.store.append_evals(event.run_id, [{"step": event.step, "eval_loss": event.eval_loss,
                                                        "perplexity": event.perplexity,
                                                        "task_metric": event.task_metric}])
            elif isinstance(event, ev.MemoryMeasured):
                self.store.set_memory(event.run_id, measured=event.measured, planned=event.planned)
            elif isinstance(event, ev.RunFinished):
                self._finished(event)
        except StoreError as e:  # a full disk, an I/O error: one line, the run ends with this reason
            self.errors.append(e)
            if not self.failure:
                self.failure = f"the run store could not be written ({e})"
                _log.error("%s", self.failure)
                if self.on_failure is not None:
                    self.on_failure(self.failure)
        except Exception as e:  # noqa: BLE001 - a sink must not kill training
            self.errors.append(e)
            _log.exception("run store sink failed on %s", type(event).__name__)

    def _started(self, event) -> None:
        from lorakit.config.run_config import RunConfig

        if getattr(event, "resumed_at", 0):  # lorakit.resume saved the run (history up to its checkpoint)
            with self._lock:
                self._buffer[event.run_id] = []
            return
        cfg = event.config
        if isinstance(cfg, dict):
            cfg = RunConfig.from_dict(cfg)
        record = RunRecord(config=cfg, run_id=event.run_id, status="running", created_at=time.time(),
                           trainable_params=int(event.trainable_params or 0),
                           total_params=int(event.total_params or 0), planned_memory=event.planned_memory)
        with self._lock:
            self._buffer[event.run_id] = []
        self.store.save(record)

    def _step(self, event) -> None:
        if self.failure:  # the store refused a write: the final save writes the whole history at once
            with self._lock:
                self._buffer.setdefault(event.run_id, [])
            return
        step = {"step": event.step, "loss": event.loss, "learning_rate": event.learning_rate,
                "tokens_per_s": event.tokens_per_s, "elapsed_s": event.elapsed_s, "grad_norm": event.grad_norm}
        with self._lock:
            buf = self._buffer.setdefault(event.run_id, [])
            buf.append(step)
            full = len(buf) >= self.flush_every or event.step >= event.max_steps
        if full:  # the last step flushes at once
            self.flush(event.run_id)

    def _finished(self, event) -> None:
        record = event.record
        if isinstance(record, RunRecord):
            with self._lock:
                self._buffer.pop(event.run_id, None)  # the record's history supersedes the buffer
            if record.status != event.status and event.status in STATUSES:
                record = dataclasses.replace(record, status=event.status, reason=record.reason or event.reason)
            try:
                self.store.save(record)
            except StoreError:
                if not self.store.make_room():  # a full WAL holds old copies of pages: fold it in and retry
                    raise
                self.store.save(record)
            self.final_saved = True
        else:
            self.flush(event.run_id)
            self.store.set_status(event.run_id, event.status, event.reason)

    def flush(self, run_id: Optional[str] = None) -> None:
        """Write buffered steps now (of one run, or of all)."""
        with self._lock:
            ids = [run_id] if run_id is not None else list(self._buffer)
            pending = {rid: self._buffer.get(rid, []) for rid in ids}
            for rid in ids:
                if rid in self._buffer:
                    self._buffer[rid] = []
        for rid, steps in pending.items():
            if steps:
                try:
                    self.store.append_steps(rid, steps)
                except BaseException:
                    with self._lock:  # keep them for the next try
                        self._buffer[rid] = steps + self._buffer.get(rid, [])
                    raise
