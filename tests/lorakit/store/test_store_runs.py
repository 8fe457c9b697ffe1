"""RunStore: round trips, partial writes, listing, deleting, the default path, atomic saves, threads."""
from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from store_support import HERE, make_record, run_py

from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.store import RunNotFound, RunStore, StoreError, default_store_path
from lorakit.store import record_rows as store_rows


def test_save_load_round_trip_keeps_every_field(store):
    rec = make_record()
    store.save(rec)
    loaded = store.load(rec.run_id)
    assert loaded.to_dict() == rec.to_dict()
    assert isinstance(loaded.config, RunConfig) and loaded.config.target_modules == "qv"
    assert loaded.memory.total == rec.memory.total
    assert loaded.planned_memory.activations == 58_720_256
    assert len(store) == 1 and rec.run_id in store


def test_save_replaces_the_whole_run(store):
    rec = make_record(steps=10)
    store.save(rec)
    rec.history = rec.history[:4]
    rec.evals = rec.evals[:1]
    rec.memory = None
    rec.status, rec.reason = "stopped", "stopped by user"
    store.save(rec)
    loaded = store.load(rec.run_id)
    assert [h["step"] for h in loaded.history] == [1, 2, 3, 4]
    assert len(loaded.evals) == 1 and loaded.memory is None
    assert (loaded.status, loaded.reason) == ("stopped", "stopped by user")
    assert len(store) == 1


def test_records_oldest_first_and_filter_by_status(store):
    store.save(make_record("b", created_at=200.0))
    store.save(make_record("a", created_at=100.0, status="failed", reason="loss became NaN at step 3"))
    store.save(make_record("c", created_at=300.0))
    assert [r.run_id for r in store.records()] == ["a", "b", "c"]
    assert [r.run_id for r in store.records(status="finished")] == ["b", "c"]
    assert [r.reason for r in store.records("failed")] == ["loss became NaN at step 3"]
    assert [s["run_id"] for s in store.summaries()] == ["a", "b", "c"]
    with pytest.raises(StoreError, match="status must be one of"):
        store.records(status="done")


def test_append_steps_evals_memory_and_status(store):
    rec = make_record(status="running", steps=0)
    rec.evals, rec.memory = [], None
    store.save(rec)
    store.append_steps(rec.run_id, [{"step": 1, "loss": 2.5, "learning_rate": 2e-4, "tokens_per_s": 400.0,
                                     "elapsed_s": 0.6, "grad_norm": None}])
    store.append_steps(rec.run_id, [{"step": 2, "loss": 2.3, "learning_rate": 2e-4, "tokens_per_s": 402.0,
                                     "elapsed_s": 1.2, "grad_norm": 1.1}])
    store.append_evals(rec.run_id, [{"step": 2, "eval_loss": 2.2, "perplexity": 9.0, "task_metric": None}])
    store.set_memory(rec.run_id, measured=MemoryBreakdown(10, 20, 30, 40, 50))
    store.set_status(rec.run_id, "stopped", "stopped by user")
    loaded = store.load(rec.run_id)
    assert [h["loss"] for h in loaded.history] == [2.5, 2.3]
    assert loaded.evals == [{"step": 2, "eval_loss": 2.2, "perplexity": 9.0, "task_metric": None}]
    assert loaded.memory.total == 150
    assert loaded.planned_memory.total == rec.planned_memory.total  # untouched by set_memory(measured=...)
    assert (loaded.status, loaded.reason) == ("stopped", "stopped by user")


def test_unknown_run_ids(store):
    with pytest.raises(RunNotFound, match="no run 'nope'") as e:
        store.load("nope")
    assert isinstance(e.value, KeyError) and isinstance(e.value, StoreError)
    with pytest.raises(RunNotFound):
        store.append_steps("nope", [{"step": 1, "loss": 1.0}])
    with pytest.raises(RunNotFound):
        store.delete("nope")
    with pytest.raises(StoreError, match="invalid run id"):
        store.adapter_dir("../../etc")
    assert len(store) == 0


def test_delete_removes_rows_and_adapter_dir(store, tmp_path):
    keep, gone = make_record("keep"), make_record("gone")
    store.save(keep)
    store.save(gone)
    adir = store.adapter_dir("gone")
    assert adir == tmp_path / "runs_adapters" / "gone"
    adir.mkdir(parents=True)
    (adir / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    store.delete("gone")
    assert not adir.exists()
    assert [r.run_id for r in store.records()] == ["keep"]
    with sqlite3.connect(store.path) as c:
        for table in ("steps", "evals", "memory"):
            ids = {r[0] for r in c.execute(f"SELECT run_id FROM {table}")}
            assert ids == {"keep"}, table


def test_default_path_env_and_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_STORE", str(tmp_path / "env" / "mine.db"))
    with RunStore() as s:
        assert s.path == tmp_path / "env" / "mine.db"
        assert s.adapter_dir("x") == tmp_path / "env" / "mine_adapters" / "x"
    assert (tmp_path / "env" / "mine.db").is_file()
    monkeypatch.delenv("LORAKIT_STORE")
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / "lorakit_runs.db"
    with RunStore() as s:
        s.save(make_record())
    assert (tmp_path / "lorakit_runs.db").is_file()


# ----------------------------------------------------------------- atomicity, processes, threads

def test_failed_save_leaves_the_previous_version(store, monkeypatch):
    rec = make_record(steps=6)
    store.save(rec)

    def boom(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    new = make_record(steps=9, status="stopped")
    monkeypatch.setattr(store_rows, "insert_evals", boom)
    with pytest.raises(StoreError, match="cannot save run"):
        store.save(new)
    monkeypatch.undo()
    loaded = store.load(rec.run_id)
    assert loaded.status == "finished" and len(loaded.history) == 6 and len(loaded.evals) == 2


def test_process_killed_mid_save_leaves_no_half_run(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record("old", steps=5))
    code = f"""
        import os, sys
        sys.path.insert(0, {str(HERE)!r})
        from store_support import make_record
        from lorakit.store import RunStore
        from lorakit.store import record_rows as rows
        s = RunStore({str(path)!r})
        # die hard after the runs row and part of the steps are written, inside the transaction
        rows.insert_evals = lambda *a, **k: os._exit(9)
        s.save(make_record("new", steps=20))
        """
    proc = run_py(code)
    assert proc.returncode == 9, proc.stderr
    with RunStore(path) as s:
        assert [r.run_id for r in s.records()] == ["old"]
        assert len(s.load("old").history) == 5
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*) FROM steps WHERE run_id = 'new'").fetchone()[0] == 0


def test_runs_survive_a_new_process(tmp_path):
    path = tmp_path / "runs.db"
    rec = make_record()
    with RunStore(path) as s:
        s.save(rec)
        s.save(make_record("second", created_at=rec.created_at + 60, status="failed", reason="out of memory"))
    proc = run_py(f"""
        import json
        from lorakit.store import RunStore
        s = RunStore({str(path)!r})
        print(json.dumps([r.to_dict() for r in s.records()]))
        """)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [d["run_id"] for d in got] == [rec.run_id, "second"]
    assert got[0] == json.loads(json.dumps(rec.to_dict()))
    assert got[1]["status"] == "failed" and got[1]["reason"] == "out of memory"


def test_threads_write_and_read_concurrently(store):
    ids = [f"t{i}" for i in range(4)]
    for i, rid in enumerate(ids):
        store.save(make_record(rid, status="running", steps=0, created_at=float(i + 1)))
    errors = []

    def writer(rid):
        try:
            for s in range(1, 26):
                store.append_steps(rid, [{"step": s, "loss": 1.0 / s}])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def reader():
        try:
            for _ in range(20):
                for r in store.records():
                    steps = [h["step"] for h in r.history]
                    assert steps == list(range(1, len(steps) + 1))  # never a gap or a half write
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(rid,)) for rid in ids] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [len(r.history) for r in store.records()] == [25, 25, 25, 25]
