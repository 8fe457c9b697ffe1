"""Where the run store lives, and refusing a file we must not touch before SQLite opens it.

A file that is not ours (not SQLite, another program's database, a newer schema), a directory or
a path we cannot write is refused with :class:`StoreError` and never modified: the checks read it
read-only, so not even a -wal or -shm file appears next to it.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import StoreError
from .schema import APPLICATION, ELSEWHERE, SCHEMA_VERSION

ENV_VAR = "LORAKIT_STORE"
DEFAULT_FILENAME = "lorakit_runs.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_store_path() -> Path:
    """``$LORAKIT_STORE`` if set, else ``lorakit_runs.db`` in the current working directory."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_FILENAME


def check_file(p: Path) -> None:
    """Refuse a path we must not or cannot write, before SQLite touches anything."""
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
        if head:  # an empty file is ours to initialise
            _check_existing(p)
        if not os.access(p, os.W_OK):
            raise StoreError(f"cannot write the run store {p}: the file is read-only{ELSEWHERE}")
    else:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the run store {p}: its directory {p.parent} does not exist and cannot be "
                f"created ({e.strerror or e}){ELSEWHERE}"
            ) from None
        if not p.parent.is_dir():
            raise StoreError(f"cannot create the run store {p}: {p.parent} is not a directory{ELSEWHERE}")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write the run store {p}: the directory {p.parent} is read-only{ELSEWHERE}")


def _check_existing(p: Path) -> None:
    """Read-only look at an existing SQLite file: is it ours, and a schema we understand?"""
    meta = _read_meta(p)
    if meta is None:
        return  # an empty database: ours to initialise
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


def _read_meta(p: Path):
    """The meta table as a dict, None for a database without tables; StoreError for one without meta."""
    try:
        ro = sqlite3.connect(p.as_uri() + "?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the run store {p}: {e}") from None
    try:
        tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables:
            raise StoreError(
                f"{p} is an SQLite database without the lorakit run-store schema (tables: "
                f"{', '.join(sorted(tables))}); it was left untouched. Use another file for the run store."
            )
        return dict(ro.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{p} is a corrupted SQLite file ({e}); it was left untouched.") from None
    finally:
        ro.close()


def connect(p: Path, timeout: float) -> sqlite3.Connection:
    """One autocommit connection shared by threads (the store serialises its use with a lock)."""
    try:
        return sqlite3.connect(str(p), timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the run store {p}: {e}") from None
