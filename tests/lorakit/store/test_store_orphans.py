"""Runs left 'running' by a process that has ended become 'stopped' when a store is opened."""
from __future__ import annotations

from store_support import HERE, make_record, run_py

from lorakit.store import ORPHAN_REASON, RunStore


def test_run_of_a_dead_process_is_marked_stopped_with_its_history(tmp_path):
    path = tmp_path / "runs.db"
    proc = run_py(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from store_support import make_record
        from lorakit.store import RunStore
        s = RunStore({str(path)!r})
        s.save(make_record("crashed", status="running", steps=4))
        s.append_steps("crashed", [{{"step": 5, "loss": 1.9}}])
        """)  # the process exits without finishing the run
    assert proc.returncode == 0, proc.stderr
    with RunStore(path) as s:
        r = s.load("crashed")
        assert r.status == "stopped" and r.reason == ORPHAN_REASON
        assert [h["step"] for h in r.history] == [1, 2, 3, 4, 5]


def test_run_of_a_live_process_stays_running(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record("live", status="running"))
    with RunStore(path) as s2:  # this process is alive: not an orphan
        assert s2.load("live").status == "running"
