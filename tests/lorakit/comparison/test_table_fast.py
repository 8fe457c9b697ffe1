"""compare() of a whole store takes the one-query read (store/table_read.py); its frame equals the one built
from fully read records, for real and synthetic runs, odd ones (NaN losses, no memory, no steps, a config a
later lorakit refuses, a classifier) and damaged ones (set aside and named by both paths alike)."""
from __future__ import annotations

import math
import sqlite3
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import lorakit
from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.store import DamagedRunsWarning, RunStore, table_read

sys.path.insert(0, str(Path(__file__).resolve().parent / "store"))
from store_support import make_record  # noqa: E402

TINY = dict(model="tiny-llama", max_steps=3, batch_size=2, train_examples=12, eval_examples=2, learning_rate=1e-3)


def _synthetic() -> list:
    t = 1_760_000_000.0
    recs = [
        make_record("plain", created_at=t),
        make_record("named", created_at=t + 1, config=RunConfig(model="smollm2-135m", name="<b>mine</b>")),
        make_record("qlora", created_at=t + 2, config=RunConfig(model="smollm2-135m", quant="nf4", rank=16,
                                                                  target_modules="all-linear", use_dora=True)),
        make_record("full", created_at=t + 3, config=RunConfig(model="smollm2-135m", method="full")),
        make_record("nan-loss", status="stopped", created_at=t + 4, train_loss=math.nan, eval_loss=math.inf,
                    reason="the loss became NaN at step 5"),
        make_record("no-memory", status="failed", steps=0, created_at=t + 5, memory=None, planned_memory=None),
        make_record("peaks", created_at=t + 6, memory=MemoryBreakdown(5, 4, 3, 2, 1, peak=99, peak_at="backward",
                                                                       transient=7)),
        make_record("classifier", created_at=t + 7, task="classification", family="encoder", metric="accuracy",
                    macro_f1=0.4, head_params=1540, perplexity=5.0),  # no perplexity shown for a classifier
        make_record("running", status="running", created_at=t + 8, node="node-1", device="cuda:0"),
    ]
    # a sweep: three trials of one label, told apart by the axes that differ
    for i, lr in enumerate((1e-4, 2e-4, 2e-4)):
        recs.append(make_record(f"sweep{i}", created_at=t + 10 + i,
                                config=RunConfig(model="smollm2-135m", learning_rate=lr, max_steps=12 + 12 * (i == 2))))
    return recs


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fast") / "runs.db"
    with RunStore(path) as s:
        lorakit.train(RunConfig(**TINY), store=s)  # a real run, as train() stores it
        lorakit.train(RunConfig(**dict(TINY, quant="nf4", rank=4)), store=s)
        for r in _synthetic():
            s.save(r)
    with sqlite3.connect(path) as c:  # a config a later lorakit no longer accepts still shows its stored values
        c.execute("UPDATE runs SET config = json_set(config, '$.model', 'gone-model', '$.rank', 0) "
                  "WHERE run_id = 'plain'")
        c.execute("UPDATE evals SET extra = '{\"why\": NaN}' WHERE run_id = 'peaks' AND idx = 0")  # SQLite can't parse
    return path


def _both(path):
    with RunStore(path) as s, warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRunsWarning)
        fast, fast_damaged = lorakit.compare(store=s), list(s.damaged)
        slow = lorakit.compare(s.records(history=False))
        slow_damaged = list(s.damaged)
        full = lorakit.compare(s.records())
    return fast, slow, full, fast_damaged, slow_damaged


def test_the_one_query_frame_equals_the_full_read(store_path):
    fast, slow, full, fast_damaged, slow_damaged = _both(store_path)
    assert len(fast) == 2 + len(_synthetic()) and fast_damaged == slow_damaged == []
    pd.testing.assert_frame_equal(fast, slow)
    pd.testing.assert_frame_equal(fast, full)
    row = fast.set_index("run_id")
    assert row.loc["plain", "model"] == "gone-model" and row.loc["plain", "rank"] == 0
    assert pd.isna(row.loc["nan-loss", "train_loss"]) and row.loc["peaks", "mem_peak"] == 99
    assert row.loc["running", "node"] == "node-1" and row.loc["running", "steps_done"] == 12
    assert pd.isna(row.loc["no-memory", "mem_total"]) and row.loc["no-memory", "steps_done"] == 0
    assert set(fast["model"]) == {"tiny-llama", "smollm2-135m", "gone-model"}
    assert pd.isna(row.loc["classifier", "perplexity"]) and row.loc["classifier", "macro_f1"] == 0.4


def test_the_one_query_read_decodes_no_sample_and_hands_odd_runs_to_the_full_reader(store_path, monkeypatch):
    handed = []
    full_reader = table_read.read_runs

    def spy(conn, where, params, *args, **kw):
        handed.extend(params)
        return full_reader(conn, where, params, *args, **kw)

    monkeypatch.setattr(table_read, "read_runs", spy)
    with RunStore(store_path) as s:
        light = s.table_records()
    # NaN in a body or an eval's extra is JSON SQLite may not read (before 3.42: never): the full reader's runs
    assert set(handed) <= {"nan-loss", "peaks"} and (sqlite3.sqlite_version_info >= (3, 42) or len(handed) == 2)
    assert all(r.samples == [] for r in light if r.run_id not in handed)  # the samples were never decoded
    assert len(light) == 2 + len(_synthetic())


@pytest.mark.parametrize("damage", [
    "UPDATE runs SET record = substr(record, 1, 40) WHERE run_id = 'qlora'",
    "UPDATE runs SET record = 'null' WHERE run_id = 'qlora'",
    "UPDATE runs SET config = '{\"model\": ' WHERE run_id = 'qlora'",
    "UPDATE memory SET extra = '[1' WHERE run_id = 'qlora' AND kind = 'measured'",
    "UPDATE evals SET extra = '[]' WHERE run_id = 'qlora' AND idx = 0",
])
def test_a_damaged_run_is_set_aside_by_both_paths_alike(store_path, tmp_path, damage):
    path = tmp_path / "copy.db"
    with sqlite3.connect(store_path) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    with sqlite3.connect(path) as c:
        c.execute(damage)
    fast, slow, _, fast_damaged, slow_damaged = _both(path)
    assert "qlora" not in set(fast["run_id"]) and len(fast) == 1 + len(_synthetic())
    assert [d.run_id for d in fast_damaged] == ["qlora"] and fast_damaged == slow_damaged
    pd.testing.assert_frame_equal(fast, slow)


def test_runs_sharing_a_label_are_told_apart_by_what_differs(store_path):
    fast, *_ = _both(store_path)
    label = dict(zip(fast["run_id"], fast["label"], strict=True))
    assert label["sweep0"] == "smollm2-135m · lora-r8 · lr 0.0001 · steps 12"
    assert label["sweep1"] == "smollm2-135m · lora-r8 · lr 0.0002 · steps 12"
    assert label["sweep2"] == "smollm2-135m · lora-r8 · lr 0.0002 · steps 24"
    assert label["named"] == "<b>mine</b>"  # a user's name as given (escaped where it is shown as HTML)
    assert label["qlora"] == "smollm2-135m · qlora-nf4-r16-dora"
    assert label["full"] == "smollm2-135m · full"
    tiny = [lab for lab in fast["label"] if lab.startswith("tiny-llama")]
    assert sorted(tiny) == ["tiny-llama · lora-r8", "tiny-llama · qlora-nf4-r4"]


def test_the_short_column_set_and_a_chosen_list(store_path):
    with RunStore(store_path) as s:
        short = lorakit.compare(store=s, columns="short")
        chosen = lorakit.compare(store=s, columns=["run_id", "model"])
        everything = lorakit.compare(store=s)
    assert list(short.columns) == ["label", "model", "method", "quant", "rank", "mem_total", "mem_peak", "eval_loss",
                                   "task_metric", "wall_s"]
    pd.testing.assert_frame_equal(short, everything[list(short.columns)])
    assert list(chosen.columns) == ["run_id", "model"]
    assert tuple(short.columns) == lorakit.SHORT_COLUMNS
    assert list(lorakit.compare(everything, columns="short").columns) == list(short.columns)  # a frame, narrowed
    assert "mine" in lorakit.compare(everything.assign(mine=1)).columns  # a frame given whole stays whole
    with pytest.raises(ValueError, match="columns: unknown column.*'memory'.*the columns are run_id"):
        lorakit.compare(everything, columns=["memory"])
    with pytest.raises(ValueError, match="columns must be 'all', 'short' or a list"):
        lorakit.compare(everything, columns="few")
