"""The store's timing columns and its cache of the base model's evaluation, in new and older files."""
import sqlite3

from store_support import make_record

from lorakit.store import RunStore
from lorakit.store.eval_cache import lookup, remember, size
from lorakit.store.record_rows import TIME_COLUMNS

DETAILS = [{"prompt": "p", "reference": "r", "prediction": "r", "correct": True, "fields": {"name": True}}]


def test_timings_are_columns_and_come_back_on_load(store):
    store.save(make_record("timed"))
    (summary,) = store.summaries()
    assert {k: summary[k] for k in TIME_COLUMNS} == dict(load_s=1.3, train_s=5.1, eval_s=0.4, task_eval_s=1.0,
                                                         samples_s=0.0)
    rec = store.load("timed")
    assert (rec.train_s, rec.eval_s, rec.task_eval_s, rec.samples_s) == (5.1, 0.4, 1.0, 0.0)


def test_a_cached_result_comes_back_as_it_went_in(store):
    assert lookup(store, "k1") is None and size(store) == 0
    remember(store, "k1", {"model": "tiny-llama"}, 0.25, DETAILS, 3.5)
    assert lookup(store, "k1") == (0.25, DETAILS)
    remember(store, "k1", {"model": "tiny-llama"}, 0.5, [], 1.0)  # same key: the first result stays
    assert lookup(store, "k1") == (0.25, DETAILS) and size(store) == 1
    remember(store, "k2", {}, None, [], 0.1)  # user data: no metric
    assert lookup(store, "k2") == (None, []) and lookup(store, "k3") is None


def test_a_file_from_before_the_timings_and_the_cache_gets_both(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record("old"))
    with sqlite3.connect(path) as c:  # the file as lorakit wrote it before issue 11
        for col in TIME_COLUMNS:
            c.execute(f"ALTER TABLE runs DROP COLUMN {col}")
        c.execute("DROP TABLE eval_cache")
    c.close()
    with RunStore(path) as s:
        assert s.load("old").train_s == 5.1  # the record JSON has it
        s.save(make_record("new", created_at=1_760_000_001.0))
        assert [r["train_s"] for r in s.summaries()] == [None, 5.1]
        remember(s, "k", {}, 1.0, DETAILS, 2.0)
        assert lookup(s, "k") == (1.0, DETAILS)
