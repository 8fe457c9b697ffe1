"""The Studio's run: Train starts it on a thread, Stop ends it after the current step, and its events
(or a ``LiveCallback``'s, from a user's own Trainer) reach the panels.

``RunControl`` is a part of ``StudioController`` (a mixin: it shares the controller's form, lock,
status line and notifications). Events are folded into a ``LiveRun`` on the training thread and
announced on ``run`` (a fresh LiveRun) and ``event`` (each event); nothing here draws.
"""
from __future__ import annotations

import logging
import threading
from typing import Optional

import lorakit
from lorakit.common import warm
from lorakit.config import RunConfig
from lorakit.run import RunFinished, RunStarted, StepLogged

from .jobs import error_text
from .runstate import LiveRun

log = logging.getLogger("lorakit.widgets")
CANNOT_TRAIN = "Cannot train: fix"


def cannot_train(problems: dict) -> str:
    """The status line of a refused Train: how many fields, which, and the first one's message."""
    return (f"{CANNOT_TRAIN} {len(problems)} field(s) ({', '.join(problems)}). "
            f"{next(iter(problems.values()))}")


class RunControl:
    """Train / Stop / outside events, for ``StudioController``."""

    def _init_run(self) -> None:
        self.live: Optional[LiveRun] = None  # the current (or last) run
        self.previous: Optional[LiveRun] = None  # the run before it, for side-by-side memory
        self._thread: Optional[threading.Thread] = None
        self._active = False  # from the Train press until the run's thread has ended
        self._stop: Optional[threading.Event] = None

    @property
    def running(self) -> bool:
        """True from the Train press until the run's thread has ended."""
        return self._active

    @property
    def estimate_text(self) -> str:
        """Beside Train: the run's ETA while it trains ('about 3 min left'), else how long the form's run will
        take ('about 4 min (training ..., evaluation ...)'); '' while a run starts or evaluates."""
        live = self.live
        if self._active and live is not None:
            eta = live.eta_s
            if eta is None:
                return ""
            from lorakit.memory import about

            return f"{about(eta)} left"
        return self.time_text

    def train(self) -> bool:
        """Start a run in a background thread; False (with a message) when refused."""
        if self._refuse_second_run():
            return False
        self.check_data()  # a data combination that cannot train is a problem now, not a failed run
        with self._lock:
            if self._refuse_second_run():
                return False
            problems = self._validate()
            if problems:
                self._set_status("error", cannot_train(problems))
                return False
            cfg = self.config()
            self.previous = self._previous_candidate(cfg.model)
            self.live = LiveRun.for_config(cfg, self._plan_cache.get(cfg))
            timed = self._time_cache.get(cfg)
            self.live.eval_s_planned = timed.eval_s if timed is not None else None
            self._stop = threading.Event()
            self._active = True
            self._thread = threading.Thread(target=self._run, args=(cfg, self._stop, self.live),
                                            name="lorakit-studio-run", daemon=True)
            self._set_status("running", f"{cfg.label}: loading the model and preparing data…")
            self._notify("run", self.live)
            self._thread.start()
            return True

    def resumable(self, run_id: str) -> str:
        """'' when the stored run ``run_id`` can be resumed (stopped or failed, with a checkpoint), else why not."""
        from lorakit.training import why_not

        if self.store is None:
            return "there is no run store, so no checkpoints"
        if self.running:
            return "a run is going; resume when it has ended"
        try:
            return why_not(self.store.load(run_id), self.store)
        except Exception as exc:  # noqa: BLE001 - a damaged record: say it
            return error_text(exc)

    def resume_run(self, run_id: str) -> bool:
        """Continue the stored run ``run_id`` from its newest checkpoint on a thread, as the same run (its
        history so far shown at once); False (with a message) when refused. Stop works as for Train."""
        from lorakit.store import step_of
        from lorakit.training import resume_point

        if self._refuse_second_run():
            return False
        why = self.resumable(run_id)
        if why:
            self._set_status("warn", f"Cannot resume: {why}")
            return False
        with self._lock:
            if self._refuse_second_run():
                return False
            rec = self.store.load(run_id)
            step = step_of(resume_point(rec, self.store))
            self.previous = self._previous_candidate(rec.config.model)
            live = self.live = LiveRun.for_config(rec.config, rec.planned_memory)
            live.run_id, live.memory = run_id, rec.memory
            live.steps = [(h["step"], h["loss"]) for h in rec.history if h["step"] <= step]
            live.evals = [(e["step"], e["eval_loss"]) for e in rec.evals if e["step"] <= step]
            self._stop = threading.Event()
            self._active = True
            self._thread = threading.Thread(target=self._run, args=(rec.config, self._stop, live, run_id),
                                            name="lorakit-studio-resume", daemon=True)
            self._set_status("running", f"{rec.config.label}: resuming run {run_id} from step {step}…")
            self._notify("run", live)
            self._thread.start()
            return True

    def _refuse_second_run(self) -> bool:
        if not self.running:
            return False
        live = self.live
        where = f" (step {live.last_step}/{live.max_steps})" if live and live.steps else ""
        self._set_status("warn", f"A run is already going{where}: {live.label if live else ''}. "
                                 "Press Stop first, or wait for it to finish.")
        return True

    def _previous_candidate(self, model=None) -> Optional[LiveRun]:
        """The last run with a memory breakdown on ``model`` (None: any): this session's, else the newest in the
        store. Like with like: a SmolLM2 run beside a tiny-llama one reads as "QLoRA saves 99 %"."""
        def same(cfg) -> bool:
            return model is None or getattr(cfg, "model", None) == model

        for live in (self.live, self.previous):
            if live is not None and live.memory is not None and same(live.config):
                return live
        for rec in reversed(self.records()):
            if rec.memory is not None and same(rec.config):
                live = LiveRun.for_config(rec.config, rec.planned_memory)
                live.memory, live.status, live.run_id, live.record = rec.memory, rec.status, rec.run_id, rec
                live.plan_scope = "batch"  # the engine stores the plan for the trained batch
                if rec.planned_memory is None:
                    live.plan_error = "the run store has no plan for this run"
                return live
        return None

    def _run(self, cfg: RunConfig, stop: threading.Event, live: LiveRun, resume_id: str = "") -> None:
        try:
            warm()
            if live.planned is None and not resume_id:  # the plan, before the model loads (replaced later)
                live.planned = self.plan()[0]
                self._notify("run", live)
            self._engine.acquire()
            live.holds_engine = True  # released at the first logged step (see _sink)
            sinks = [lambda e: self._sink(e, live)]
            if resume_id:
                lorakit.resume(resume_id, store=self.store, sinks=sinks, stop=stop)
            else:
                lorakit.train(cfg, sinks=sinks, store=self.store if self.store is not None else False, stop=stop)
        except BaseException as exc:  # noqa: BLE001 - train() never raises, but never die silently
            self._sink(RunFinished(live.run_id, "failed", None, error_text(exc)), live)
        finally:
            self._release_engine(live)
            if not live.done:  # the engine ended without RunFinished: say so
                self._sink(RunFinished(live.run_id, "failed", None, "the run ended without a result"), live)
            self._active = False
            self._notify("status")  # Stop goes grey, Train is free again

    def feed(self, event) -> None:
        """Events from outside the Studio (``LiveCallback`` on a user's own Trainer)."""
        if self._active:  # the Studio's own run owns the panels: an outside event must not end or mix into it
            self.errors.append(RuntimeError(f"outside {type(event).__name__} ignored: the Studio is training"))
            return
        if isinstance(event, RunStarted) or self.live is None or self.live.done:
            if self.live is not None and self.live.memory is not None:
                self.previous = self.live
            cfg = getattr(event, "config", None)
            live = LiveRun.for_config(cfg) if isinstance(cfg, RunConfig) else LiveRun(label=_outside_label(event))
            self.live = live
            self._notify("run", live)
        self._sink(event, self.live)

    def _sink(self, event, live: LiveRun) -> None:
        """Called on the training thread: fold the event in, update the status, notify panels."""
        try:
            if isinstance(event, (StepLogged, RunFinished)):
                self._release_engine(live)  # model built, adapters attached, memory planned
            live.apply(event)
            if live is self.live:
                self.status = live.message()
            self._notify("event", event)
            if isinstance(event, RunFinished):
                self._set_status(*live.message())
                self._notify("runs")
        except Exception as exc:  # noqa: BLE001 - never a traceback from the training thread
            self.errors.append(exc)
            log.debug("display failed on %s", type(event).__name__, exc_info=True)  # for debugging only
            self._set_status("error", f"display error on {type(event).__name__}: {type(exc).__name__}: {exc}")

    def _release_engine(self, live: LiveRun) -> None:
        if getattr(live, "holds_engine", False):
            live.holds_engine = False
            self._engine.release()

    def stop(self) -> bool:
        """Ask the run to end after the current step (status 'stopped', history kept)."""
        if not self.running or self._stop is None:
            self._set_status("info", "Nothing to stop: no run is going.")
            return False
        self._stop.set()
        live = self.live
        live.stopping = True
        self._set_status("warn", f"{live.label}: stopping after the current step…")
        return True


def _outside_label(event) -> str:
    return getattr(event, "run_id", "") or "your run"
