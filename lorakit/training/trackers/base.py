"""``TrackerSink``: the part every tracker shares: the events of the runs that asked for it, turned
into parameters, tags and metrics (``metrics``), handed to the tracker's own ``open`` / ``log`` /
``close``. Never raises: a tracker's error is logged and kept in ``errors``; training goes on."""
from __future__ import annotations

import logging
import threading
from typing import Any

from lorakit.training.trackers import metrics

_log = logging.getLogger("lorakit")


class TrackerSink:
    name = ""  # the report_to name

    def __init__(self):
        self.errors: list = []
        self.runs: dict = {}  # lorakit run id -> the tracker's handle
        self.last_step: dict = {}  # lorakit run id -> the last step logged (where the final figures go)
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        from lorakit.run import events as ev

        try:
            if isinstance(event, ev.RunStarted):
                cfg = event.config
                if isinstance(cfg, dict):  # as StoreSink: an event may carry the config as its dict
                    from lorakit.config.run_config import RunConfig

                    cfg = RunConfig.from_dict(cfg)
                if self.name in cfg.report_to:
                    with self._lock:
                        self.runs[event.run_id] = self.open(event.run_id, cfg, event.resumed_at)
                        self.last_step[event.run_id] = event.resumed_at
                return
            handle = self.runs.get(event.run_id)
            if handle is None:
                return
            if isinstance(event, ev.StepLogged):
                self.last_step[event.run_id] = event.step
                self.log(handle, metrics.step(event), event.step)
            elif isinstance(event, ev.EvalDone):
                self.log(handle, metrics.evaluation(event), event.step)
            elif isinstance(event, ev.MemoryMeasured):
                self.log(handle, metrics.memory(event), event.step)
            elif isinstance(event, ev.RunFinished):
                with self._lock:
                    self.runs.pop(event.run_id, None)
                step = self.last_step.pop(event.run_id, 0)
                self.log(handle, metrics.final(event.record), step)
                self.close(handle, event.record, event.status)
        except Exception as exc:  # noqa: BLE001 - a tracker must not kill training
            self.errors.append(exc)
            _log.exception("%s sink failed on %s", self.name, type(event).__name__)

    # the tracker's own part
    def open(self, run_id: str, cfg, resumed_at: int = 0) -> Any:
        """The tracker's run for lorakit's ``run_id``; ``resumed_at`` > 0: the same lorakit run goes on from that
        checkpoint step (``lorakit.resume``), so the tracker continues the run it already has."""
        raise NotImplementedError

    def log(self, handle, values: dict, step: int) -> None:
        raise NotImplementedError

    def close(self, handle, record, status: str) -> None:
        raise NotImplementedError
