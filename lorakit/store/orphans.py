"""Runs left 'running' by a process that has ended become 'stopped', with the history they had.

A 'running' row carries the pid, host and start time of the process writing it. When a store is
opened, each running run of this host whose process is gone (or whose pid now belongs to another
process) is an orphan: its kernel died, or it was killed mid-run. Runs of other hosts sharing the
file are left alone, since their processes cannot be seen from here.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
from typing import Optional

ORPHAN_REASON = "process ended before the run finished"
HOST = socket.gethostname()
RUNNING_SQL = "SELECT run_id, pid, host, proc_start FROM runs WHERE status = 'running'"


def owner(running: bool) -> dict:
    """The runs-row columns naming the process that writes a running run (all None otherwise)."""
    if not running:
        return {"pid": None, "host": None, "proc_start": None}
    pid = os.getpid()
    return {"pid": pid, "host": HOST, "proc_start": _proc_start(pid)}


def orphans(rows: list) -> list[str]:
    """Run ids among ``RUNNING_SQL`` rows whose process on this host has ended."""
    return [rid for rid, pid, host, start in rows if host == HOST and not _process_alive(pid, start)]


def mark_stopped(c: sqlite3.Connection, run_ids: list[str]) -> None:
    """Inside a write transaction: 'running' -> 'stopped' with ORPHAN_REASON (a run finished meanwhile stays)."""
    now = time.time()
    c.executemany(
        "UPDATE runs SET status = 'stopped', reason = ?, updated_at = ? WHERE run_id = ? AND status = 'running'",
        [(ORPHAN_REASON, now, rid) for rid in run_ids],
    )


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks (Linux), to tell a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return data[data.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return ""


def _process_alive(pid: Optional[int], proc_start: Optional[str]) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: assume alive, never mark a live run stopped
    if proc_start:
        now = _proc_start(pid)
        if now and now != proc_start:
            return False  # the pid was reused by another process
    return True
