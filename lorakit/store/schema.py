"""The run store's tables, listed once: the DDL, the INSERT and SELECT column lists and the upgrade
of older files are all generated from :data:`TABLES`.

Layout of the file (schema version 1)::

    meta    (key PK, value)                      schema version, application name
    runs    (run_id PK, created_at, updated_at, status, reason, label, method, quant, rank,
             model, dataset, train_loss, eval_loss, task_metric, mem_total, tokens_per_s,
             wall_s, pid, host, proc_start, config JSON, record JSON, load_s, train_s, eval_s,
             task_eval_s, samples_s, task, family)
    steps   (run_id, step, loss, learning_rate, tokens_per_s, elapsed_s, grad_norm, extra JSON)
    evals   (run_id, idx, step, eval_loss, perplexity, task_metric, extra JSON)
    memory  (run_id, kind 'measured'|'planned', base_weights, adapters, gradients, optimizer,
             activations, cuda JSON, peak, peak_at, extra JSON)
    eval_cache (key PK, created_at, description JSON, task_metric, details JSON, seconds)

Adding a column: append it to its table below (nullable, or NOT NULL with a DEFAULT: SQLite can
only add such columns to an existing table) and give it a value in :mod:`.rows`. Files written
before get the column when they are next opened; older lorakit versions read past it, so an added
column needs no new schema version. Renaming or removing one does.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lorakit.store.errors import StoreError

SCHEMA_VERSION = 1
APPLICATION = "lorakit-runs"
ELSEWHERE = "; choose another file with RunStore(path) or $LORAKIT_STORE"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    """(column, SQL declaration), in table order."""
    key: tuple[str, ...] = ()
    """A composite primary key (a single-column key is declared on its column)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create(self) -> str:
        parts = [f"{name} {decl}" for name, decl in self.columns]
        if self.key:
            parts.append(f"PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(parts)})"

    def insert(self, verb: str = "INSERT") -> str:
        """``verb INTO table (every column) VALUES (?, ...)``, parameters in :attr:`names` order."""
        return f"{verb} INTO {self.name} ({', '.join(self.names)}) VALUES ({', '.join('?' * len(self.names))})"


META = Table("meta", (("key", "TEXT PRIMARY KEY"), ("value", "TEXT NOT NULL")))
RUNS = Table("runs", (
    ("run_id", "TEXT PRIMARY KEY"),
    ("created_at", "REAL NOT NULL"),
    ("updated_at", "REAL NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("reason", "TEXT NOT NULL DEFAULT ''"),
    ("label", "TEXT NOT NULL DEFAULT ''"),
    ("method", "TEXT"),
    ("quant", "TEXT"),
    ("rank", "INTEGER"),
    ("model", "TEXT"),
    ("dataset", "TEXT"),
    ("train_loss", "REAL"),
    ("eval_loss", "REAL"),
    ("task_metric", "REAL"),
    ("mem_total", "INTEGER"),
    ("tokens_per_s", "REAL"),
    ("wall_s", "REAL"),
    ("pid", "INTEGER"),  # pid, host, proc_start: the process writing a 'running' run (see .orphans)
    ("host", "TEXT"),
    ("proc_start", "TEXT"),
    ("config", "TEXT NOT NULL"),  # RunConfig as JSON
    ("record", "TEXT NOT NULL"),  # the RunRecord as JSON, without what the other tables hold
    ("load_s", "REAL"),  # where the run's time went (RunRecord's fields of the same names)
    ("train_s", "REAL"),
    ("eval_s", "REAL"),
    ("task_eval_s", "REAL"),
    ("samples_s", "REAL"),
    ("task", "TEXT"),  # what the model trained for (RunRecord.task) and its family; NULL: not loaded, or older
    ("family", "TEXT"),
))
STEPS = Table("steps", (
    ("run_id", "TEXT NOT NULL"),
    ("step", "INTEGER NOT NULL"),
    ("loss", "REAL"),
    ("learning_rate", "REAL"),
    ("tokens_per_s", "REAL"),
    ("elapsed_s", "REAL"),
    ("grad_norm", "REAL"),
    ("extra", "TEXT"),  # JSON: keys without a column, and non-finite values (SQLite turns NaN into NULL)
), key=("run_id", "step"))
EVALS = Table("evals", (
    ("run_id", "TEXT NOT NULL"),
    ("idx", "INTEGER NOT NULL"),
    ("step", "INTEGER"),
    ("eval_loss", "REAL"),
    ("perplexity", "REAL"),
    ("task_metric", "REAL"),
    ("extra", "TEXT"),
), key=("run_id", "idx"))
MEMORY = Table("memory", (
    ("run_id", "TEXT NOT NULL"),
    ("kind", "TEXT NOT NULL CHECK (kind IN ('measured', 'planned'))"),
    ("base_weights", "INTEGER NOT NULL"),
    ("adapters", "INTEGER NOT NULL"),
    ("gradients", "INTEGER NOT NULL"),
    ("optimizer", "INTEGER NOT NULL"),
    ("activations", "INTEGER NOT NULL"),
    ("cuda", "TEXT"),  # JSON: the CUDA allocator's figures, when measured on CUDA
    ("peak", "INTEGER"),  # the step's peak (NULL: not known, e.g. a run stored before peaks existed)
    ("peak_at", "TEXT"),
    ("extra", "TEXT"),  # JSON: transient, device_overhead, assumes
), key=("run_id", "kind"))
EVAL_CACHE = Table("eval_cache", (  # the base model's task result, reused by later runs (see .eval_cache)
    ("key", "TEXT PRIMARY KEY"),  # sha256 of the description
    ("created_at", "REAL NOT NULL"),
    ("description", "TEXT NOT NULL"),  # JSON: what the key was hashed from, for people reading the file
    ("task_metric", "REAL"),  # NULL: the dataset has no automatic metric
    ("details", "TEXT NOT NULL"),  # JSON: evaluate_task's per-example details
    ("seconds", "REAL"),  # what computing it took (what a hit saves)
))
TABLES = (META, RUNS, STEPS, EVALS, MEMORY, EVAL_CACHE)
RUN_TABLES = (STEPS, EVALS, MEMORY)  # the tables keyed by run_id besides runs itself


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on an error, and when the COMMIT itself fails (busy, disk full)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # never leave a transaction open
            conn.execute("ROLLBACK")
        raise


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new file, add the columns an older file lacks, stamp the meta rows."""
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with transaction(conn) as c:
            for table in TABLES:
                c.execute(table.create())
                _add_missing_columns(c, table)
            c.execute("CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at)")
            meta = (("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                    ("created_at", repr(time.time())))
            c.executemany(f"{META.insert('INSERT OR IGNORE')}", meta)
    except sqlite3.DatabaseError as e:
        msg = str(e)
        if "readonly" in msg or "unable to open" in msg:
            raise StoreError(f"cannot write the run store {path}: {msg}{ELSEWHERE}") from None
        raise StoreError(f"cannot use the run store {path}: {msg}") from None


def _add_missing_columns(c: sqlite3.Connection, table: Table) -> None:
    have = {row[1] for row in c.execute(f"PRAGMA table_info({table.name})")}
    for name, decl in table.columns:
        if name not in have:
            c.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {decl}")
