"""The table's read of a whole store: every run as a light RunRecord, in one SQL query.

``compare()`` of a store of thousands of runs needs each run's config, its record's scalar fields, its
two memory rows and its last step, nothing else. The query here takes those straight from the tables:
the record body without the parts no column reads (SQLite's ``json_remove`` drops the copy of the config,
the samples and the data statistics before Python decodes it), the last step from the steps table's
primary key, no evaluations. The values then go through the same codec functions as a full read
(:func:`.rows._memory`, :func:`.rows._lenient_config`), so the table is the same frame either way
(``tests/lorakit/test_table_fast.py`` compares them).

A run that looks damaged here (a body SQLite cannot parse, which includes a NaN a stopped run wrote,
an unreadable memory or evaluation row) is read by the full reader, :func:`.rows.read_runs`, which
either reads it or sets it aside as :class:`.damage.Damaged`: one rule for what is damaged.

Light records hold no history beyond the last step's number, no evaluations, samples or data statistics:
a ``table.SPEC`` column that needs one of those must be read here too.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

from lorakit.run.record import RunRecord
from lorakit.store.damage import READ_ERRORS, json_object
from lorakit.store.record_rows import MEMORY_VALUES, STEP_VALUES, _lenient_config, _memory, read_runs

# Parts of the stored body that no table column reads (the config has its own column).
UNREAD = ("config", "samples", "data_stats")
_MEM = ", ".join((*MEMORY_VALUES, "cuda", "peak", "peak_at", "extra"))
_SUSPECT_EVALS = ("EXISTS (SELECT 1 FROM evals e WHERE e.run_id = r.run_id AND e.extra IS NOT NULL "
                  "AND (NOT json_valid(e.extra) OR json_type(e.extra) != 'object'))")
QUERY = f"""
SELECT r.run_id, r.status, r.reason, r.created_at, r.config,
       CASE WHEN json_valid(r.record) THEN json_remove(r.record, {', '.join(f"'$.{k}'" for k in UNREAD)}) END,
       (SELECT MAX(s.step) FROM steps s WHERE s.run_id = r.run_id),
       {_SUSPECT_EVALS},
       m.run_id, {', '.join(f'm.{c}' for c in _MEM.split(', '))},
       p.run_id, {', '.join(f'p.{c}' for c in _MEM.split(', '))}
FROM runs r
LEFT JOIN memory m ON m.run_id = r.run_id AND m.kind = 'measured'
LEFT JOIN memory p ON p.run_id = r.run_id AND p.kind = 'planned'
ORDER BY r.created_at, r.rowid
"""
_N_MEM = len(_MEM.split(", "))
_KNOWN = RunRecord.__dataclass_fields__


def read_table(conn: sqlite3.Connection, damaged: Optional[list] = None,
               store: Optional[Path] = None) -> list[RunRecord]:
    """Every run of the store, oldest first, as light records (see the module's note); call inside a read
    transaction. Damaged runs are left out and added to ``damaged``, as :func:`.rows.read_runs` does."""
    try:
        rows = conn.execute(QUERY).fetchall()
    except sqlite3.OperationalError as e:  # an SQLite built without its JSON functions (before 3.38: optional)
        if "no such function" not in str(e):
            raise
        return read_runs(conn, "", (), damaged, store, history=False)
    out: list[Optional[RunRecord]] = []
    again: dict[str, int] = {}  # run_id -> its place in out: read by the full reader
    for row in rows:
        rec = _light(row)
        if rec is None:
            again[row[0]] = len(out)
        out.append(rec)
    if again:
        ids = list(again)
        for i in range(0, len(ids), 500):  # SQLite's parameter limit
            chunk = ids[i:i + 500]
            for rec in read_runs(conn, f"WHERE run_id IN ({', '.join('?' * len(chunk))})", tuple(chunk),
                                 damaged, store, history=False):
                out[again[rec.run_id]] = rec
    return [r for r in out if r is not None]


def _light(row: tuple) -> Optional[RunRecord]:
    """A light RunRecord from one row of QUERY; None when any part needs the full reader."""
    run_id, status, reason, created_at, config, body, last_step, suspect_evals = row[:8]
    if body is None or suspect_evals:
        return None
    measured, planned = row[8:8 + 1 + _N_MEM], row[9 + _N_MEM:]
    try:
        d = json_object(body, "the record")
        cfg = json_object(config, "the config")
        d.update(run_id=run_id, status=status, reason=reason, created_at=created_at,
                 config=_lenient_config(cfg, validate=False),
                 history=[_last_step(last_step)] if last_step is not None else [],
                 memory=_memory(measured[1:]) if measured[0] is not None else None,
                 planned_memory=_memory(planned[1:]) if planned[0] is not None else None)
        return RunRecord(**{k: v for k, v in d.items() if k in _KNOWN})
    except READ_ERRORS:
        return None


def _last_step(step: int) -> dict:
    """The one history entry a table's read keeps, as the full reader's ``history=False`` builds it."""
    return {"step": step, **dict.fromkeys(STEP_VALUES)}
