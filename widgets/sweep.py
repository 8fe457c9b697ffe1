"""SweepControl: the Studio's sweep. Axes picked from the form, the grid with each trial's planned memory and
fit verdict before anything runs, and the grid trained through ``lorakit.sweep`` on a background thread.

Pure state, no widgets: ``StudioController`` keeps one as ``controller.sweep``. The Sweep panel forwards axis
values (``set_axis``) and button presses (``run``, ``stop``) and redraws on the controller's topics:

- ``sweep`` (): the trials were recomputed (an axis or the form changed), a plan came in, or the sweep ended;
- ``sweep_event`` (trial, event): a lorakit event of a running trial, already folded into ``trial``;
- ``sweep_status`` (): the sweep's status line (``status``) changed.

Only one job trains at a time: Sweep is refused while Train runs, and Train while a sweep runs
(``StudioController._refuse_second_run``). Invalid combinations are named before anything runs, and the
sweep is refused while any is invalid, unless ``skip_invalid`` is set: then only the valid ones run.
"""
from __future__ import annotations

import itertools
import logging
import threading
from contextlib import contextmanager
from typing import Optional

import lorakit
from lorakit.config import ConfigError, RunConfig
from lorakit.run import RunFinished, StepLogged
from lorakit.sweeps import EXECUTORS, grid

from .jobs import Coalesced, error_text
from .sweepstate import AXES, DONE, Trial, parse_values

log = logging.getLogger("lorakit.widgets")


class SweepControl:
    """Axes, trials and the sweep in progress, for one ``StudioController`` (``c``)."""

    def __init__(self, controller):
        self.c = controller
        self.axes: dict = {}  # axis -> [values], only the axes with values
        self.problems: dict = {}  # axis -> why its typed values were refused
        self.trials: list = []
        self.base_error = ""  # why there is no grid (the form is invalid)
        self.skip_invalid = False
        self.executor = "local"
        self.status: tuple = ("info", "Pick values for one or more axes: the trials appear here before anything runs.")
        self.result = None  # the last sweep's lorakit.compare frame
        self._lock = threading.RLock()  # the trials: changed by the sweep's thread, read by redraws
        self._active = False
        self._stop: Optional[threading.Event] = None
        self._holds_engine = False
        self._fits: dict = {}  # (RunConfig, device) -> lorakit.memory.fit.Fit
        self._planner = Coalesced(controller._jobs, "planning the sweep", self._plan_all)
        controller.on("values", lambda changes: self.refresh())
        controller.on("plan", self._device_changed)

    @property
    def running(self) -> bool:
        """True from the Run press until the sweep's thread has ended."""
        return self._active

    def running_ids(self) -> set:
        """The run ids of the trials training now (the store must keep them)."""
        with self._lock:
            return {t.run_id for t in self.trials if t.run_id and t.status not in DONE} if self.running else set()

    # --- axes and trials ------------------------------------------------------------------------
    def set_axis(self, name: str, values) -> dict:
        """The values of one axis: a sequence (picked) or text ("1e-4, 3e-4"); empty leaves the axis out."""
        if name not in AXES:
            raise ValueError(f"{name!r} is not a sweep axis: one of {', '.join(AXES)}")
        self.problems.pop(name, None)
        try:
            parsed = parse_values(values)
        except ValueError as exc:
            self.problems[name] = str(exc)
            parsed = []
        if parsed:
            self.axes[name] = parsed
        else:
            self.axes.pop(name, None)
        self.refresh()
        return self.problems

    def set_axes(self, **axes) -> dict:
        """Several axes at once (any not named keeps its values)."""
        for name, values in axes.items():
            self.set_axis(name, values)
        return self.problems

    def set_option(self, name: str, value) -> None:
        """``skip_invalid`` (run only the valid trials) or ``executor`` ("local" or "ray")."""
        if name == "executor" and value not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {value!r}")
        if name not in ("skip_invalid", "executor"):
            raise ValueError(f"{name!r} is not a sweep option: skip_invalid or executor")
        setattr(self, name, value)
        self.c._notify("sweep")

    def refresh(self) -> None:
        """Recompute the trials from the form and the axes (not while a sweep runs: its grid stays)."""
        if self.running:
            return
        with self._lock:
            self.trials, self.base_error = self._grid()
        self.c._notify("sweep")
        if any(t.config is not None for t in self.trials):
            self._planner.request()

    def _grid(self) -> tuple:
        if not self.axes:
            return [], ""
        try:
            base = self.c.config()
        except ConfigError as exc:
            return [], "fix the highlighted fields first: " + ", ".join(exc.problems)
        trials = []
        # grid() keeps product()'s order: each item's changes as picked (a preset's name, not its layers)
        combos = (dict(zip(self.axes, c, strict=True)) for c in itertools.product(*self.axes.values()))
        for changes, item in zip(combos, grid(base, **self.axes), strict=True):
            if isinstance(item, tuple):
                trials.append(Trial(changes, error=error_text(item[1]), status="invalid"))
            else:  # what was planned before is shown at once (the planner skips it)
                device = self.c.fit_device
                fit = self._fits.get((item, device))
                trials.append(Trial(changes, config=item, planned=self.c._plan_cache.get(item), fit=fit,
                                    fit_device=device if fit is not None else ""))
        return trials, ""

    @property
    def valid(self) -> list:
        return [t for t in self.trials if t.config is not None]

    @property
    def invalid(self) -> list:
        return [t for t in self.trials if t.config is None]

    # --- planned memory and fit, before anything runs ---------------------------------------------
    def _plan_all(self) -> None:
        for t in list(self.trials):
            if t.config is None or t.plan_error or (t.planned is not None and t.fit_device == self.c.fit_device):
                continue
            self._plan(t)
            self.c._notify("sweep")

    def _plan(self, t: Trial) -> None:
        from lorakit.memory import fits, plan

        cfg, device, cache = t.config, self.c.fit_device, self.c._plan_cache
        try:
            if cfg not in cache:
                with self.c._engine:
                    cache[cfg] = plan(cfg).as_planned()  # the trial's own run, as the Studio's form plans it
            t.planned = cache[cfg]
            if (cfg, device) not in self._fits:
                with self.c._engine:
                    self._fits[(cfg, device)] = fits(cfg, devices=[device])[0]
            t.fit, t.fit_device = self._fits[(cfg, device)], device
        except Exception as exc:  # noqa: BLE001 - an unplannable trial is a message in its row
            t.plan_error = error_text(exc)

    def _device_changed(self) -> None:
        if not self.running and any(t.fit_device and t.fit_device != self.c.fit_device for t in self.valid):
            self._planner.request()

    # --- run and stop ---------------------------------------------------------------------------
    def run(self, executor: Optional[str] = None, background: bool = True) -> bool:
        """Start the grid on a background thread; False (with a message in ``status``) when refused."""
        executor = executor or self.executor
        if executor not in EXECUTORS:
            return self._refuse(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        if self.running or self.c.running:
            return self._refuse_busy()
        self.c.check_data()  # a dataset that cannot train is refused now, as Train does
        with self.c._lock:
            if self.running or self.c.running:
                return self._refuse_busy()
            self.refresh()
            why = self._why_not()
            if why:
                return self._refuse(why)
            todo = self.valid
            with self._lock:
                for t in todo:
                    t.status = "queued"
                if executor == "local":
                    todo[0].status = "loading"
            self._stop, self._active, self.executor = threading.Event(), True, executor
            base, axes, stop = self.c.config(), dict(self.axes), self._stop
        skipped = f" ({len(self.invalid)} invalid skipped)" if self.invalid else ""
        self._say("running", f"Sweep of {len(todo)} trial(s){skipped} on {executor}: starting {todo[0].label}…")
        self.c._notify("sweep")
        self.c._notify("status")  # Train's button and status know a sweep runs
        self.c._jobs.start("sweep", lambda: self._run(base, axes, executor, stop), background)
        return True

    def _why_not(self) -> str:
        """Why the sweep cannot start now, or ""."""
        problems = self.c._validate()
        if problems:
            return f"Cannot start the sweep: fix {len(problems)} field(s) ({', '.join(problems)}). " \
                   f"{next(iter(problems.values()))}"
        if self.problems:
            return "Cannot start the sweep: " + "; ".join(f"{k}: {v}" for k, v in self.problems.items())
        if not self.trials:
            return self.base_error or "Cannot start the sweep: pick values for at least one axis."
        bad = self.invalid
        if bad and not self.skip_invalid:
            names = "; ".join(f"{t.label} ({t.error})" for t in bad)
            return (f"Cannot start the sweep: {len(bad)} invalid combination(s): {names}. Remove those values, or "
                    "tick 'skip invalid combinations' to run only the valid ones.")
        if not self.valid:
            return "Cannot start the sweep: every combination is invalid."
        return ""

    def _refuse_busy(self) -> bool:
        if self.running:
            return self._refuse("A sweep is already going: press Stop first, or wait for it to finish.", "warn")
        return self._refuse("A training run is going (Train panel): press Stop there, or wait for it to finish, "
                            "then start the sweep.", "warn")

    def _refuse(self, text: str, level: str = "error") -> bool:
        self._say(level, text)
        return False

    def stop(self) -> bool:
        """End the running trial(s) after the current step; queued trials are not started."""
        if not self.running or self._stop is None:
            return self._refuse("Nothing to stop: no sweep is going.", "info")
        self._stop.set()
        with self._lock:
            for t in self.trials:
                if t.status in ("loading", "running"):
                    t.stopping = True
        self._say("warn", "Stopping the sweep: the running trial ends after its current step; "
                          "the queued ones will not start (all kept in the run store).")
        self.c._notify("sweep")
        return True

    # --- the sweep's thread ---------------------------------------------------------------------------
    def _run(self, base: RunConfig, axes: dict, executor: str, stop: threading.Event) -> None:
        error = ""
        try:
            if executor == "local":  # a trial builds its model: no planner may patch torch meanwhile
                self._acquire_engine()
            store = self.c.store if self.c.store is not None else False
            with _quiet_skips():
                self.result = lorakit.sweep(base, store=store, sinks=[self._sink], stop=stop, executor=executor,
                                            **axes)
        except BaseException as exc:  # noqa: BLE001 - routed into the panel, never a silent thread
            error = error_text(exc)
        finally:
            self._release_engine()
            self._end(error)

    def _end(self, error: str) -> None:
        with self._lock:
            for t in self.trials:
                if t.status in ("queued", "loading"):
                    t.status = "not started"
                elif t.status == "running":  # the engine ended without its RunFinished
                    t.status, t.reason = "failed", error or "the trial ended without a result"
                t.stopping = False
            counts = {s: sum(t.status == s for t in self.trials) for s in DONE}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        self._active = False
        if error:
            self._say("error", f"Sweep failed: {error} ({summary or 'no trial ran'})")
        else:
            level = "ok" if counts["finished"] == len(self.valid) else "warn"
            self._say(level, f"Sweep ended: {summary}. Every trial that ran is in the Compare panel.")
        self.c._notify("sweep")
        self.c._notify("runs")
        self.c._notify("status")

    def _sink(self, event) -> None:
        """Called on the sweep's thread (local or Ray's driver loop): fold the event into its trial, notify."""
        try:
            with self._lock:
                trial = self._trial_for(event)
                if trial is None:
                    return
                trial.apply(event)
                nxt = self._next_local(event)
            if isinstance(event, (StepLogged, RunFinished)):
                self._release_engine()  # the trial's model is built
            if isinstance(event, RunFinished):
                if nxt is not None and not self._stop.is_set():
                    self._acquire_engine()  # the next trial builds its model right after this returns
                self.c._notify("runs")  # the Compare panel gains the trial
                self._say("running", self._progress())
            self.c._notify("sweep_event", trial, event)
        except Exception as exc:  # noqa: BLE001 - never a traceback from the training thread
            self.c.errors.append(exc)
            log.debug("sweep display failed on %s", type(event).__name__, exc_info=True)
            self._say("error", f"display error on {type(event).__name__}: {type(exc).__name__}: {exc}")

    def _trial_for(self, event) -> Optional[Trial]:
        """The trial an event belongs to: by run id, else by its config, else (local) the one loading."""
        rid = getattr(event, "run_id", "")
        for t in self.trials:
            if rid and t.run_id == rid:
                return t
        cfg = getattr(event, "config", None) or getattr(getattr(event, "record", None), "config", None)
        fresh = [t for t in self.trials if t.config is not None and not t.run_id and t.status not in DONE]
        return next((t for t in fresh if t.config == cfg), None) or next(
            (t for t in fresh if t.status == "loading"), None)

    def _next_local(self, event) -> Optional[Trial]:
        """On a local trial's end: the next queued trial, now loading (Ray runs several: none)."""
        if not isinstance(event, RunFinished) or self.executor != "local":
            return None
        nxt = next((t for t in self.trials if t.status == "queued"), None)
        if nxt is not None and not self._stop.is_set():
            nxt.status = "loading"
        return nxt

    def _progress(self) -> str:
        with self._lock:
            done = sum(t.status in DONE for t in self.valid)
            current = next((t for t in self.trials if t.status in ("loading", "running")), None)
        now = f"; now {current.label}" if current is not None else ""
        return f"Sweep: {done} of {len(self.valid)} trial(s) done{now}."

    def _acquire_engine(self) -> None:
        self.c._engine.acquire()
        self._holds_engine = True

    def _release_engine(self) -> None:
        if self._holds_engine:
            self._holds_engine = False
            self.c._engine.release()

    def _say(self, level: str, text: str) -> None:
        if level == "error":
            self.c.errors.append(text)
        self.status = (level, text)
        self.c._notify("sweep_status")


@contextmanager
def _quiet_skips():
    """``lorakit.sweep`` logs each invalid combination it skips; the panel already names them."""
    logger = logging.getLogger("lorakit")

    def keep(record) -> bool:
        return not record.getMessage().startswith("sweep: skipping")

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
