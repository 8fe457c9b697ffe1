"""One damaged record never hides the rest: a run whose stored JSON cannot be read is set aside,
named (store file, run id, what is wrong) and the other runs are listed as usual.

``check`` lists the damaged runs; ``repair`` rebuilds what the store's columns still know (the config
from its columns, the record body from the summary columns, a step's or a memory row's unreadable
JSON dropped), or, with ``drop=True``, removes the damaged runs. ``lorakit store check`` / ``repair``
call these.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

# What reading a hand-edited, cut or otherwise damaged value can raise: never more than these.
READ_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)


class DamagedRunsWarning(UserWarning):
    """Some runs in the store could not be read; the others were listed. ``lorakit store check`` names them."""


@dataclass(frozen=True)
class Damaged:
    """A run that could not be read: the store file, the run id, which part and what is wrong."""
    store: Path
    run_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.store}: run {self.run_id}: {self.problem}"


def what(part: str, exc: BaseException) -> str:
    """'<part>: <the error in a few words>' for a Damaged.problem."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return f"{part} cannot be read ({type(exc).__name__}: {first})"


def json_object(text, part: str) -> dict:
    """A stored JSON object; ValueError naming ``part`` when it is cut, null or not an object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{part} is JSON {type(value).__name__ if value is not None else 'null'}, not an object")
    return value


def warn(store_path: Path, damaged: list, seen: set) -> None:
    """One DamagedRunsWarning naming runs not warned about before by this store object."""
    new = [d for d in damaged if d.run_id not in seen]
    if not new:
        return
    seen.update(d.run_id for d in new)
    listed = "; ".join(f"run {d.run_id}: {d.problem}" for d in new[:5])
    more = f"; and {len(new) - 5} more" if len(new) > 5 else ""
    warnings.warn(f"run store {store_path}: {len(new)} run(s) could not be read and are left out ({listed}{more}). "
                  "The other runs are listed. See them with `lorakit store check`; rebuild them with "
                  "`lorakit store repair` (or drop them with `--drop`).", DamagedRunsWarning, stacklevel=4)


def _readable(text, part: str) -> bool:
    try:
        json_object(text, part)
        return True
    except READ_ERRORS:
        return False


def rebuild(c, run_id: str) -> list[str]:
    """Inside a write transaction: make run ``run_id`` readable again from what the store still knows.

    An unreadable config is rebuilt from the runs columns (model, method, quant, rank, dataset, label);
    an unreadable record body from the summary columns (losses, metric, times); a step's, an
    evaluation's or a memory row's unreadable JSON is cleared (or the memory row dropped). Returns what was done."""
    done = []
    cols = ("config", "record", "label", "method", "quant", "rank", "model", "dataset", "train_loss", "eval_loss",
            "task_metric", "tokens_per_s", "wall_s", "load_s", "train_s", "eval_s", "task_eval_s", "samples_s",
            "task", "family")
    row = dict(zip(cols, c.execute(f"SELECT {', '.join(cols)} FROM runs WHERE run_id = ?", (run_id,)).fetchone(),
                   strict=True))
    if not _readable(row["config"], "config"):
        cfg = {k: row[k] for k in ("model", "method", "quant", "rank", "dataset") if row[k] is not None}
        if row["label"]:
            cfg["name"] = row["label"]
        c.execute("UPDATE runs SET config = ? WHERE run_id = ?", (json.dumps(cfg), run_id))
        done.append("config rebuilt from the run's columns")
    if not _readable(row["record"], "record"):
        body = {k: row[k] for k in cols[8:] if row[k] is not None}
        c.execute("UPDATE runs SET record = ? WHERE run_id = ?", (json.dumps(body), run_id))
        done.append("record rebuilt from the run's columns (history, evals and memory kept)")
    for table, key in (("steps", "step"), ("evals", "idx")):
        for k, extra in c.execute(f"SELECT {key}, extra FROM {table} WHERE run_id = ? AND extra IS NOT NULL",
                                  (run_id,)).fetchall():
            if not _readable(extra, "extra"):
                c.execute(f"UPDATE {table} SET extra = NULL WHERE run_id = ? AND {key} = ?", (run_id, k))
                done.append(f"{table} {k}: unreadable extra JSON cleared")
    for kind, cuda, extra in c.execute("SELECT kind, cuda, extra FROM memory WHERE run_id = ?", (run_id,)).fetchall():
        if (extra and not _readable(extra, "extra")) or (cuda and not _readable(cuda, "cuda")):
            c.execute("DELETE FROM memory WHERE run_id = ? AND kind = ?", (run_id, kind))
            done.append(f"unreadable {kind} memory row dropped")
    return done
