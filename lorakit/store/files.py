"""Where the run store lives, and refusing a file we must not touch before SQLite opens it.

A file that is not ours (not SQLite, another program's database, a newer schema), a directory or
a path we cannot write is refused with :class:`StoreError` and never modified: the checks read it
read-only, so not even a -wal or -shm file appears next to it.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from lorakit.store.errors import StoreError
from lorakit.store.schema import APPLICATION, ELSEWHERE, SCHEMA_VERSION

ENV_VAR = "LORAKIT_STORE"
DEFAULT_FILENAME = "lorakit_runs.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_store_path() -> Path:
    """``$LORAKIT_STORE`` if set, else ``lorakit_runs.db`` in the current working directory."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_FILENAME


def unwritable(p: Path) -> str:
    """Why the existing store ``p`` cannot be written ("" when it can): SQLite in WAL mode writes the
    file and creates ``-wal`` / ``-shm`` files beside it, so both the file and its folder must be writable."""
    if not os.access(p, os.W_OK):
        return "the file is read-only"
    if not os.access(p.parent, os.W_OK | os.X_OK):
        return f"its folder {p.parent} is read-only"
    return ""


def connect_read_only(p: Path, timeout: float) -> sqlite3.Connection:
    """A connection that never writes and creates nothing beside the file.

    Without a ``-wal`` file beside it (the store was closed cleanly), SQLite's ``immutable=1``: no locks,
    no ``-shm``. With one (a writer is at work, or died), ``mode=ro``, which reads the writer's recent
    transactions through the existing ``-wal`` / ``-shm``; where that cannot open (no ``-shm`` and a
    read-only folder), ``immutable=1`` again, which reads what the main file holds."""
    uri = p.as_uri()
    tries = [f"{uri}?mode=ro", f"{uri}?mode=ro&immutable=1"]
    if not Path(f"{p}-wal").exists():
        tries = tries[1:]
    error = None
    for u in tries:
        try:
            conn = sqlite3.connect(u, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opening is lazy: read once
            return conn
        except sqlite3.Error as e:
            error = e
    raise StoreError(f"cannot open the run store {p} for reading: {error}") from None


def check_file(p: Path, read_only: "bool | None" = False) -> str:
    """Refuse a path we must not or cannot use, before SQLite touches anything. Returns why the store is
    opened read-only ("" : it is writable): ``read_only`` True forces it, None chooses it for an existing
    store that cannot be written, False refuses such a store."""
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
        why = "opened read-only" if read_only else unwritable(p)
        if why and head and read_only is not False:
            return why
        if why:
            raise StoreError(f"cannot write the run store {p}: {why}{ELSEWHERE}")
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
    return ""


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
        ro = connect_read_only(p, 10)
    except StoreError as e:
        if "not a database" in str(e) or "malformed" in str(e):
            raise StoreError(f"{p} is a corrupted SQLite file ({e.__str__().rsplit(': ', 1)[-1]}); it was left "
                             "untouched.") from None
        raise
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
