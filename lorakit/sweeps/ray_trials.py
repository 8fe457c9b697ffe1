"""Sweeps on Ray: each trial is a Ray task; its events stream back to the driver, which alone writes the store.

On the worker, train() runs with ``store=False`` and one sink that sends every event to a small
:class:`Relay` actor (and learns there whether the sweep was stopped). The driver drains the relay
while it waits on the tasks and hands the events to the store's sink and the caller's sinks, in the
order each trial sent them, as for a local run. The adapter trained on a worker travels with its
RunFinished as bytes and is written into the driver's store. A trial whose worker died (kill -9, out
of memory, node lost) ends 'failed' with the steps it had sent; Ray never retries a trial.

Scheduling is Ray's: every trial asks ``resources_per_trial`` (default one CPU, and one GPU when the
cluster has GPUs), so a 4-GPU node runs four trials at once and a cluster runs as many as it holds.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from lorakit.config.run_config import ConfigError
from lorakit.run.events import RunFinished, RunStarted, emit, error_line
from lorakit.run.record import RunRecord

log = logging.getLogger("lorakit")

INSTALL = 'pip install "lorakit[ray]"'
OBJECT_STORE_BYTES = 100 * 2**20  # events and adapters are small; Ray's default takes 30 % of RAM
LOCAL_STARTS = 3  # tries to start a local Ray
POLL_S = 0.2  # how often the driver drains the relay while trials run
RESOURCE_NAMES = {"cpu": "num_cpus", "num_cpus": "num_cpus", "gpu": "num_gpus", "num_gpus": "num_gpus",
                  "memory": "memory"}


def require_ray():
    """The ray module, or an ImportError that gives the install command."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f'executor="ray" needs Ray, which is not installed here: {INSTALL}') from exc
    return ray


def connect(ray, address: Optional[str]) -> None:
    """Join the Ray this process already uses, else ``address`` ('auto', 'host:port', 'ray://host:10001'),
    else start a local Ray on this machine (no dashboard, a small object store, workers' logs kept off)."""
    if ray.is_initialized():
        return
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address is not None:
        ray.init(address=address, **kwargs)
        return
    kwargs.update(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES)
    for attempt in range(LOCAL_STARTS):
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:
            # Ray gives its node 30 s to come up; its agents can take longer on a busy 2-core machine
            if "timed out during startup" not in str(exc) or attempt == LOCAL_STARTS - 1:
                raise
            log.warning("sweep: the local Ray did not start in time (a busy machine?); starting it again")
            ray.shutdown()


def trial_options(ray, resources: Optional[dict]) -> dict:
    """Ray task options from resources_per_trial, e.g. {"cpu": 2, "gpu": 0.5} or {"num_gpus": 1, "TPU": 1}."""
    opts: dict = {}
    custom = {}
    for key, value in (resources or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError({"resources_per_trial": f"{key}: expected a number >= 0, got {value!r}"})
        name = RESOURCE_NAMES.get(str(key).lower())
        if name:
            opts[name] = value
        else:
            custom[str(key)] = value
    opts.setdefault("num_cpus", 1)
    if "num_gpus" not in opts:  # a GPU cluster trains on its GPUs unless told otherwise
        opts["num_gpus"] = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    if custom:
        opts["resources"] = custom
    opts["max_retries"] = 0  # a retried trial would train twice and send its events twice
    return opts


class Relay:
    """The actor between the workers and the driver: (trial, node, event, adapter files) in arrival order."""

    def __init__(self):
        self.items: list = []
        self.stopped = False

    def put(self, item: tuple) -> bool:
        """Keep one event; returns whether the sweep was stopped (the worker then stops after this step)."""
        self.items.append(item)
        return self.stopped

    def drain(self) -> list:
        items, self.items = self.items, []
        return items

    def stop(self) -> None:
        self.stopped = True


def run_trial(index: int, config, relay, keep_adapter: bool) -> int:
    """A Ray task: train ``config`` here, sending every event to ``relay``; the driver records it.
    Returns how many events it sent.

    The worker never calls ray.get or ray.wait: Ray lends the CPUs of a task in either to the next
    queued task, which would then train on them too. The relay's answers (was the sweep stopped?) are
    read from futures once done; calls from one worker reach the actor in the order they were made."""
    import ray

    from lorakit.training.one_run import train

    node = ray.get_runtime_context().get_node_id()
    stop = threading.Event()
    sent: list = []  # puts whose answer has not been read yet
    count = [0]

    def forward(event) -> None:
        files = None
        if isinstance(event, RunStarted):
            _title(f"ray::lorakit trial {event.run_id}")  # `ps` shows which worker trains which run
        if isinstance(event, RunFinished) and isinstance(event.record, RunRecord):
            event.record.node = node
            files = _adapter_files(event.record.adapter_path) if keep_adapter else None
        sent.append(relay.put.remote((index, node, event, files)).future())
        count[0] += 1
        answered = [f for f in sent if f.done()]
        sent[:] = [f for f in sent if not f.done()]
        try:
            if any(f.result() for f in answered):  # done futures: nothing waits
                stop.set()
        except Exception:  # the driver (and its relay) is gone: nobody is left to record this run
            stop.set()
            raise

    with tempfile.TemporaryDirectory(prefix="lorakit-trial-") as out:
        train(config, sinks=[forward], store=False, stop=stop, output_dir=out, report=False)  # the driver reports
    return count[0]  # the driver waits for this many events (the last puts may still be on their way)


def _title(text: str) -> None:
    try:
        from ray._raylet import setproctitle
    except ImportError:  # a private helper of Ray's; without it only the label in `ps` is lost
        return
    setproctitle(text)


def _adapter_files(path: Optional[str]) -> Optional[dict]:
    """{relative path: bytes} of a saved adapter folder (a few MiB at most for LoRA)."""
    if not path or not Path(path).is_dir():
        return None
    root = Path(path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class Trial:
    """The driver's view of one remote trial: a record kept up to date from its events, so a trial whose
    worker died can still be recorded with the steps it sent."""

    def __init__(self, config):
        self.record = RunRecord(config=config, created_at=time.time())
        self.heard = self.finished = False
        self.received = 0  # events delivered

    def observe(self, node: str, event) -> None:
        rec = self.record
        self.heard = True
        rec.node = node
        if isinstance(event, RunStarted):
            rec.run_id = event.run_id
            rec.trainable_params, rec.total_params = event.trainable_params, event.total_params
        elif isinstance(event, RunFinished):
            self.finished = True
            if isinstance(event.record, RunRecord):
                self.record = event.record
        else:
            rec.add(event)

    def end(self, status: str, reason: str) -> RunFinished:
        """The RunFinished the worker could not send (its process died, or the driver was interrupted)."""
        rec = self.record
        rec.status, rec.reason = status, reason
        losses = [h["loss"] for h in rec.history if math.isfinite(h["loss"])]
        rec.train_loss = sum(losses[-10:]) / len(losses[-10:]) if losses else None
        rec.wall_s = time.time() - rec.created_at
        return RunFinished(rec.run_id, status, rec, reason)


def _cancelled(reason: str) -> str:
    return f"cancelled while starting ({reason})"


def _as_stopped(event: RunFinished) -> RunFinished:
    """A cancelled trial's 'failed' end, recorded as the stop it was."""
    reason = _cancelled(event.reason)
    if isinstance(event.record, RunRecord):
        event.record.status, event.record.reason = "stopped", reason
    return dataclasses.replace(event, status="stopped", reason=reason)


def run(configs: list, store, sinks, stop: Optional[threading.Event] = None, address: Optional[str] = None,
        resources: Optional[dict] = None) -> list:
    """Train ``configs`` as Ray tasks and return their RunRecords in grid order.

    The driver (this process) records every event in ``store`` (a RunStore or None) and passes it to
    ``sinks``; ``stop`` ends the running trials after their current step and starts no queued one.
    A KeyboardInterrupt ends the sweep: its running trials are recorded 'stopped'. Trials that never
    started are left out.
    """
    from lorakit.store import StoreSink
    from lorakit.training.trackers import tracker_sinks

    trackers = tracker_sinks(configs)  # report_to's trackers are the driver's, so a cluster's trials meet there
    ray = require_ray()
    connect(ray, address)
    # max_calls=1, one trial per worker process: a trial cancelled while it imports transformers leaves that
    # process's lazy modules half-initialised ("Could not import module 'TrainerCallback'" in the next trial it
    # ran); a fresh worker costs seconds of imports against a trial's minutes (Ray's remedy for leaky libraries)
    task = ray.remote(max_calls=1)(run_trial).options(**trial_options(ray, resources))
    relay = ray.remote(num_cpus=0)(Relay).remote()
    driver = _Driver(ray, relay, [Trial(c) for c in configs], ([StoreSink(store)] if store is not None else [])
                     + list(sinks) + trackers, store)
    driver.pending = {task.remote(i, c, relay, store is not None): i for i, c in enumerate(configs)}
    try:
        driver.wait(stop)
    except KeyboardInterrupt:
        driver.interrupt()
    finally:
        ray.kill(relay)  # a worker still running finds no relay and stops after its step
    return [t.record for t in driver.trials if t.heard]


class _Driver:
    """The driver's loop: drain the relay, emit its events, settle each task as it ends."""

    def __init__(self, ray, relay, trials: list, sinks: list, store):
        self.ray, self.relay, self.trials, self.sinks, self.store = ray, relay, trials, sinks, store
        self.pending: dict = {}  # ObjectRef -> trial index
        self.backlog: list = []  # drained from the relay, not yet emitted
        # trials stop() cancelled while they loaded: Ray's interrupt can surface as another error (seen in CI:
        # "TypeError: 'Handlers' object is not callable", SIG_DFL called as a handler); still a stop, not a failure
        self.cancelled: set = set()
        self.stopping = self.interrupted = False

    def wait(self, stop: Optional[threading.Event]) -> None:
        while self.pending:
            if stop is not None and stop.is_set() and not self.stopping:
                self.stop()
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=POLL_S)
            self.deliver()  # a task's last event reached the relay before the task returned
            for ref in ready:
                self.settle(self.trials[self.pending.pop(ref)], ref)

    def stop(self) -> None:
        """Running trials end after their current step (the relay tells them); queued ones never start."""
        self.stopping = True
        self.relay.stop.remote()
        for ref, index in self.pending.items():
            if not self.trials[index].heard:
                self.ray.cancel(ref)  # queued: dropped; loading: interrupted, recorded 'stopped' if it said so
                self.cancelled.add(self.trials[index])

    def deliver(self) -> None:
        """Emit what the relay holds, in order; what a Ctrl-C interrupted stays in the backlog for interrupt()."""
        self.backlog.extend(self.ray.get(self.relay.drain.remote()))
        while self.backlog:
            index, node, event, files = self.backlog.pop(0)
            if isinstance(event, RunFinished) and event.status == "failed" and self.trials[index] in self.cancelled:
                event = _as_stopped(event)
            if isinstance(event, RunFinished) and isinstance(event.record, RunRecord):
                self.place_adapter(event.record, files)
            self.trials[index].observe(node, event)
            self.trials[index].received += 1
            self.emit(event)

    def emit(self, event) -> None:
        if not self.interrupted:
            emit(self.sinks, event)
            return
        try:  # after a Ctrl-C: what is left is recorded even if a sink (or a second Ctrl-C) interrupts again
            emit(self.sinks, event)
        except KeyboardInterrupt:
            log.debug("sweep: a sink was interrupted while the sweep was ending")

    def place_adapter(self, record: RunRecord, files: Optional[dict]) -> None:
        """The worker's adapter (bytes) into the driver's store; a path on the worker means nothing here."""
        record.adapter_path = None
        if self.store is None or not files:
            return
        folder = self.store.adapter_dir(record.run_id)
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        record.adapter_path = str(folder)

    def settle(self, trial: Trial, ref) -> None:
        """Record a trial whose task ended without its RunFinished (the worker died, or run_trial raised)."""
        errors = self.ray.exceptions
        try:
            self.await_events(trial, self.ray.get(ref))
            status, reason = "failed", "the trial ended without a result"
        except errors.TaskCancelledError:
            status, reason = "stopped", "cancelled"
        except errors.RayTaskError as exc:  # raised by run_trial itself (train() returns failures)
            status, reason = "failed", error_line(getattr(exc, "cause", None) or exc)
            if trial in self.cancelled:
                status, reason = "stopped", _cancelled(reason)
        except errors.RayError as exc:
            status = "failed"
            reason = f"the Ray worker running this trial died ({type(exc).__name__}); its steps so far are kept"
        else:
            if not trial.heard:
                return  # the sweep was stopped while this trial was queued: it never started
        if trial.finished or (status == "stopped" and not trial.heard):
            return
        trial.heard = True
        self.finish(trial, status, reason)

    def await_events(self, trial: Trial, sent: int, patience_s: float = 60.0) -> None:
        """The trial's task has returned; its last events may still be on their way to the relay."""
        give_up = time.monotonic() + patience_s
        while trial.received < sent and time.monotonic() < give_up:
            time.sleep(POLL_S / 4)
            self.deliver()

    def finish(self, trial: Trial, status: str, reason: str) -> None:
        event = trial.end(status, reason)
        trial.finished = True
        self.emit(event)

    def interrupt(self) -> None:
        """Ctrl-C in the driver: stop the workers, keep what they sent, leave no trial 'running'."""
        self.interrupted = True
        self.relay.stop.remote()
        for ref in self.pending:
            self.ray.cancel(ref)  # a queued trial never starts; a running one gets a KeyboardInterrupt
        try:
            self.deliver()
        except Exception:  # noqa: BLE001 - the steps so far are kept either way
            log.debug("sweep: could not drain the relay after an interrupt", exc_info=True)
        for trial in self.trials:
            if trial.heard and not trial.finished:
                self.finish(trial, "stopped", "the sweep was interrupted (KeyboardInterrupt) before this trial ended")
