"""``RunStore``: every run in one SQLite file, so runs survive a kernel restart and can be compared.

Every write is one transaction (``save`` writes the run row, its steps, evals and memory together)
and the file is in WAL mode, so a process killed mid-write never leaves a half-written run. How a
record maps to rows is :mod:`.rows`; which files are refused, :mod:`.files`.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.run.record import STATUSES, RunRecord
from lorakit.store import damage, orphans, paths, table_read
from lorakit.store import record_rows as rows
from lorakit.store.errors import RunNotFound, StoreError
from lorakit.store.files import check_file, connect, connect_read_only, default_store_path
from lorakit.store.schema import RUN_TABLES, RUNS, init_schema, transaction

_log = logging.getLogger("lorakit")


class RunStore:
    """All runs in one SQLite file.

    ``RunStore()`` opens ``$LORAKIT_STORE`` or ``./lorakit_runs.db`` (created when missing).
    Adapters of run ``r`` belong in ``adapter_dir(r)`` = ``<db dir>/<db stem>_adapters/<r>``.
    Safe to share between threads (one connection behind a lock). Usable as a context manager.

    ``read_only``: None (default) opens an existing store that cannot be written (a shared course folder,
    a read-only mount) for reading, and every write then raises a StoreError saying so; True opens any
    existing store that way; False refuses a store that cannot be written. A store opened read-only
    creates nothing beside its file (``read_only_reason`` says why it is read-only; "" when writable).
    """

    def __init__(self, path: Union[str, os.PathLike, None] = None, *, timeout: float = 30.0,
                 read_only: Optional[bool] = None):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.path = self.path.absolute()
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self.damaged: list = []  # the runs the last full read could not read (see check())
        self.last_damaged: list = []  # those of the last read, full or not (a page, some ids)
        self._warned: set = set()
        self.read_only_reason = check_file(self.path, read_only)
        if self.read_only_reason:
            self._conn = connect_read_only(self.path, timeout)
            return
        beside = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
        there = {b for b in beside if b.exists()}
        self._conn = connect(self.path, timeout)
        try:
            init_schema(self._conn, self.path)
            self.recover_orphans()
        except BaseException:
            self._conn.close()
            self._conn = None
            for b in beside:  # a store we could not open keeps nothing of ours beside it
                if b not in there:
                    b.unlink(missing_ok=True)
            raise

    @property
    def read_only(self) -> bool:
        """Whether this store was opened for reading only (see ``read_only_reason``)."""
        return bool(self.read_only_reason)

    # ---------------------------------------------------------------- plumbing

    @contextmanager
    def _writing(self, failure: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; an SQLite error becomes StoreError(``failure: error``)."""
        if self.read_only_reason:
            raise StoreError(f"{failure}: this store is read-only: {self.path} ({self.read_only_reason}); "
                             "pass another store to train or to change runs (RunStore(path), store=..., "
                             "--store or $LORAKIT_STORE)")
        with self._lock:
            try:
                with transaction(self._require()) as c:
                    yield c
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{failure}: {e}") from None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the run store {self.path} is closed")
        return self._conn

    def _query(self, sql: str, params: Iterable = ()) -> list:
        with self._lock:
            try:
                return self._require().execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot read the run store {self.path}: {e}") from None

    @staticmethod
    def _require_run(c, run_id: str) -> None:
        if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise RunNotFound(f"no run {run_id!r} in the run store (save the run before adding to it)")

    # ---------------------------------------------------------------- writing

    def save(self, record: RunRecord) -> None:
        """Write the whole run (row, steps, evals, memory) in one transaction, replacing what was there."""
        if not isinstance(record, RunRecord):
            raise StoreError(f"save() takes a RunRecord, got {type(record).__name__}")
        run_id = rows.check_run_id(record.run_id)
        if record.status not in STATUSES:
            raise StoreError(f"run {run_id}: status must be one of {', '.join(STATUSES)}; got {record.status!r}")
        with self._writing(f"cannot save run {run_id} to {self.path}") as c:
            rows.write_run(c, record, time.time())
            for table in RUN_TABLES:
                c.execute(f"DELETE FROM {table.name} WHERE run_id = ?", (run_id,))
            rows.insert_steps(c, run_id, record.history)
            rows.insert_evals(c, run_id, record.evals, start=0)
            for kind, mem in (("measured", record.memory), ("planned", record.planned_memory)):
                if mem is not None:
                    rows.write_memory(c, run_id, kind, mem)

    def append_steps(self, run_id: str, steps: Iterable[dict]) -> None:
        """Add logged steps to a saved run (one transaction); a step already stored is replaced."""
        steps = list(steps)
        run_id = rows.check_run_id(run_id)
        with self._writing(f"cannot append steps to run {run_id} in {self.path}") as c:
            self._require_run(c, run_id)
            rows.insert_steps(c, run_id, steps)
            c.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (time.time(), run_id))

    def append_evals(self, run_id: str, evals: Iterable[dict]) -> None:
        """Add evaluation results to a saved run (one transaction)."""
        evals = list(evals)
        run_id = rows.check_run_id(run_id)
        with self._writing(f"cannot append evals to run {run_id} in {self.path}") as c:
            self._require_run(c, run_id)
            (n,) = c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM evals WHERE run_id = ?", (run_id,)).fetchone()
            rows.insert_evals(c, run_id, evals, start=n)
            if evals:
                last = evals[-1]
                c.execute(
                    "UPDATE runs SET eval_loss = COALESCE(?, eval_loss), task_metric = COALESCE(?, task_metric),"
                    " updated_at = ? WHERE run_id = ?",
                    (rows.num(last.get("eval_loss")), rows.num(last.get("task_metric")), time.time(), run_id),
                )

    def set_memory(self, run_id: str, measured: Optional[MemoryBreakdown] = None,
                   planned: Optional[MemoryBreakdown] = None) -> None:
        """Store the measured and/or planned memory breakdown of a saved run (one transaction)."""
        run_id = rows.check_run_id(run_id)
        with self._writing(f"cannot store memory of run {run_id} in {self.path}") as c:
            self._require_run(c, run_id)
            for kind, mem in (("measured", measured), ("planned", planned)):
                if mem is not None:
                    rows.write_memory(c, run_id, kind, mem)
            if measured is not None:
                c.execute("UPDATE runs SET mem_total = ?, updated_at = ? WHERE run_id = ?",
                          (int(measured.total), time.time(), run_id))

    def set_status(self, run_id: str, status: str, reason: str = "") -> None:
        """Change a run's status (and reason) without rewriting it."""
        run_id = rows.check_run_id(run_id)
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        with self._writing(f"cannot update run {run_id} in {self.path}") as c:
            self._require_run(c, run_id)
            c.execute("UPDATE runs SET status = ?, reason = ?, updated_at = ? WHERE run_id = ?",
                      (status, reason or "", time.time(), run_id))

    def delete(self, run_id: str) -> list[str]:
        """Remove a run, its steps, evals, memory and its run folder (the adapter and the checkpoints).

        A recorded adapter path is removed only when it resolves inside this store's adapter folder;
        one outside is left alone, logged, and its note returned (empty list: nothing was refused)."""
        run_id = rows.check_run_id(run_id)
        adapter = self.adapter_dir(run_id)
        with self._writing(f"cannot delete run {run_id} from {self.path}") as c:
            row = c.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None and not (adapter.exists() or adapter.is_symlink()):
                raise RunNotFound(f"no run {run_id!r} in the run store {self.path}")
            for table in (*RUN_TABLES, RUNS):
                c.execute(f"DELETE FROM {table.name} WHERE run_id = ?", (run_id,))
        doomed, refused = [adapter], []
        stored = _stored_adapter_path(row[0]) if row is not None else None
        if stored:
            try:
                sp = paths.confined(self.adapters_root, stored, f"adapter path of run {run_id}")
                if sp != adapter.resolve():
                    doomed.append(sp)
            except StoreError as e:
                refused.append(str(e))
                _log.warning("run store %s: %s", self.path, e)
        for d in doomed:
            paths.remove(d)
        return refused

    def adapter_path_of(self, run_id: str) -> Optional[Path]:
        """Run ``run_id``'s recorded adapter folder, resolved and confined to this store's adapter folder
        (StoreError when it points elsewhere); None when the run recorded none."""
        run_id = rows.check_run_id(run_id)
        row = self._query("SELECT record FROM runs WHERE run_id = ?", (run_id,))
        if not row:
            raise RunNotFound(f"no run {run_id!r} in the run store {self.path}")
        stored = _stored_adapter_path(row[0][0])
        return paths.confined(self.adapters_root, stored, f"adapter path of run {run_id}") if stored else None

    def make_room(self) -> bool:
        """Fold the write-ahead log into the file and truncate it (``PRAGMA wal_checkpoint(TRUNCATE)``):
        after a write failed on a full disk, the log's old page copies are the space a retry can use.
        True when the log was emptied."""
        if self.read_only_reason:
            return False
        try:
            with self._lock:
                busy, _, _ = self._require().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        except sqlite3.DatabaseError:
            return False

    def recover_orphans(self) -> list[str]:
        """Mark runs left 'running' by a process of this host that has ended as 'stopped'; their history stays."""
        if self.read_only_reason:
            return []
        dead = orphans.orphans(self._query(orphans.RUNNING_SQL))
        if dead:
            with self._writing(f"cannot update the run store {self.path}") as c:
                orphans.mark_stopped(c, dead)
            _log.info("run store %s: marked %d orphaned run(s) stopped", self.path, len(dead))
        return dead

    # ---------------------------------------------------------------- reading

    def load(self, run_id: str) -> RunRecord:
        """The stored run; :class:`RunNotFound` (a StoreError and a KeyError) when there is none."""
        run_id = rows.check_run_id(run_id)
        records = self._load_where("WHERE run_id = ?", (run_id,))
        if not records:
            raise RunNotFound(f"no run {run_id!r} in the run store {self.path}")
        return records[0]

    def records(self, status: Optional[str] = None, history: bool = True) -> list[RunRecord]:
        """Every stored run, oldest first; only those with ``status`` when given. ``history=False``: a
        table's quick read, each history holding only its last step (see :func:`.rows.read_runs`)."""
        if status is None:
            return self._load_where("", (), history=history)
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        return self._load_where("WHERE status = ?", (status,))

    def table_records(self) -> list[RunRecord]:
        """Every stored run, oldest first, as light records for ``compare()``: config, scalar fields, memory
        and the last step's number only, read in one query (see :mod:`.table_read`); damaged runs are set
        aside as :meth:`records` does."""
        return self._load_where("", (), reader=lambda conn, damaged: table_read.read_table(conn, damaged, self.path))

    def summaries(self, status: Optional[str] = None) -> list[dict]:
        """One small dict per run (no history), oldest first: quick listing for menus and tables."""
        cols = rows.SUMMARY_COLUMNS
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        found = self._query(f"SELECT {', '.join(cols)} FROM runs {where} ORDER BY created_at, rowid", params)
        return [dict(zip(cols, r, strict=True)) for r in found]

    def page(self, page: int = 0, size: int = 50) -> list[RunRecord]:
        """One page of runs for a listing of thousands: page 0 holds the ``size`` newest runs, page 1 the
        ``size`` before them...; oldest first within the page. Only these runs' histories are read."""
        page, size = max(0, int(page)), max(1, int(size))
        return self._load_where("WHERE run_id IN (SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC "
                                "LIMIT ? OFFSET ?)", (size, page * size))

    def load_many(self, run_ids: Iterable[str]) -> list[RunRecord]:
        """The stored runs among ``run_ids``, oldest first (ids not in the store, or unreadable, are left out)."""
        ids = [rows.check_run_id(r) for r in run_ids]
        found: list[RunRecord] = []
        for i in range(0, len(ids), 500):  # SQLite's parameter limit
            chunk = ids[i:i + 500]
            found += self._load_where(f"WHERE run_id IN ({', '.join('?' * len(chunk))})", tuple(chunk))
        return sorted(found, key=lambda r: r.created_at or 0.0)

    def run_ids(self) -> list[str]:
        """Run ids, oldest first."""
        return [r[0] for r in self._query("SELECT run_id FROM runs ORDER BY created_at, rowid")]

    def _load_where(self, where: str, params: tuple, warn: bool = True, history: bool = True,
                    reader=None) -> list[RunRecord]:
        """Runs matching ``where`` read by ``reader(conn, damaged)`` (default: :func:`.rows.read_runs`) in one
        read transaction; damaged runs noted (the store's list when ``where`` is the whole store) and warned."""
        if reader is None:
            def reader(conn, damaged):
                return rows.read_runs(conn, where, params, damaged, self.path, history)
        damaged: list = []
        with self._lock:
            conn = self._require()
            try:
                # One read transaction, so a concurrent writer never shows a half-updated run.
                conn.execute("BEGIN")
                try:
                    found = reader(conn, damaged)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot read the run store {self.path}: {e}") from None
        self.last_damaged = damaged
        if not where:
            self.damaged = damaged  # the whole store was read: this is its list
        if warn and damaged:
            damage.warn(self.path, damaged, self._warned)
        return found

    # ---------------------------------------------------------------- damaged runs

    def check(self) -> list:
        """The runs that cannot be read (``Damaged``: store file, run id, what is wrong); [] when all can."""
        self._load_where("", (), warn=False)
        return list(self.damaged)

    def repair(self, drop: bool = False) -> list[str]:
        """Make damaged runs readable again from what the store still knows (see :func:`.damage.rebuild`),
        or with ``drop=True`` remove them (and their adapters). Returns one line per run saying what was done."""
        notes = []
        for d in self.check():
            if drop:
                self.delete(d.run_id)
                notes.append(f"run {d.run_id}: dropped ({d.problem})")
                continue
            with self._writing(f"cannot repair run {d.run_id} in {self.path}") as c:
                done = damage.rebuild(c, d.run_id)
            notes.append(f"run {d.run_id}: " + ("; ".join(done) or "nothing to rebuild"))
        left = {d.run_id for d in self.check()}
        notes += [f"run {rid}: still unreadable; drop it with repair(drop=True)" for rid in sorted(left)]
        for path, why in self.leftover_checkpoints():
            paths.remove(path)
            notes.append(f"removed {path} ({why})")
        return notes

    def leftover_checkpoints(self) -> list[tuple[Path, str]]:
        """(path, why) of checkpoints nothing can resume from: those a kill cut short while they were written,
        and the checkpoint folders of runs this store no longer has; and the whole folder of such a run when it
        keeps a full fine-tuning's model (large, and no record to export it from). A running run's are left alone."""
        from lorakit.adapters.full_weights import kept
        from lorakit.store import checkpoints

        root = self.adapters_root
        if not root.is_dir():
            return []
        status = {d["run_id"]: d["status"] for d in self.summaries()}
        found = []
        for run_folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            folder = checkpoints.folder_of(run_folder)
            if run_folder.name not in status:
                if kept(run_folder):
                    found.append((run_folder, "the kept weights (and checkpoints) of a run this store does not have"))
                elif folder.is_dir():
                    found.append((folder, "checkpoints of a run this store does not have"))
            elif status[run_folder.name] != "running":
                found += [(c, "a checkpoint cut short while it was written") for c in checkpoints.incomplete(folder)]
        return found

    # ---------------------------------------------------------------- paths, size, lifetime

    @property
    def adapters_root(self) -> Path:
        """``<db dir>/<db stem>_adapters``: where the adapters of this store's runs live."""
        return self.path.parent / f"{self.path.stem}_adapters"

    def adapter_dir(self, run_id: str) -> Path:
        """Where run ``run_id``'s adapter belongs (not created here)."""
        return self.adapters_root / rows.check_run_id(run_id)

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM runs")[0][0])

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        return bool(self._query("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.records())

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{len(self)} run(s)"
        return f"RunStore({str(self.path)!r}, {state})"


def _stored_adapter_path(body: Any) -> Optional[str]:
    """The ``adapter_path`` of a stored record body (None when absent or the body is unreadable)."""
    try:
        stored = json.loads(body).get("adapter_path")
    except (ValueError, TypeError, AttributeError):
        return None
    return stored if isinstance(stored, str) and stored else None


@contextmanager
def store_of(store: Any = None, *, required: bool = False):
    """``with store_of(store) as st:`` — :func:`open_store`, closing the store afterwards if it was opened here."""
    st, opened = open_store(store, required=required)
    try:
        yield st
    finally:
        if opened:
            st.close()


def open_store(store: Any = None, *, required: bool = False) -> tuple[Optional[RunStore], bool]:
    """``(RunStore or None, opened_here)`` for a ``store=`` argument of the public API.

    - a :class:`RunStore`: itself, ``opened_here=False`` (its owner closes it);
    - a file path (``str`` or ``os.PathLike``), or None for the default store (``$LORAKIT_STORE`` or
      ``./lorakit_runs.db``): a new RunStore, ``opened_here=True``: the caller closes it when done;
    - False: keep nothing on disk, ``(None, False)``; refused with ``required=True`` (the caller
      reads runs from the store, e.g. ``compare``).

    Anything else is a TypeError naming the accepted kinds. A file that cannot be used is a
    :class:`StoreError` from RunStore itself.
    """
    if isinstance(store, RunStore):
        return store, False
    if store is False and not required:
        return None, False
    if store is None or isinstance(store, (str, os.PathLike)):
        return RunStore(store), True
    accepted = "a RunStore, a file path or None (the default store: $LORAKIT_STORE or ./lorakit_runs.db)"
    if store is False:
        raise TypeError(f"store=False (keep no runs) cannot be used here, where runs are read from a store; "
                        f"give {accepted}")
    raise TypeError(f"store must be {accepted}, or False to keep no runs; got {type(store).__name__}: {store!r}")
