"""Throttle: coalesce many updates into a few redraws (at most one per ``interval`` seconds).

Training calls sinks from its own thread, possibly dozens of times a second on a fast model.
Each ``push(item)`` only queues the item; the first push after a quiet period flushes at once
(the first loss point appears immediately), later ones within ``interval`` wait for a single
trailing flush on a timer. ``flush()`` forces the final redraw (the end of a run).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional


class Throttle:
    """Calls ``redraw(items)`` with every queued item, at most once per ``interval`` seconds.

    ``clock`` and ``timer`` can be replaced in tests (a fake clock, a timer that never fires).
    ``redraws`` counts the calls; an exception in ``redraw`` goes to ``on_error`` (never lost,
    never raised into the training thread).
    """

    def __init__(self, redraw: Callable[[list], None], interval: float = 0.3,
                 clock: Callable[[], float] = time.monotonic,
                 timer: Optional[Callable[[float, Callable[[], None]], object]] = None,
                 on_error: Optional[Callable[[BaseException], None]] = None):
        self.redraw = redraw
        self.interval = float(interval)
        self.clock = clock
        self.timer = timer or _thread_timer
        self.on_error = on_error
        self.redraws = 0
        self.pushed = 0
        self._pending: List = []
        self._last = float("-inf")
        self._scheduled = None
        self._lock = threading.Lock()  # guards the queue and the schedule
        self._draw_lock = threading.Lock()  # one redraw at a time, in order

    def push(self, item=None) -> None:
        """Queue one update; redraw now if the last redraw is older than ``interval``."""
        with self._lock:
            self._pending.append(item)
            self.pushed += 1
            wait = self._last + self.interval - self.clock()
            if wait > 0:
                if self._scheduled is None:
                    self._scheduled = self.timer(wait, self._on_timer)
                return
        self.flush()

    def _on_timer(self) -> None:
        with self._lock:
            self._scheduled = None
        self.flush()

    def flush(self) -> None:
        """Redraw now with everything queued (nothing happens when the queue is empty)."""
        with self._draw_lock:
            with self._lock:
                items, self._pending = self._pending, []
                if self._scheduled is not None:
                    _cancel(self._scheduled)
                    self._scheduled = None
                if not items:
                    return
                self._last = self.clock()
            self.redraws += 1
            try:
                self.redraw(items)
            except Exception as exc:  # noqa: BLE001 - a redraw must never kill the caller's thread
                if self.on_error is not None:
                    self.on_error(exc)


def _thread_timer(delay: float, fn: Callable[[], None]):
    t = threading.Timer(max(0.0, delay), fn)
    t.daemon = True
    t.start()
    return t


def _cancel(handle) -> None:
    cancel = getattr(handle, "cancel", None)
    if cancel is not None:
        cancel()
