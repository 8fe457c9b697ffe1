"""Runs that move between stores: ``merge`` brings another store's runs (their rows, and their run
folders: the adapter and, unless ``checkpoints=False``, the checkpoints a run resumes from) into this one;
``export_runs`` packs chosen runs into a new store file, or into one archive file that holds a store and
its run folders.

A run is its id: one the target already has is left as it is (never duplicated, never overwritten).
A run still 'running' in the source is left out (its process may write to it yet); merge it once it
ends. The source is only read (an SQLite read-only connection), never changed.
"""
from __future__ import annotations

import shutil
import sqlite3
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from lorakit.store.checkpoints import FOLDER as CHECKPOINTS
from lorakit.store.errors import RunNotFound, StoreError
from lorakit.store.files import _SQLITE_MAGIC, _check_existing
from lorakit.store.record_rows import check_run_id, read_runs
from lorakit.store.runs import RunStore, open_store

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_PACKED_DB = "runs.db"  # the store's name inside an archive (its run folders: runs_adapters/)


@dataclass
class MergeResult:
    """What a merge did: the run ids added, those the target already had, those left out as running."""
    source: str
    added: list = field(default_factory=list)
    already: list = field(default_factory=list)
    running: list = field(default_factory=list)
    without_folder: list = field(default_factory=list)  # added runs whose source had no run folder (no adapter)

    def __str__(self) -> str:
        parts = [f"merged {len(self.added)} run(s) from {self.source}"]
        if self.already:
            parts.append(f"{len(self.already)} already here, left as they are ({', '.join(self.already)})")
        if self.running:
            parts.append(f"{len(self.running)} still running there, left out ({', '.join(self.running)})")
        if self.without_folder:
            parts.append(f"{len(self.without_folder)} came without an adapter folder "
                         f"({', '.join(self.without_folder)})")
        return "; ".join(parts)


def is_archive(path: Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def merge(other, store=None, run_ids: Optional[list] = None, checkpoints: bool = True) -> MergeResult:
    """Bring the runs of ``other`` (a store file, or an archive ``export_runs`` wrote) into ``store``
    (a RunStore, a path, or None: the default store); only ``run_ids`` when given. ``checkpoints``: carry
    the runs' checkpoints (a stopped run then resumes here; a full fine-tuning's are large)."""
    target, opened = open_store(store, required=True)
    try:
        with _source(Path(other).expanduser()) as (db, adapters_root):
            records = _read(db)
            result = MergeResult(str(other))
            wanted = _wanted(records, run_ids, db)
            for rec in records:
                if rec.run_id in wanted:
                    _merge_one(target, rec, adapters_root, result, checkpoints)
            return result
    finally:
        if opened:
            target.close()


def export_runs(run_ids: list, to, store=None, checkpoints: bool = True) -> Path:
    """Pack the runs ``run_ids`` of ``store`` into ``to``: a new store file (``.db``; its run folders
    beside it, as any store's) or one archive file (``.tar``, ``.tar.gz``, ``.tgz``) holding both;
    ``lorakit store merge`` reads either. An existing ``to`` is refused. ``checkpoints``: as for ``merge``."""
    to = Path(to).expanduser().absolute()
    if not run_ids:
        raise StoreError("export: name at least one run id (lorakit compare lists them)")
    if to.exists():
        raise StoreError(f"export: {to} exists; give a new file name (nothing was written)")
    source, opened = open_store(store, required=True)
    try:
        missing = [r for r in run_ids if r not in source]
        if missing:
            raise RunNotFound(f"export: no run {', '.join(map(repr, missing))} in the run store {source.path}")
        if not is_archive(to):
            merge(source.path, RunStore(to), run_ids, checkpoints)
            return to
        with tempfile.TemporaryDirectory(prefix=".lorakit-export-", dir=to.parent) as tmp:
            packed = RunStore(Path(tmp) / _PACKED_DB)
            try:
                merge(source.path, packed, run_ids, checkpoints)
            finally:
                packed.close()  # the last connection folds the WAL into the file before it is packed
            partial = to.with_name(to.name + ".partial")
            with tarfile.open(partial, "w:gz" if to.name.lower().endswith(("gz", "tgz")) else "w") as tar:
                tar.add(packed.path, arcname=_PACKED_DB)
                if packed.adapters_root.is_dir():
                    tar.add(packed.adapters_root, arcname=packed.adapters_root.name)
            partial.replace(to)
        return to
    finally:
        if opened:
            source.close()


@contextmanager
def _source(path: Path) -> Iterator[tuple[Path, Path]]:
    """(the store file, its run folders' root) of a store file, or of an archive unpacked for the merge."""
    if not path.is_file():
        raise StoreError(f"merge: {path} is not a file; give a run store (.db) or an archive lorakit store "
                         f"export wrote ({', '.join(ARCHIVE_SUFFIXES)})")
    if not is_archive(path):
        yield path, path.parent / f"{path.stem}_adapters"
        return
    with tempfile.TemporaryDirectory(prefix=".lorakit-merge-") as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")  # 'data': no absolute paths, links out or devices
        except (tarfile.TarError, OSError) as exc:
            raise StoreError(f"merge: {path} could not be unpacked as an archive ({exc})") from None
        db = Path(tmp) / _PACKED_DB
        if not db.is_file():
            raise StoreError(f"merge: {path} holds no {_PACKED_DB}; it was not written by lorakit store export")
        yield db, db.parent / f"{db.stem}_adapters"


def _read(db: Path) -> list:
    """Every run of the store file ``db``, read without writing to it."""
    with open(db, "rb") as f:
        if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise StoreError(f"merge: {db} is not a lorakit run store (not an SQLite database); give a .db file "
                             f"or an archive lorakit store export wrote ({', '.join(ARCHIVE_SUFFIXES)})")
    _check_existing(db)  # ours, and a schema this version reads
    try:
        conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"merge: cannot open {db}: {exc}") from None
    try:
        conn.execute("BEGIN")  # one read transaction: a writer there never shows a half-updated run
        return read_runs(conn, "", ())
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"merge: cannot read {db}: {exc}") from None
    finally:
        conn.close()


def _wanted(records: list, run_ids: Optional[list], db: Path) -> set:
    have = {r.run_id for r in records}
    if run_ids is None:
        return have
    missing = [r for r in run_ids if r not in have]
    if missing:
        raise RunNotFound(f"merge: no run {', '.join(map(repr, missing))} in {db}")
    return set(run_ids)


def _merge_one(target: RunStore, rec, adapters_root: Path, result: MergeResult, checkpoints: bool = True) -> None:
    """One run into ``target``: its folder copied first, then its rows in one transaction (a failed save
    removes the copied folder, so nothing is left half-merged)."""
    run_id = check_run_id(rec.run_id)
    if run_id in target:
        result.already.append(run_id)
        return
    if rec.status == "running":
        result.running.append(run_id)
        return
    folder = adapters_root / run_id
    dest = target.adapter_dir(run_id)
    if folder.is_dir():
        partial = dest.with_name(f".{run_id}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        skip = None if checkpoints else shutil.ignore_patterns(CHECKPOINTS)  # the adapter has none of that name
        shutil.copytree(folder, partial, ignore=skip)
        shutil.rmtree(dest, ignore_errors=True)  # a folder left by a run this store no longer has
        partial.replace(dest)
        rec.adapter_path = str(dest) if rec.adapter_path else None
    else:
        if rec.adapter_path:
            result.without_folder.append(run_id)
        rec.adapter_path = None  # a path on the other machine means nothing here
    try:
        target.save(rec)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    result.added.append(run_id)
