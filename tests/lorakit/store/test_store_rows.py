"""The row codec: NaN and numpy values, keys without a column, configs that no longer validate, the
column lists kept in one place."""
from __future__ import annotations

import json
import math
import sqlite3

import pytest
from store_support import make_record

from lorakit.memory.breakdown import CATEGORIES
from lorakit.store import record_rows as rows
from lorakit.store import schema


def test_nan_loss_and_numpy_scalars_survive(store):
    np = pytest.importorskip("numpy")
    rec = make_record(steps=3)
    rec.history[-1]["loss"] = float("nan")  # the step that stopped the run
    rec.history[0]["loss"] = np.float32(2.5)
    rec.history[0]["tokens"] = np.int64(512)  # a key the table has no column for
    rec.trainable_params = np.int64(460_800)
    store.save(rec)
    h = store.load(rec.run_id).history
    assert math.isnan(h[-1]["loss"])
    assert h[0]["loss"] == 2.5 and h[0]["tokens"] == 512
    assert store.load(rec.run_id).trainable_params == 460_800


def test_stored_config_that_no_longer_validates_still_loads(store):
    store.save(make_record("old-config"))
    with sqlite3.connect(store.path) as c:
        cfg = json.loads(c.execute("SELECT config FROM runs WHERE run_id = 'old-config'").fetchone()[0])
        cfg["quant"] = "int3"  # a mode a later lorakit dropped
        c.execute("UPDATE runs SET config = ? WHERE run_id = 'old-config'", (json.dumps(cfg),))
    c.close()
    r = store.load("old-config")
    assert r.config.quant == "int3" and r.config.rank == 8 and len(r.history) == 12


def test_every_runs_column_gets_its_value_from_the_record(store):
    """The runs row is written from the column list in schema.RUNS: each column holds the record's value."""
    rec = make_record("cols", status="running")
    store.save(rec)
    with sqlite3.connect(store.path) as c:
        c.row_factory = sqlite3.Row
        row = dict(c.execute("SELECT * FROM runs WHERE run_id = 'cols'").fetchone())
    c.close()
    assert tuple(row) == schema.RUNS.names
    assert (row["method"], row["quant"], row["rank"], row["model"]) == ("lora", "none", 8, "smollm2-135m")
    assert (row["train_loss"], row["mem_total"], row["wall_s"]) == (1.47, rec.memory.total, 7.9)
    assert row["pid"] is not None and row["host"]  # a running run names its process (see orphans)
    assert "history" not in json.loads(row["record"])  # the history lives in the steps table
    summary = store.summaries()[0]
    assert tuple(summary) == rows.SUMMARY_COLUMNS and summary["label"] == rec.config.label


def test_value_columns_follow_the_schema():
    assert rows.STEP_VALUES == ("loss", "learning_rate", "tokens_per_s", "elapsed_s", "grad_norm")
    assert rows.EVAL_VALUES == ("eval_loss", "perplexity", "task_metric")
    assert rows.MEMORY_VALUES == CATEGORIES  # one memory column per MemoryBreakdown category
