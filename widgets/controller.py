"""StudioController: the Studio's state, and the only place that calls the engine.

Panels forward widget values with ``set(**fields)`` and button presses with ``train()``,
``stop()``, ``load_model()``, ``preview_data()``…; they redraw when the controller notifies a
topic they subscribed to with ``on(topic, fn)``:

- ``values`` (changes): form values changed (a preset button, a loaded model's targets);
- ``problems`` (problems): field -> message, for the message next to each field;
- ``model`` (): a model was loaded, or loading started / failed (``model_info``, ``model_error``);
- ``plan`` (): the planner's plan for the form (``plan_result``) was recomputed;
- ``data`` (): a data check or preview finished or failed, or a change made it stale (``data_stats``,
  ``data_html``, ``data_error``, ``data_changed``, ``data_hint``);
- ``status`` (): the status line changed for a reason other than a training step;
- ``run`` (live): Train was pressed (or an outside run started): a fresh ``LiveRun``;
- ``event`` (event): a lorakit event of the current run, already folded into ``live``;
- ``runs`` (): the run store changed (a run finished, runs were deleted);
- ``sweep``, ``sweep_event``, ``sweep_status``: the sweep (``sweep``, a ``SweepControl``; see sweep.py).

The controller is three parts: the form and its validation (``form.Form``, here), the background
work before a run (``background.BackgroundWork``: model, plan, data check and preview, on ``jobs``
threads) and the run itself (``run.RunControl``). Sinks run on the training thread and only update
state and notify; every error (a bad field, a missing model package, a failed run, an exception in
a panel) ends up as a readable message in a field's message or the status line, never as a silent
thread death or a traceback.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Callable, Optional

from lorakit.config import ConfigError, RunConfig

from .background import BackgroundWork
from .form import DATA_FIELDS, Form
from .jobs import Jobs, error_text
from .run import CANNOT_TRAIN, RunControl, cannot_train
from .sweep import SweepControl

log = logging.getLogger("lorakit.widgets")
# The fields a model load depends on besides the model (a classifier's labels come from the data): a
# change to one retries a load that failed.
LOAD_FIELDS = ("dataset",)


class StudioController(BackgroundWork, RunControl):
    """Form values, the loaded model's summary, the run in progress and the run store."""

    def __init__(self, store=None, **values):
        self.form = Form(**values)
        self.values: dict = self.form.values  # the panels' fields (the same dict as the form's)
        self.extra: dict = self.form.extra  # other RunConfig fields given from code: kept, not shown
        self.problems: dict = {}
        self.status: tuple = ("info", "Ready. Pick a model and settings, then press Train.")
        self.errors: list = []  # every error reported, newest last (for tests and debugging)
        self._listeners: dict = defaultdict(list)
        self._lock = threading.RLock()
        self._jobs = Jobs(self.report)
        self._init_background()
        self._init_run()
        self.store = None
        self.store_error = ""
        self._open_store(store)
        self._validate(notify=False)
        self.sweep = SweepControl(self)  # the Sweep panel's grid; one job trains at a time

    # --- subscriptions ---------------------------------------------------------------------------
    def on(self, topic: str, fn: Callable) -> None:
        """Call ``fn(*args)`` whenever ``topic`` is notified."""
        self._listeners[topic].append(fn)

    def _notify(self, topic: str, *args) -> None:
        for fn in list(self._listeners[topic]):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a broken panel must not break the run
                self.errors.append(exc)
                log.debug("listener %r failed on %s", fn, topic, exc_info=True)
                if topic != "status":  # reporting must not loop through a broken status line
                    self._set_status("error", f"display error ({topic}): {type(exc).__name__}: {exc}")

    def _set_status(self, level: str, text: str) -> None:
        self.status = (level, text)
        self._notify("status")

    def report(self, level: str, text: str) -> None:
        """Show a message in the status line (panels use it for their own errors)."""
        if level == "error":
            self.errors.append(text)
        self._set_status(level, text)

    # --- form values and validation -------------------------------------------------------------
    def set(self, **changes) -> dict:
        """Update form values (from widgets); re-validate; returns the problems."""
        changes = self.form.changed(changes)
        if not changes:
            return self.problems
        changes.update(self.form.follow(changes))  # a new model brings its recommended steps, rate, task
        stale = tuple(k for k in DATA_FIELDS if k in changes)
        retry = bool(self.model_error) and "model" not in changes and bool(set(LOAD_FIELDS) & set(changes))
        with self._lock:
            if "model" in changes or retry:
                self.model_error = ""
            if stale:
                self._clear_data(stale)
            self.values.update(changes)
        self._notify("values", changes)
        if stale:
            self._notify("data")
        problems = self._validate()
        if retry:  # the load failed for a reason these fields may have fixed: try again
            self.load_model()
        self.request_plan()
        self.request_data_check()
        return problems

    def _validate(self, notify: bool = True) -> dict:
        """The form's problems, plus a model that failed to load and data that cannot train."""
        problems = self.form.problems(self.model_info)
        if self.model_error:
            problems["model"] = self.model_error
        if self.data_error:
            problems["dataset"] = self.data_error
        self.problems = problems
        if notify:
            self._notify("problems", problems)
            self._refresh_refusal(problems)
        return problems

    def _refresh_refusal(self, problems: dict) -> None:
        """A "Cannot train" line follows the problems it names: it is never left standing after their fix."""
        level, text = self.status
        if level != "error" or not text.startswith(CANNOT_TRAIN):
            return
        if problems:
            self._set_status("error", cannot_train(problems))
        else:
            self._set_status("info", "Every field is valid now: press Train.")

    def _refuse_second_run(self) -> bool:
        """Train is refused while a sweep runs, as while another run goes."""
        if self.sweep.running:
            self._set_status("warn", "A sweep is going (Sweep panel): press Stop there, or wait for it to "
                                     "finish, then press Train.")
            return True
        return super()._refuse_second_run()

    def config(self) -> RunConfig:
        """The RunConfig the form describes (raises ConfigError with every problem)."""
        problems = self._validate(notify=False)
        if problems:
            raise ConfigError(problems)
        return self.form.config()

    def trainable(self) -> Optional[tuple]:
        """(trainable, total, percent) for the form's choices, or None until the model is loaded."""
        return self.form.trainable(self.model_info)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run and background jobs end; True when everything finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        jobs_done = self._jobs.wait(deadline)
        return jobs_done and not (self._thread is not None and self._thread.is_alive())

    # --- the run store ---------------------------------------------------------------------------------
    def _open_store(self, store) -> None:
        try:
            from lorakit.store import open_store

            self.store, _ = open_store(store)  # False: None, no store; one opened here lives as long as the Studio
        except Exception as exc:  # noqa: BLE001 - StoreError: say it, train without a store
            self.store_error = error_text(exc)
            self.status = ("error", f"Run store unavailable (runs will not be kept): {self.store_error}")

    def records(self) -> list:
        """Every stored run, oldest first (empty without a store)."""
        if self.store is None:
            return []
        try:
            return self._readable_records()
        except Exception as exc:  # noqa: BLE001
            self.report("error", f"cannot read the run store: {error_text(exc)}")
            return []

    def _readable_records(self) -> list:
        """The store's readable runs; the damaged ones are named in the status line, not a Python warning."""
        import warnings

        from lorakit.store import DamagedRunsWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedRunsWarning)
            found = self.store.records()
        if self.store.damaged:
            names = ", ".join(f"{d.run_id} ({d.problem})" for d in self.store.damaged[:3])
            self.report("warn", f"{len(self.store.damaged)} run(s) in {self.store.path} cannot be read and are left "
                                f"out: {names}. `lorakit store check` / `repair` mends them.")
        return found

    def run_summaries(self) -> list:
        """A small dict per stored run (no history), oldest first: the Compare panel's selection list."""
        if self.store is None:
            return []
        try:
            return self.store.summaries()
        except Exception as exc:  # noqa: BLE001
            self.report("error", f"cannot read the run store: {error_text(exc)}")
            return []

    def page_records(self, page: int, size: int) -> list:
        """One page of stored runs (page 0: the newest), oldest first; see RunStore.page."""
        return self._store_read(lambda: self.store.page(page, size))

    def records_by_id(self, run_ids) -> list:
        """The stored runs among ``run_ids``, oldest first."""
        return self._store_read(lambda: self.store.load_many(run_ids))

    def _store_read(self, read) -> list:
        import warnings

        from lorakit.store import DamagedRunsWarning

        if self.store is None:
            return []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DamagedRunsWarning)
                found = read()
        except Exception as exc:  # noqa: BLE001
            self.report("error", f"cannot read the run store: {error_text(exc)}")
            return []
        bad = self.store.last_damaged
        if bad:
            names = ", ".join(f"{d.run_id} ({d.problem})" for d in bad[:3])
            self.report("warn", f"{len(bad)} run(s) in {self.store.path} cannot be read and are left out: {names}. "
                                "`lorakit store check` / `repair` mends them.")
        return found

    def delete_runs(self, run_ids) -> int:
        """Delete runs (and their adapters) from the store; the running run is refused."""
        if self.store is None:
            return 0
        run_ids = list(run_ids)
        running = self.sweep.running_ids() | ({self.live.run_id} if self.running and self.live is not None else set())
        if running & set(run_ids):
            self.report("warn", "The running run cannot be deleted; stop it first.")
            return 0
        n = 0
        for rid in run_ids:
            try:
                self.store.delete(rid)
                n += 1
            except Exception as exc:  # noqa: BLE001
                self.report("error", f"cannot delete run {rid}: {error_text(exc)}")
        self._notify("runs")
        return n
