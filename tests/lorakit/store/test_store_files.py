"""Opening a file: the schema of a new one, and refusing paths and files that are not ours, untouched."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from store_support import make_record

from lorakit.store import RunStore, StoreError


def test_schema_tables_and_wal(store):
    with sqlite3.connect(store.path) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(c.execute("SELECT key, value FROM meta"))
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"meta", "runs", "steps", "evals", "memory"} <= tables
    assert meta["schema_version"] == "1" and meta["application"] == "lorakit-runs"
    assert mode == "wal"


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "runs.db"
    path.touch()
    with RunStore(path) as s:
        s.save(make_record())
        assert len(s) == 1


def test_file_without_a_later_column_gets_it_and_keeps_its_runs(tmp_path):
    """A column added to schema.TABLES reaches files written before it (here: wall_s, dropped by hand)."""
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record("old"))
    with sqlite3.connect(path) as c:
        c.execute("ALTER TABLE runs DROP COLUMN wall_s")
    c.close()
    with RunStore(path) as s:
        assert s.load("old").wall_s == 7.9  # the record JSON still has it
        s.save(make_record("new"))
        assert [r["wall_s"] for r in s.summaries()] == [None, 7.9]


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
            RunStore(path, read_only=False)
        assert str(path) in str(e.value)
        with RunStore(path) as ro:  # the default opens it for reading
            assert ro.read_only and ro.records() == []
    finally:
        path.chmod(0o644)


def test_read_only_check_names_the_path(tmp_path, monkeypatch):
    """The permission check itself (root passes the real one): a file we may not write is refused where a
    writable store is required, opened for reading otherwise, and a write then names the path."""
    path = tmp_path / "runs.db"
    RunStore(path).close()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path and mode & os.W_OK
                        else real_access(p, mode))
    with pytest.raises(StoreError, match="read-only") as e:
        RunStore(path, read_only=False)
    assert str(path) in str(e.value)
    with RunStore(path) as ro, pytest.raises(StoreError, match="this store is read-only") as e:
        ro.set_status("x", "stopped")
    assert str(path) in str(e.value) and "pass another store" in str(e.value)


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
