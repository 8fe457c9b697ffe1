"""Background jobs for the Studio: engine calls on daemon threads that report instead of dying.

A panel's button must return at once, so loading a model, planning memory and checking data run on
threads. ``Jobs`` starts them and turns any exception into a message (``report``), never a silent
thread death or a traceback in the notebook. ``Coalesced`` is for work a form change asks for again
and again (the memory plan, the data check): requests that arrive while it runs fold into one
more run with the newest values, so typing in a field never queues a job per keystroke.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Callable, Optional

from lorakit.common import warm
from lorakit.config import ConfigError
from lorakit.run import error_line

log = logging.getLogger("lorakit.widgets")


class Jobs:
    """Starts jobs; ``report(level, text)`` hears about the ones that fail."""

    def __init__(self, report: Callable[[str, str], None]):
        self.report = report
        self._threads: list = []
        self._lock = threading.Lock()
        _EVERY.add(self)

    def start(self, what: str, fn: Callable[[], None], background: bool = True) -> None:
        """Run ``fn`` on a thread named after ``what`` (or here, when not ``background``)."""
        def guarded():
            try:
                warm()  # transformers' lazy names, resolved once and not by two threads at once
                fn()
            except Exception as exc:  # noqa: BLE001 - jobs report, never die silently
                log.debug("%s failed", what, exc_info=True)  # for debugging only
                self.report("error", f"{what} failed: {error_text(exc)}")

        if not background:
            guarded()
            return
        t = threading.Thread(target=guarded, name=f"lorakit-studio-{what}", daemon=True)
        with self._lock:
            self._threads = [j for j in self._threads if j.is_alive()] + [t]
        t.start()

    def wait(self, deadline: Optional[float] = None) -> bool:
        """Join every job, also those started by jobs meanwhile, until ``deadline`` (time.monotonic());
        True when none is left running."""
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            for t in alive:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not any(t.is_alive() for t in self._threads)


_EVERY: "weakref.WeakSet[Jobs]" = weakref.WeakSet()
EXIT_WAIT_S = 120.0  # the most a script's exit waits for the Studio's background jobs


@atexit.register
def _end_jobs_at_exit() -> None:
    """Let running jobs end before the interpreter does: a daemon thread still inside torch or bitsandbytes
    (a plan, the machine's time calibration) when Python finalizes aborts the process ("terminate called without
    an active exception", exit -6), so a script that builds a Studio and ends would fail."""
    deadline = time.monotonic() + EXIT_WAIT_S
    for jobs in list(_EVERY):
        jobs.wait(deadline)


class Coalesced:
    """``fn`` run as a job on ``request()``; requests during a run make exactly one more run."""

    def __init__(self, jobs: Jobs, what: str, fn: Callable[[], None]):
        self.jobs, self.what, self.fn = jobs, what, fn
        self._lock = threading.Lock()
        self._wanted = False
        self._busy = False

    def request(self, background: bool = True) -> None:
        with self._lock:
            self._wanted = True
            if self._busy:
                return  # the running job picks the newest values up
            self._busy = True
        self.jobs.start(self.what, self._loop, background)

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._wanted:
                        self._busy = False
                        return
                    self._wanted = False
                self.fn()
        finally:
            with self._lock:
                self._busy = False


def error_text(exc: BaseException) -> str:
    """A readable one-paragraph message for an exception (no traceback)."""
    if isinstance(exc, ConfigError):
        return error_line(exc)  # its problems, "field: message; ..."
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ not in ("ModelUnavailable", "DataError", "StoreError"):
        text = f"{type(exc).__name__}: {text}"
    return text
