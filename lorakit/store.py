"""The run store: every run in one SQLite file, so runs survive a kernel restart and can be compared.

Layout of the file (schema version 1)::

    meta    (key PK, value)                      schema version, application name
    runs    (run_id PK, created_at, updated_at, status, reason, label, method, quant, rank,
             model, dataset, train_loss, eval_loss, task_metric, mem_total, tokens_per_s,
             wall_s, pid, host, proc_start, config JSON, record JSON)
    steps   (run_id, step, loss, learning_rate, tokens_per_s, elapsed_s, grad_norm, extra JSON)
    evals   (run_id, idx, step, eval_loss, perplexity, task_metric, extra JSON)
    memory  (run_id, kind 'measured'|'planned', base_weights, adapters, gradients, optimizer,
             activations, cuda JSON)

``runs.record`` holds the RunRecord without its history, evals and memory; those live in their
own tables (they are what grows during training) and are the source of truth when loading.
Non-finite numbers (a NaN loss) are kept: SQLite turns NaN into NULL, so they are also written
to the row's ``extra`` JSON and restored from there.

Every write is one transaction (``save`` writes the run row, its steps, evals and memory
together), and the file is in WAL mode, so a process killed mid-write never leaves a
half-written run. A file that is not ours (not SQLite, another program's database, a newer
schema) is refused with :class:`StoreError` and never modified.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from .memory import CATEGORIES, MemoryBreakdown
from .record import STATUSES, RunRecord

__all__ = ["RunStore", "StoreError", "RunNotFound", "StoreSink", "default_store_path", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
APPLICATION = "lorakit-runs"
ENV_VAR = "LORAKIT_STORE"
DEFAULT_FILENAME = "lorakit_runs.db"
ORPHAN_REASON = "process ended before the run finished"

_SQLITE_MAGIC = b"SQLite format 3\x00"
_ELSEWHERE = "; choose another file with RunStore(path) or $LORAKIT_STORE"
_STEP_COLS = ("loss", "learning_rate", "tokens_per_s", "elapsed_s", "grad_norm")
_EVAL_COLS = ("eval_loss", "perplexity", "task_metric")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# Kept out of runs.record: they have tables of their own.
_TABLE_FIELDS = ("history", "evals", "memory", "planned_memory")

_log = logging.getLogger("lorakit")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    label        TEXT NOT NULL DEFAULT '',
    method       TEXT,
    quant        TEXT,
    rank         INTEGER,
    model        TEXT,
    dataset      TEXT,
    train_loss   REAL,
    eval_loss    REAL,
    task_metric  REAL,
    mem_total    INTEGER,
    tokens_per_s REAL,
    wall_s       REAL,
    pid          INTEGER,
    host         TEXT,
    proc_start   TEXT,
    config       TEXT NOT NULL,
    record       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id        TEXT NOT NULL,
    step          INTEGER NOT NULL,
    loss          REAL,
    learning_rate REAL,
    tokens_per_s  REAL,
    elapsed_s     REAL,
    grad_norm     REAL,
    extra         TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS evals (
    run_id      TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    step        INTEGER,
    eval_loss   REAL,
    perplexity  REAL,
    task_metric REAL,
    extra       TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS memory (
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('measured', 'planned')),
    base_weights INTEGER NOT NULL,
    adapters     INTEGER NOT NULL,
    gradients    INTEGER NOT NULL,
    optimizer    INTEGER NOT NULL,
    activations  INTEGER NOT NULL,
    cuda         TEXT,
    PRIMARY KEY (run_id, kind)
);
"""
_TABLES = ("meta", "runs", "steps", "evals", "memory")


class StoreError(RuntimeError):
    """The run store cannot be used: the message says which file and why, in plain words."""


class RunNotFound(StoreError, KeyError):
    """No run with that id in this store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def default_store_path() -> Path:
    """``$LORAKIT_STORE`` if set, else ``lorakit_runs.db`` in the current working directory."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_FILENAME


# --------------------------------------------------------------------------- value helpers

def _plain(x: Any) -> Any:
    """numpy / torch scalars -> Python numbers; everything else unchanged."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    item = getattr(x, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            return x
    return x


def _json_default(o: Any) -> Any:
    o2 = _plain(o)
    if o2 is not o:
        return o2
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "as_dict"):
        return o.as_dict()
    return str(o)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


def _num(x: Any) -> Optional[float]:
    """A value for a REAL column (NaN becomes NULL there; see _split_row)."""
    x = _plain(x)
    if x is None or isinstance(x, str):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _int(x: Any) -> Optional[int]:
    x = _plain(x)
    if x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def _split_row(entry: dict, cols: tuple) -> tuple[list, Optional[str]]:
    """Column values for ``cols`` plus an ``extra`` JSON of everything else (and non-finite values)."""
    values, extra = [], {}
    for c in cols:
        v = _plain(entry.get(c))
        f = _num(v)
        if f is not None and not math.isfinite(f):
            extra[c] = f  # JSON keeps NaN / inf; SQLite would turn NaN into NULL
        values.append(f)
    for k, v in entry.items():
        if k not in cols and k not in ("step", "run_id", "idx"):
            extra[k] = _plain(v)
    return values, (_dumps(extra) if extra else None)


def _join_row(step: Any, values: tuple, cols: tuple, extra: Optional[str]) -> dict:
    d = {"step": step}
    d.update(zip(cols, values))
    if extra:
        d.update(json.loads(extra))
    return d


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id) or run_id in (".", ".."):
        raise StoreError(
            f"invalid run id {run_id!r}: use letters, digits, '_', '-' or '.' (at most 128 characters)"
        )
    return run_id


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


_HOST = socket.gethostname()


def _lenient_config(d: dict):
    """RunConfig from a stored dict; a config that no longer validates still loads (runs are never lost)."""
    from dataclasses import MISSING, fields

    from .config import RunConfig

    try:
        return RunConfig.from_dict(d)
    except Exception:  # noqa: BLE001 - e.g. a model name a later lorakit no longer knows
        known = {f.name: f for f in fields(RunConfig)}
        cfg = object.__new__(RunConfig)
        for name, f in known.items():
            if name in d:
                value = d[name]
                if name == "target_modules" and isinstance(value, list):
                    value = tuple(value)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                value = None
            object.__setattr__(cfg, name, value)
        return cfg


# --------------------------------------------------------------------------- the store

class RunStore:
    """All runs in one SQLite file.

    ``RunStore()`` opens ``$LORAKIT_STORE`` or ``./lorakit_runs.db`` (created when missing).
    Adapters of run ``r`` belong in ``adapter_dir(r)`` = ``<db dir>/<db stem>_adapters/<r>``.
    Safe to share between threads (one connection behind a lock). Usable as a context manager.
    """

    def __init__(self, path: Union[str, os.PathLike, None] = None, *, timeout: float = 30.0):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.path = self.path.absolute()
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._check_file()
        self._conn = self._connect(timeout)
        try:
            self._init_schema()
            self.recover_orphans()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # ---------------------------------------------------------------- opening

    def _check_file(self) -> None:
        """Refuse a path we must not or cannot write, before SQLite touches anything."""
        p = self.path
        if p.is_dir():
            raise StoreError(f"run store path {p} is a directory; give a file path such as {p / DEFAULT_FILENAME}")
        if p.exists():
            if not p.is_file():
                raise StoreError(f"run store path {p} is not a regular file")
            try:
                with open(p, "rb") as f:
                    head = f.read(len(_SQLITE_MAGIC))
            except OSError as e:
                raise StoreError(f"cannot read the run store {p}: {e.strerror or e}") from None
            if head and head != _SQLITE_MAGIC:
                raise StoreError(
                    f"{p} is not a lorakit run store (not an SQLite database); it was left untouched. "
                    "Point the store at another file (RunStore(path) or $LORAKIT_STORE)."
                )
            if head:
                self._inspect_existing()
            if not os.access(p, os.W_OK):
                raise StoreError(f"cannot write the run store {p}: the file is read-only{_ELSEWHERE}")
            parent = p.parent
        else:
            parent = p.parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"cannot create the run store {p}: its directory {parent} does not exist and cannot be "
                    f"created ({e.strerror or e}){_ELSEWHERE}"
                ) from None
            if not parent.is_dir():
                raise StoreError(f"cannot create the run store {p}: {parent} is not a directory{_ELSEWHERE}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write the run store {p}: the directory {parent} is read-only{_ELSEWHERE}")

    def _inspect_existing(self) -> None:
        """Read-only look at an existing SQLite file: is it ours, and a schema we understand?"""
        p = self.path
        try:
            ro = sqlite3.connect(p.as_uri() + "?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the run store {p}: {e}") from None
        try:
            tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                return  # an empty database: ours to initialise
            if "meta" not in tables:
                raise StoreError(
                    f"{p} is an SQLite database without the lorakit run-store schema (tables: "
                    f"{', '.join(sorted(tables))}); it was left untouched. Use another file for the run store."
                )
            meta = dict(ro.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{p} is a corrupted SQLite file ({e}); it was left untouched.") from None
        finally:
            ro.close()
        if meta.get("application") != APPLICATION or "schema_version" not in meta:
            raise StoreError(
                f"{p} is an SQLite database without the lorakit run-store schema; it was left untouched. "
                "Use another file for the run store."
            )
        try:
            version = int(meta["schema_version"])
        except ValueError:
            raise StoreError(f"{p} has an unreadable schema version {meta['schema_version']!r}; left untouched.") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{p} was written by a newer lorakit (run-store schema {version}; this version reads up to "
                f"{SCHEMA_VERSION}). Upgrade lorakit to open it; the file was left untouched."
            )

    def _connect(self, timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the run store {self.path}: {e}") from None
        return conn

    def _init_schema(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with self._tx() as c:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('application', ?)", (APPLICATION,))
                c.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                c.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (repr(time.time()),)
                )
        except sqlite3.DatabaseError as e:
            msg = str(e)
            if "readonly" in msg or "unable to open" in msg:
                raise StoreError(f"cannot write the run store {self.path}: {msg}{_ELSEWHERE}") from None
            raise StoreError(f"cannot use the run store {self.path}: {msg}") from None

    # ---------------------------------------------------------------- plumbing

    class _Tx:
        """``with store._tx() as c:`` — BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), under the lock."""

        def __init__(self, store: "RunStore"):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                conn = self.store._require()
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return conn

        def __exit__(self, exc_type, exc, tb) -> None:
            conn = self.store._conn
            try:
                if conn is not None and conn.in_transaction:
                    if exc_type is None:
                        try:
                            conn.execute("COMMIT")
                        except BaseException:
                            if conn.in_transaction:  # e.g. busy or disk full: undo, never leave it open
                                conn.execute("ROLLBACK")
                            raise
                    else:
                        conn.execute("ROLLBACK")
            finally:
                self.store._lock.release()

    def _tx(self) -> "RunStore._Tx":
        return RunStore._Tx(self)

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

    # ---------------------------------------------------------------- writing

    def save(self, record: RunRecord) -> None:
        """Write the whole run (row, steps, evals, memory) in one transaction, replacing what was there."""
        if not isinstance(record, RunRecord):
            raise StoreError(f"save() takes a RunRecord, got {type(record).__name__}")
        run_id = _check_run_id(record.run_id)
        if record.status not in STATUSES:
            raise StoreError(f"run {run_id}: status must be one of {', '.join(STATUSES)}; got {record.status!r}")
        try:
            with self._tx() as c:
                self._write_run_row(c, record)
                c.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM evals WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM memory WHERE run_id = ?", (run_id,))
                self._insert_steps(c, run_id, record.history)
                self._insert_evals(c, run_id, record.evals, start=0)
                for kind, mem in (("measured", record.memory), ("planned", record.planned_memory)):
                    if mem is not None:
                        self._write_memory(c, run_id, kind, mem)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot save run {run_id} to {self.path}: {e}") from None

    def append_steps(self, run_id: str, steps: Iterable[dict]) -> None:
        """Add logged steps to a saved run (one transaction); a step already stored is replaced."""
        steps = list(steps)
        run_id = _check_run_id(run_id)
        try:
            with self._tx() as c:
                self._require_run(c, run_id)
                self._insert_steps(c, run_id, steps)
                c.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (time.time(), run_id))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot append steps to run {run_id} in {self.path}: {e}") from None

    def append_evals(self, run_id: str, evals: Iterable[dict]) -> None:
        """Add evaluation results to a saved run (one transaction)."""
        evals = list(evals)
        run_id = _check_run_id(run_id)
        try:
            with self._tx() as c:
                self._require_run(c, run_id)
                (n,) = c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM evals WHERE run_id = ?", (run_id,)).fetchone()
                self._insert_evals(c, run_id, evals, start=n)
                if evals:
                    last = evals[-1]
                    c.execute(
                        "UPDATE runs SET eval_loss = COALESCE(?, eval_loss), task_metric = COALESCE(?, task_metric),"
                        " updated_at = ? WHERE run_id = ?",
                        (_num(last.get("eval_loss")), _num(last.get("task_metric")), time.time(), run_id),
                    )
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot append evals to run {run_id} in {self.path}: {e}") from None

    def set_memory(self, run_id: str, measured: Optional[MemoryBreakdown] = None,
                   planned: Optional[MemoryBreakdown] = None) -> None:
        """Store the measured and/or planned memory breakdown of a saved run (one transaction)."""
        run_id = _check_run_id(run_id)
        try:
            with self._tx() as c:
                self._require_run(c, run_id)
                for kind, mem in (("measured", measured), ("planned", planned)):
                    if mem is not None:
                        self._write_memory(c, run_id, kind, mem)
                if measured is not None:
                    c.execute("UPDATE runs SET mem_total = ?, updated_at = ? WHERE run_id = ?",
                              (int(measured.total), time.time(), run_id))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot store memory of run {run_id} in {self.path}: {e}") from None

    def set_status(self, run_id: str, status: str, reason: str = "") -> None:
        """Change a run's status (and reason) without rewriting it."""
        run_id = _check_run_id(run_id)
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        try:
            with self._tx() as c:
                self._require_run(c, run_id)
                c.execute("UPDATE runs SET status = ?, reason = ?, updated_at = ? WHERE run_id = ?",
                          (status, reason or "", time.time(), run_id))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot update run {run_id} in {self.path}: {e}") from None

    def delete(self, run_id: str) -> None:
        """Remove a run, its steps, evals, memory and its adapter directory."""
        run_id = _check_run_id(run_id)
        adapter = self.adapter_dir(run_id)
        try:
            with self._tx() as c:
                row = c.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is None and not adapter.exists():
                    raise RunNotFound(f"no run {run_id!r} in the run store {self.path}")
                for table in ("steps", "evals", "memory", "runs"):
                    c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608 - fixed names
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot delete run {run_id} from {self.path}: {e}") from None
        extra_dirs = []
        if row is not None:
            try:
                stored = json.loads(row[0]).get("adapter_path")
            except ValueError:
                stored = None
            # A recorded adapter path is removed only when it lies inside this store's adapter folder.
            if stored:
                sp = Path(stored).absolute()
                if self.adapters_root in sp.parents and sp != adapter:
                    extra_dirs.append(sp)
        for d in [adapter, *extra_dirs]:
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            elif d.exists():
                d.unlink(missing_ok=True)

    def recover_orphans(self) -> list[str]:
        """Mark runs left 'running' by a process of this host that has ended as 'stopped'; their history stays."""
        rows = self._query("SELECT run_id, pid, host, proc_start FROM runs WHERE status = 'running'")
        dead = [rid for rid, pid, host, start in rows if host == _HOST and not _process_alive(pid, start)]
        if dead:
            try:
                with self._tx() as c:
                    for rid in dead:
                        c.execute(
                            "UPDATE runs SET status = 'stopped', reason = ?, updated_at = ? "
                            "WHERE run_id = ? AND status = 'running'",
                            (ORPHAN_REASON, time.time(), rid),
                        )
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot update the run store {self.path}: {e}") from None
            _log.info("run store %s: marked %d orphaned run(s) stopped", self.path, len(dead))
        return dead

    # ---------------------------------------------------------------- write helpers

    @staticmethod
    def _require_run(c, run_id: str) -> None:
        if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise RunNotFound(f"no run {run_id!r} in the run store (save the run before adding to it)")

    def _write_run_row(self, c, r: RunRecord) -> None:
        cfg = r.config
        cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        body = r.to_dict()
        for k in _TABLE_FIELDS:
            body.pop(k, None)
        now = time.time()
        created = r.created_at
        if not created:  # keep the first save's time rather than moving the run in the list
            row = c.execute("SELECT created_at FROM runs WHERE run_id = ?", (r.run_id,)).fetchone()
            created = row[0] if row else now
        running = r.status == "running"
        pid = os.getpid()
        c.execute(
            """INSERT INTO runs (run_id, created_at, updated_at, status, reason, label, method, quant, rank, model,
                   dataset, train_loss, eval_loss, task_metric, mem_total, tokens_per_s, wall_s, pid, host,
                   proc_start, config, record)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (run_id) DO UPDATE SET
                   created_at = excluded.created_at, updated_at = excluded.updated_at, status = excluded.status,
                   reason = excluded.reason, label = excluded.label, method = excluded.method,
                   quant = excluded.quant, rank = excluded.rank, model = excluded.model,
                   dataset = excluded.dataset, train_loss = excluded.train_loss, eval_loss = excluded.eval_loss,
                   task_metric = excluded.task_metric, mem_total = excluded.mem_total,
                   tokens_per_s = excluded.tokens_per_s, wall_s = excluded.wall_s, pid = excluded.pid,
                   host = excluded.host, proc_start = excluded.proc_start, config = excluded.config,
                   record = excluded.record""",
            (
                r.run_id, float(created), now, r.status, r.reason or "", str(getattr(cfg, "label", "")),
                cfg_dict.get("method"), cfg_dict.get("quant"), _int(cfg_dict.get("rank")), cfg_dict.get("model"),
                cfg_dict.get("dataset"), _num(r.train_loss), _num(r.eval_loss), _num(r.task_metric),
                int(r.memory.total) if r.memory is not None else None, _num(r.tokens_per_s), _num(r.wall_s),
                pid if running else None, _HOST if running else None,
                _proc_start(pid) if running else None,
                _dumps(cfg_dict), _dumps(body),
            ),
        )

    @staticmethod
    def _insert_steps(c, run_id: str, steps: list) -> None:
        rows = []
        for i, s in enumerate(steps):
            s = dict(s)
            step = _int(s.get("step"))
            values, extra = _split_row(s, _STEP_COLS)
            rows.append((run_id, i + 1 if step is None else step, *values, extra))
        if rows:
            c.executemany(
                "INSERT OR REPLACE INTO steps (run_id, step, loss, learning_rate, tokens_per_s, elapsed_s, grad_norm,"
                " extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @staticmethod
    def _insert_evals(c, run_id: str, evals: list, start: int) -> None:
        rows = []
        for i, e in enumerate(evals):
            e = dict(e)
            values, extra = _split_row(e, _EVAL_COLS)
            rows.append((run_id, start + i, _int(e.get("step")), *values, extra))
        if rows:
            c.executemany(
                "INSERT INTO evals (run_id, idx, step, eval_loss, perplexity, task_metric, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @staticmethod
    def _write_memory(c, run_id: str, kind: str, mem: MemoryBreakdown) -> None:
        if isinstance(mem, dict):
            mem = MemoryBreakdown.from_dict(mem)
        c.execute(
            "INSERT OR REPLACE INTO memory (run_id, kind, base_weights, adapters, gradients, optimizer, activations,"
            " cuda) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, kind, *(int(_plain(getattr(mem, k))) for k in CATEGORIES),
             _dumps(mem.cuda) if mem.cuda is not None else None),
        )

    # ---------------------------------------------------------------- reading

    def load(self, run_id: str) -> RunRecord:
        """The stored run; :class:`RunNotFound` (a StoreError and a KeyError) when there is none."""
        run_id = _check_run_id(run_id)
        records = self._load_where("WHERE run_id = ?", (run_id,))
        if not records:
            raise RunNotFound(f"no run {run_id!r} in the run store {self.path}")
        return records[0]

    def records(self, status: Optional[str] = None) -> list[RunRecord]:
        """Every stored run, oldest first; only those with ``status`` when given."""
        if status is None:
            return self._load_where("", ())
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        return self._load_where("WHERE status = ?", (status,))

    def summaries(self, status: Optional[str] = None) -> list[dict]:
        """One small dict per run (no history), oldest first: quick listing for menus and tables."""
        cols = ("run_id", "created_at", "status", "reason", "label", "method", "quant", "rank", "model",
                "dataset", "train_loss", "eval_loss", "task_metric", "mem_total", "tokens_per_s", "wall_s")
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self._query(f"SELECT {', '.join(cols)} FROM runs {where} ORDER BY created_at, rowid", params)
        return [dict(zip(cols, r)) for r in rows]

    def run_ids(self) -> list[str]:
        """Run ids, oldest first."""
        return [r[0] for r in self._query("SELECT run_id FROM runs ORDER BY created_at, rowid")]

    def _load_where(self, where: str, params: tuple) -> list[RunRecord]:
        with self._lock:
            conn = self._require()
            try:
                # One read transaction, so a concurrent writer never shows a half-updated run.
                conn.execute("BEGIN")
                try:
                    runs = conn.execute(
                        f"SELECT run_id, status, reason, created_at, config, record FROM runs {where} "
                        "ORDER BY created_at, rowid", params
                    ).fetchall()
                    sub = f"SELECT run_id FROM runs {where}"
                    steps = conn.execute(
                        f"SELECT run_id, step, {', '.join(_STEP_COLS)}, extra FROM steps "
                        f"WHERE run_id IN ({sub}) ORDER BY run_id, step", params
                    ).fetchall()
                    evals = conn.execute(
                        f"SELECT run_id, step, {', '.join(_EVAL_COLS)}, extra FROM evals "
                        f"WHERE run_id IN ({sub}) ORDER BY run_id, idx", params
                    ).fetchall()
                    mems = conn.execute(
                        f"SELECT run_id, kind, {', '.join(CATEGORIES)}, cuda FROM memory WHERE run_id IN ({sub})",
                        params,
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot read the run store {self.path}: {e}") from None
        hist: dict[str, list] = {}
        for row in steps:
            hist.setdefault(row[0], []).append(_join_row(row[1], row[2:-1], _STEP_COLS, row[-1]))
        evs: dict[str, list] = {}
        for row in evals:
            evs.setdefault(row[0], []).append(_join_row(row[1], row[2:-1], _EVAL_COLS, row[-1]))
        mem: dict[tuple, MemoryBreakdown] = {}
        for row in mems:
            cuda = json.loads(row[-1]) if row[-1] else None
            mem[(row[0], row[1])] = MemoryBreakdown(*(int(v) for v in row[2:-1]), cuda=cuda)
        out = []
        for run_id, status, reason, created_at, config, body in runs:
            d = json.loads(body)
            d.update(run_id=run_id, status=status, reason=reason, created_at=created_at)
            d["config"] = _lenient_config(json.loads(config))
            d["history"] = hist.get(run_id, [])
            d["evals"] = evs.get(run_id, [])
            d["memory"] = mem.get((run_id, "measured"))
            d["planned_memory"] = mem.get((run_id, "planned"))
            known = RunRecord.__dataclass_fields__
            out.append(RunRecord(**{k: v for k, v in d.items() if k in known}))
        return out

    # ---------------------------------------------------------------- paths, size, lifetime

    @property
    def adapters_root(self) -> Path:
        """``<db dir>/<db stem>_adapters``: where the adapters of this store's runs live."""
        return self.path.parent / f"{self.path.stem}_adapters"

    def adapter_dir(self, run_id: str) -> Path:
        """Where run ``run_id``'s adapter belongs (not created here)."""
        return self.adapters_root / _check_run_id(run_id)

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


# --------------------------------------------------------------------------- the sink

class StoreSink:
    """An events sink that records a run in a :class:`RunStore` as it happens.

    RunStarted inserts the run as 'running'; StepLogged is buffered and written every
    ``flush_every`` steps; EvalDone and MemoryMeasured are written at once; RunFinished saves the
    full record in one transaction. A sink never raises: a store error is logged and kept in
    ``errors``, and training goes on.
    """

    def __init__(self, store: RunStore, flush_every: int = 5):
        self.store = store
        self.flush_every = max(1, int(flush_every))
        self.errors: list[BaseException] = []
        self._buffer: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        from . import events as ev

        try:
            if isinstance(event, ev.RunStarted):
                self._started(event)
            elif isinstance(event, ev.StepLogged):
                step = {"step": event.step, "loss": event.loss, "learning_rate": event.learning_rate,
                        "tokens_per_s": event.tokens_per_s, "elapsed_s": event.elapsed_s,
                        "grad_norm": event.grad_norm}
                with self._lock:
                    buf = self._buffer.setdefault(event.run_id, [])
                    buf.append(step)
                    full = len(buf) >= self.flush_every or event.step >= event.max_steps
                if full:
                    self.flush(event.run_id)
            elif isinstance(event, ev.EvalDone):
                self.flush(event.run_id)
                self.store.append_evals(event.run_id, [{"step": event.step, "eval_loss": event.eval_loss,
                                                        "perplexity": event.perplexity,
                                                        "task_metric": event.task_metric}])
            elif isinstance(event, ev.MemoryMeasured):
                self.store.set_memory(event.run_id, measured=event.measured, planned=event.planned)
            elif isinstance(event, ev.RunFinished):
                self._finished(event)
        except Exception as e:  # noqa: BLE001 - a sink must not kill training
            self.errors.append(e)
            _log.exception("run store sink failed on %s", type(event).__name__)

    def _started(self, event) -> None:
        from .config import RunConfig

        cfg = event.config
        if isinstance(cfg, dict):
            cfg = RunConfig.from_dict(cfg)
        record = RunRecord(config=cfg, run_id=event.run_id, status="running", created_at=time.time(),
                           trainable_params=int(event.trainable_params or 0),
                           total_params=int(event.total_params or 0), planned_memory=event.planned_memory)
        with self._lock:
            self._buffer[event.run_id] = []
        self.store.save(record)

    def _finished(self, event) -> None:
        record = event.record
        if isinstance(record, RunRecord):
            with self._lock:
                self._buffer.pop(event.run_id, None)  # the record's history supersedes the buffer
            if record.status != event.status and event.status in STATUSES:
                record = dataclasses.replace(record, status=event.status, reason=record.reason or event.reason)
            self.store.save(record)
        else:
            self.flush(event.run_id)
            self.store.set_status(event.run_id, event.status, event.reason)

    def flush(self, run_id: Optional[str] = None) -> None:
        """Write buffered steps now (of one run, or of all)."""
        with self._lock:
            ids = [run_id] if run_id is not None else list(self._buffer)
            pending = {rid: self._buffer.get(rid, []) for rid in ids}
            for rid in ids:
                if rid in self._buffer:
                    self._buffer[rid] = []
        for rid, steps in pending.items():
            if steps:
                try:
                    self.store.append_steps(rid, steps)
                except BaseException:
                    with self._lock:  # keep them for the next try
                        self._buffer[rid] = steps + self._buffer.get(rid, [])
                    raise
