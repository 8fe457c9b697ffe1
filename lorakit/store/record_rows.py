"""The row codec: a RunRecord to the store's rows and back.

``runs.record`` holds the RunRecord without its history, evals and memory; those live in their own
tables (they are what grows during training) and are the source of truth when loading. Non-finite
numbers (a NaN loss) are kept: SQLite turns NaN into NULL, so they are also written to the row's
``extra`` JSON and restored from there. Writers take a connection inside the caller's transaction.
"""
from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any, Optional

from lorakit.memory.breakdown import CATEGORIES, MemoryBreakdown
from lorakit.run.record import RunRecord
from lorakit.store.damage import READ_ERRORS, Damaged, json_object, what
from lorakit.store.errors import StoreError
from lorakit.store.orphans import owner
from lorakit.store.schema import EVALS, MEMORY, RUNS, STEPS

# Value columns of each table: every column but the keys and the JSON ones.
STEP_VALUES = tuple(c for c in STEPS.names if c not in ("run_id", "step", "extra"))
EVAL_VALUES = tuple(c for c in EVALS.names if c not in ("run_id", "idx", "step", "extra"))
MEMORY_VALUES = CATEGORIES  # the five byte counts; cuda, peak, peak_at and extra are read apart
_MEMORY_EXTRA = ("transient", "device_overhead", "assumes", "head")
# The runs columns a listing shows (summaries()): all but bookkeeping and the JSON bodies.
SUMMARY_COLUMNS = tuple(c for c in RUNS.names if c not in ("updated_at", "pid", "host", "proc_start", "config",
                                                            "record"))
TIME_COLUMNS = ("load_s", "train_s", "eval_s", "task_eval_s", "samples_s")  # also in runs.record
# Kept out of runs.record: they have tables of their own.
TABLE_FIELDS = ("history", "evals", "memory", "planned_memory")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_UPSERT_RUN = (RUNS.insert() + " ON CONFLICT (run_id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in RUNS.names if c != "run_id"))


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is safe as a key and as a directory name, else StoreError."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id) or run_id in (".", ".."):
        raise StoreError(
            f"invalid run id {run_id!r}: use letters, digits, '_', '-' or '.' (at most 128 characters)"
        )
    return run_id


# --------------------------------------------------------------------------- values

def plain(x: Any) -> Any:
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
    o2 = plain(o)
    if o2 is not o:
        return o2
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "as_dict"):
        return o.as_dict()
    return str(o)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


def num(x: Any) -> Optional[float]:
    """A value for a REAL column (NaN becomes NULL there; see _split)."""
    x = plain(x)
    if x is None or isinstance(x, str):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def integer(x: Any) -> Optional[int]:
    x = plain(x)
    if x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def _split(entry: dict, cols: tuple) -> tuple[list, Optional[str]]:
    """Column values for ``cols`` plus an ``extra`` JSON of everything else (and non-finite values)."""
    values, extra = [], {}
    for c in cols:
        f = num(entry.get(c))
        if f is not None and not math.isfinite(f):
            extra[c] = f  # JSON keeps NaN / inf; SQLite would turn NaN into NULL
        values.append(f)
    for k, v in entry.items():
        if k not in cols and k not in ("run_id", "step", "idx"):  # keys have columns of their own
            extra[k] = plain(v)
    return values, (dumps(extra) if extra else None)


def _join(step: Any, values: tuple, cols: tuple, extra: Optional[str]) -> dict:
    d = {"step": step}
    d.update(zip(cols, values, strict=True))
    if extra:
        d.update(json_object(extra, "its extra JSON"))
    return d


# --------------------------------------------------------------------------- writing

def write_run(c: sqlite3.Connection, r: RunRecord, now: float) -> None:
    """Insert or update ``r``'s runs row (not its steps, evals or memory)."""
    cfg = r.config
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    body = r.to_dict()
    for k in TABLE_FIELDS:
        body.pop(k, None)
    created = r.created_at
    if not created:  # keep the first save's time rather than moving the run in the list
        row = c.execute("SELECT created_at FROM runs WHERE run_id = ?", (r.run_id,)).fetchone()
        created = row[0] if row else now
    row = {
        "run_id": r.run_id, "created_at": float(created), "updated_at": now, "status": r.status,
        "reason": r.reason or "", "label": str(getattr(cfg, "label", "")),
        "method": cfg_dict.get("method"), "quant": cfg_dict.get("quant"), "rank": integer(cfg_dict.get("rank")),
        "model": cfg_dict.get("model"), "dataset": cfg_dict.get("dataset"),
        "task": r.task or None, "family": r.family or None,
        "train_loss": num(r.train_loss), "eval_loss": num(r.eval_loss), "task_metric": num(r.task_metric),
        "mem_total": int(r.memory.total) if r.memory is not None else None,
        "tokens_per_s": num(r.tokens_per_s), "wall_s": num(r.wall_s),
        **owner(r.status == "running"),
        "config": dumps(cfg_dict), "record": dumps(body),
        **{k: num(getattr(r, k, None)) for k in TIME_COLUMNS},
    }
    c.execute(_UPSERT_RUN, [row[col] for col in RUNS.names])


def insert_steps(c: sqlite3.Connection, run_id: str, steps: list) -> None:
    """Logged steps (dicts with at least ``step``); a step already stored is replaced."""
    rows = []
    for i, s in enumerate(steps):
        s = dict(s)
        step = integer(s.get("step"))
        values, extra = _split(s, STEP_VALUES)
        rows.append((run_id, i + 1 if step is None else step, *values, extra))
    if rows:
        c.executemany(STEPS.insert("INSERT OR REPLACE"), rows)


def insert_evals(c: sqlite3.Connection, run_id: str, evals: list, start: int) -> None:
    """Evaluation results, numbered from ``start`` (a run may evaluate twice at one step)."""
    rows = []
    for i, e in enumerate(evals):
        e = dict(e)
        values, extra = _split(e, EVAL_VALUES)
        rows.append((run_id, start + i, integer(e.get("step")), *values, extra))
    if rows:
        c.executemany(EVALS.insert(), rows)


def write_memory(c: sqlite3.Connection, run_id: str, kind: str, mem: MemoryBreakdown) -> None:
    """The 'measured' or 'planned' breakdown of a run (a MemoryBreakdown or its as_dict())."""
    if isinstance(mem, dict):
        mem = MemoryBreakdown.from_dict(mem)
    cuda = dumps(mem.cuda) if mem.cuda is not None else None
    extra = {k: getattr(mem, k) for k in _MEMORY_EXTRA if getattr(mem, k) is not None}
    c.execute(MEMORY.insert("INSERT OR REPLACE"),
              (run_id, kind, *(integer(getattr(mem, k)) for k in MEMORY_VALUES), cuda,
               integer(mem.peak) if mem.peak is not None else None, mem.peak_at or None,
               dumps(extra) if extra else None))


# --------------------------------------------------------------------------- reading

def read_runs(conn: sqlite3.Connection, where: str, params: tuple, damaged: Optional[list] = None,
              store: Optional[Path] = None, history: bool = True) -> list[RunRecord]:
    """The runs matching ``where`` (over the runs table), oldest first; call inside a read transaction.

    A run any of whose stored parts cannot be read is left out and, when ``damaged`` is a list, added to
    it as a :class:`.damage.Damaged` (``store``: the file to name); the other runs are read as usual.
    ``history=False`` is a table's read (compare() of a whole store): each history holds only its last
    logged step (``steps_done`` stays right) and configs are taken as stored, without validation."""
    runs = conn.execute(
        f"SELECT run_id, status, reason, created_at, config, record FROM runs {where} ORDER BY created_at, rowid",
        params,
    ).fetchall()
    sub = f"WHERE run_id IN (SELECT run_id FROM runs {where})"
    if history:
        steps = conn.execute(f"SELECT run_id, step, {', '.join(STEP_VALUES)}, extra FROM steps {sub} "
                             "ORDER BY run_id, step", params).fetchall()
    else:  # the last step of each run, from the primary key's index
        steps = conn.execute(f"SELECT run_id, MAX(step), {', '.join('NULL' for _ in STEP_VALUES)}, NULL FROM steps "
                             f"{sub} GROUP BY run_id", params).fetchall()
    evals = conn.execute(f"SELECT run_id, step, {', '.join(EVAL_VALUES)}, extra FROM evals {sub} "
                         "ORDER BY run_id, idx", params).fetchall()
    mems = conn.execute(f"SELECT run_id, kind, {', '.join(MEMORY_VALUES)}, cuda, peak, peak_at, extra "
                        f"FROM memory {sub}", params).fetchall()
    bad: dict[str, str] = {}  # run_id -> the first problem found
    hist = _by_run(steps, STEP_VALUES, bad, "a logged step")
    evs = _by_run(evals, EVAL_VALUES, bad, "an evaluation")
    mem = {}
    for row in mems:
        try:
            mem[(row[0], row[1])] = _memory(row[2:])
        except READ_ERRORS as e:
            bad.setdefault(row[0], what(f"its {row[1]} memory row", e))
    known = RunRecord.__dataclass_fields__
    out = []
    for run_id, status, reason, created_at, config, body in runs:
        try:
            if run_id in bad:
                continue
            d = _part(body, "the record")
            cfg = _part(config, "the config")
            d.update(run_id=run_id, status=status, reason=reason, created_at=created_at,
                     config=_lenient_config(cfg, validate=history), history=hist.get(run_id, []),
                     evals=evs.get(run_id, []), memory=mem.get((run_id, "measured")),
                     planned_memory=mem.get((run_id, "planned")))
            out.append(RunRecord(**{k: v for k, v in d.items() if k in known}))
        except ValueError as e:
            bad.setdefault(run_id, str(e) if str(e).startswith("the ") else what("the stored run", e))
        except READ_ERRORS as e:
            bad.setdefault(run_id, what("the stored run", e))
    if damaged is not None:
        damaged.extend(Damaged(store or Path("?"), rid, problem) for rid, problem in bad.items())
    return out


def _part(text: Any, part: str) -> dict:
    try:
        return json_object(text, part)
    except READ_ERRORS as e:
        raise ValueError(what(f"{part} JSON", e)) from None


def _memory(values: tuple) -> MemoryBreakdown:
    """A memory row's values after (run_id, kind): the five categories, cuda, peak, peak_at, extra."""
    n = len(MEMORY_VALUES)
    cuda, peak, peak_at, extra = values[n:]
    return MemoryBreakdown(**{k: int(v) for k, v in zip(MEMORY_VALUES, values[:n], strict=True)},
                           cuda=json.loads(cuda) if cuda else None, peak=peak, peak_at=peak_at or "",
                           **(json_object(extra, "its extra JSON") if extra else {}))


def _by_run(rows: list, cols: tuple, bad: dict, part: str) -> dict[str, list[dict]]:
    """(run_id, step, *values, extra) rows -> {run_id: [entry dicts in row order]}; unreadable rows -> ``bad``."""
    out: dict[str, list] = {}
    for row in rows:
        try:
            out.setdefault(row[0], []).append(_join(row[1], row[2:-1], cols, row[-1]))
        except READ_ERRORS as e:
            bad.setdefault(row[0], what(f"{part} (step {row[1]})", e))
    return out


def _lenient_config(d: dict, validate: bool = True):
    """RunConfig from a stored dict; a config that no longer validates still loads (runs are never lost).
    ``validate=False`` takes the stored values as they are (quick: a table of thousands of runs)."""
    from lorakit.config.run_config import RunConfig

    try:
        if not validate:
            raise ValueError("not validated")
        return RunConfig.from_dict(d)
    except Exception:  # noqa: BLE001 - e.g. a model name a later lorakit no longer knows
        cfg = object.__new__(RunConfig)
        values = {name: d[name] if name in d else default() for name, default in _config_defaults()}
        if isinstance(values.get("target_modules"), list):
            values["target_modules"] = tuple(values["target_modules"])
        cfg.__dict__.update(values)  # a frozen dataclass: what object.__setattr__ per field does, at once
        return cfg


@functools.lru_cache(maxsize=1)
def _config_defaults() -> tuple:
    """(field name, a function giving its default) for every RunConfig field, found once (``fields()`` per
    run was a third of reading a table of thousands of runs)."""
    from dataclasses import MISSING, fields

    from lorakit.config.run_config import RunConfig

    out = []
    for f in fields(RunConfig):
        if f.default is not MISSING:
            out.append((f.name, lambda v=f.default: v))
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            out.append((f.name, f.default_factory))  # type: ignore[misc]
        else:
            out.append((f.name, lambda: None))
    return tuple(out)
