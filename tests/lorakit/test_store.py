"""The SQLite run store: round trips, atomic writes, refusing files that are not ours, orphan recovery."""
from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lorakit.config import RunConfig
from lorakit.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged
from lorakit.memory import MemoryBreakdown
from lorakit.record import RunRecord
from lorakit.store import ORPHAN_REASON, RunNotFound, RunStore, StoreError, StoreSink, default_store_path

REPO = Path(__file__).resolve().parents[2]


def make_record(run_id="run-lora-r8", status="finished", steps=12, created_at=1_760_000_000.0, **over) -> RunRecord:
    """A realistic finished LoRA run on SmolLM2-135M (r=8 on q,v: 460,800 trainable parameters)."""
    cfg = over.pop("config", RunConfig(model="smollm2-135m", rank=8, alpha=16, max_steps=max(steps, 1)))
    history = [
        {"step": s, "loss": 2.6 * 0.93 ** s, "learning_rate": 2e-4 * (1 - (s - 1) / steps),
         "tokens_per_s": 410.0 + s, "elapsed_s": 0.62 * s, "grad_norm": 1.8 / s}
        for s in range(1, steps + 1)
    ]
    rec = RunRecord(
        config=cfg, run_id=run_id, status=status, created_at=created_at, device="cpu", history=history,
        evals=[{"step": steps // 2, "eval_loss": 1.91, "perplexity": math.exp(1.91), "task_metric": 0.25},
               {"step": steps, "eval_loss": 1.52, "perplexity": math.exp(1.52), "task_metric": 0.5}],
        memory=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 61_865_984),
        planned_memory=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256),
        trainable_params=460_800, total_params=134_975_808, train_loss=1.47, eval_loss=1.52,
        perplexity=math.exp(1.52), task_metric=0.5, task_metric_before=0.0, tokens_per_s=415.2, wall_s=7.9,
        load_s=1.3, time_to_first_loss_s=2.1, adapter_path=None, adapter_bytes=1_846_432,
        samples=[{"prompt": 'Extract JSON: "Ann, 31, Oslo"', "reference": '{"name": "Ann"}',
                  "before": "Sure! Here", "after": '{"name": "Ann"}'}],
        data_stats={"n_train": 512, "n_eval": 32, "truncated": 0},
    )
    for k, v in over.items():
        setattr(rec, k, v)
    return rec


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()


def test_save_load_round_trip_keeps_every_field(store):
    rec = make_record()
    store.save(rec)
    loaded = store.load(rec.run_id)
    assert loaded.to_dict() == rec.to_dict()
    assert isinstance(loaded.config, RunConfig) and loaded.config.target_modules == ("q_proj", "v_proj")
    assert loaded.memory.total == rec.memory.total
    assert loaded.planned_memory.activations == 58_720_256
    assert len(store) == 1 and rec.run_id in store


def test_nan_loss_and_numpy_scalars_survive(store):
    np = pytest.importorskip("numpy")
    rec = make_record(steps=3)
    rec.history[-1]["loss"] = float("nan")  # the step that stopped the run
    rec.history[0]["loss"] = np.float32(2.5)
    rec.history[0]["tokens"] = np.int64(512)  # a key the table has no column for
    rec.trainable_params = np.int64(460_800)
    store.save(rec)
    h = store.load(rec.run_id).history
    assert math.isnan(h[-1]["loss"])
    assert h[0]["loss"] == 2.5 and h[0]["tokens"] == 512
    assert store.load(rec.run_id).trainable_params == 460_800


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


def test_schema_tables_and_wal(store):
    with sqlite3.connect(store.path) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(c.execute("SELECT key, value FROM meta"))
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"meta", "runs", "steps", "evals", "memory"} <= tables
    assert meta["schema_version"] == "1" and meta["application"] == "lorakit-runs"
    assert mode == "wal"


# ----------------------------------------------------------------- bad paths and foreign files

def test_path_is_a_directory(tmp_path):
    with pytest.raises(StoreError, match="is a directory") as e:
        RunStore(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_directory_cannot_be_created(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    target = blocker / "sub" / "runs.db"
    with pytest.raises(StoreError, match="cannot be created") as e:
        RunStore(target)
    assert str(target) in str(e.value)
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_file(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match="read-only") as e:
            RunStore(path)
        assert str(path) in str(e.value)
    finally:
        path.chmod(0o644)


def test_read_only_check_names_the_path(tmp_path, monkeypatch):
    """The permission check itself (root passes the real one): a file we may not write is refused."""
    path = tmp_path / "runs.db"
    RunStore(path).close()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path and mode & os.W_OK
                        else real_access(p, mode))
    with pytest.raises(StoreError, match="read-only") as e:
        RunStore(path)
    assert str(path) in str(e.value)


def test_garbage_file_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "runs.db"
    garbage = bytes(range(256)) * 40 + b"definitely not sqlite"
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="not an SQLite database") as e:
        RunStore(path)
    assert str(path) in str(e.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]  # no -wal / -shm created


def test_corrupted_sqlite_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "runs.db"
    data = b"SQLite format 3\x00" + b"\xff" * 4000  # right header, nonsense pages
    path.write_bytes(data)
    with pytest.raises(StoreError, match="corrupted|run-store schema|cannot open"):
        RunStore(path)
    assert path.read_bytes() == data


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        c.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    c.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="without the lorakit run-store schema") as e:
        RunStore(path)
    assert "invoices" in str(e.value)
    assert path.read_bytes() == before


def test_newer_schema_is_refused_and_untouched(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record())
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.close()
    before = path.read_bytes()
    assert not Path(str(path) + "-wal").exists()  # the last connection checkpointed the WAL
    with pytest.raises(StoreError, match="newer lorakit"):
        RunStore(path)
    assert path.read_bytes() == before


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "runs.db"
    path.touch()
    with RunStore(path) as s:
        s.save(make_record())
        assert len(s) == 1


# ----------------------------------------------------------------- atomicity, processes, threads

def test_failed_save_leaves_the_previous_version(store, monkeypatch):
    rec = make_record(steps=6)
    store.save(rec)

    def boom(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    new = make_record(steps=9, status="stopped")
    monkeypatch.setattr(RunStore, "_insert_evals", staticmethod(boom))
    with pytest.raises(StoreError, match="cannot save run"):
        store.save(new)
    monkeypatch.undo()
    loaded = store.load(rec.run_id)
    assert loaded.status == "finished" and len(loaded.history) == 6 and len(loaded.evals) == 2


def _run_py(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          cwd=str(REPO), timeout=120)


def test_process_killed_mid_save_leaves_no_half_run(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record("old", steps=5))
    code = f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_record
        from lorakit.store import RunStore
        s = RunStore({str(path)!r})
        # die hard after the runs row and part of the steps are written, inside the transaction
        RunStore._insert_evals = staticmethod(lambda *a, **k: os._exit(9))
        s.save(make_record("new", steps=20))
        """
    proc = _run_py(code)
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
    proc = _run_py(f"""
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


def test_run_of_a_dead_process_is_marked_stopped_with_its_history(tmp_path):
    path = tmp_path / "runs.db"
    proc = _run_py(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_record
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


def test_stored_config_that_no_longer_validates_still_loads(store):
    store.save(make_record("old-config"))
    with sqlite3.connect(store.path) as c:
        cfg = json.loads(c.execute("SELECT config FROM runs WHERE run_id = 'old-config'").fetchone()[0])
        cfg["quant"] = "int3"  # a mode a later lorakit dropped
        c.execute("UPDATE runs SET config = ? WHERE run_id = 'old-config'", (json.dumps(cfg),))
    c.close()
    r = store.load("old-config")
    assert r.config.quant == "int3" and r.config.rank == 8 and len(r.history) == 12


# ----------------------------------------------------------------- the events sink

def test_store_sink_records_a_run_as_it_happens(store):
    sink = StoreSink(store, flush_every=5)
    cfg = RunConfig(model="smollm2-135m", max_steps=7)
    planned = MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256)
    sink(RunStarted("live1", cfg, trainable_params=460_800, total_params=134_975_808, planned_memory=planned))
    r = store.load("live1")
    assert r.status == "running" and r.trainable_params == 460_800 and r.planned_memory == planned

    def step(s):
        return StepLogged("live1", s, 7, loss=2.5 - 0.1 * s, learning_rate=2e-4, tokens_per_s=400.0,
                          elapsed_s=0.6 * s, grad_norm=1.0)

    for s in range(1, 5):
        sink(step(s))
    assert store.load("live1").history == []  # buffered
    sink(step(5))
    assert [h["step"] for h in store.load("live1").history] == [1, 2, 3, 4, 5]
    sink(step(6))
    sink(MemoryMeasured("live1", 1, measured=MemoryBreakdown(1, 2, 3, 4, 5), planned=planned))
    assert store.load("live1").memory.total == 15
    sink(EvalDone("live1", 6, eval_loss=1.9, perplexity=math.exp(1.9), task_metric=0.25))
    r = store.load("live1")
    assert [h["step"] for h in r.history] == [1, 2, 3, 4, 5, 6]  # flushed before the eval
    assert r.evals[0]["eval_loss"] == 1.9
    sink(step(7))  # the last step flushes at once
    assert len(store.load("live1").history) == 7

    final = make_record("live1", steps=7, config=cfg)
    sink(RunFinished("live1", "finished", final))
    assert store.load("live1").to_dict() == final.to_dict()
    assert sink.errors == []


def test_store_sink_finished_without_record_and_never_raises(store):
    sink = StoreSink(store, flush_every=100)
    sink(RunStarted("r2", RunConfig(model="smollm2-135m"), trainable_params=1, total_params=2))
    sink(StepLogged("r2", 1, 30, 2.0, 2e-4, 400.0, 0.6))
    sink(RunFinished("r2", "failed", None, reason="loss became NaN at step 2"))
    r = store.load("r2")
    assert (r.status, r.reason, len(r.history)) == ("failed", "loss became NaN at step 2", 1)
    sink(StepLogged("never-started", 1, 1, 2.0, 2e-4, 400.0, 0.6))  # flushes at once, to a missing run
    assert len(sink.errors) == 1 and isinstance(sink.errors[0], RunNotFound)
