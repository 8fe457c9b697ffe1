"""Reading user data: files and hub ids resolved to rows, and the errors a bad source gets."""
import json

import pytest
from data_support import ROWS, write

from lorakit.data import DataError, list_tasks, load_rows
from lorakit.data.sources import split_rows


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_each_file_type_reads_into_rows(tmp_path, kind):
    path = write(tmp_path / f"data.{kind}", ROWS, kind)
    rows, task, source, skipped = load_rows(path)
    assert task is None and source == f"file {path!r}" and skipped.count == 0
    assert [(r["prompt"], r["answer"]) for r in rows] == [(r["prompt"], r["completion"]) for r in ROWS]
    assert rows[0]["messages"] == [{"role": "user", "content": ROWS[0]["prompt"]}]


def test_a_task_name_is_a_task_not_rows():
    rows, task, source, _ = load_rows("sort-words")
    assert rows == [] and task.name == "sort-words" and source == "built-in task 'sort-words'"


def test_split_is_deterministic_in_the_seed_and_shrinks_eval_for_small_data():
    rows = [{"prompt": str(i), "answer": str(i)} for i in range(20)]
    train, ev, note = split_rows(rows, 100, 5, seed=0)
    assert (len(train), len(ev), note) == (15, 5, "")
    assert sorted(r["prompt"] for r in train + ev) == sorted(r["prompt"] for r in rows)
    assert split_rows(rows, 100, 5, seed=0)[1] == ev and split_rows(rows, 100, 5, seed=1)[1] != ev
    train, ev, note = split_rows(rows, 100, 50, seed=0)
    assert (len(train), len(ev)) == (10, 10) and "eval_examples reduced to 10" in note
    with pytest.raises(DataError, match="at least 2 rows"):
        split_rows(rows[:1], 10, 1, seed=0)


def test_messages_without_assistant_turn(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="assistant"):
        load_rows(str(path))


def test_missing_columns_names_found_and_expected(tmp_path):
    path = write(tmp_path / "qa.csv", [{"question": "q", "answer": "a"}] * 3, "csv")
    with pytest.raises(DataError) as err:
        load_rows(path)
    msg = str(err.value)
    assert msg.startswith("dataset:")
    for name in ("'question'", "'answer'", "'prompt'", "'completion'", "'messages'"):
        assert name in msg


@pytest.mark.parametrize("content", ["", "prompt,completion\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="empty"):
        load_rows(str(path))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="could not be read as Parquet"):
        load_rows(str(bad))
    with pytest.raises(DataError, match="not found"):
        load_rows(str(tmp_path / "nope.jsonl"))
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        load_rows(str(odd))


def test_unknown_task_lists_tasks(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_rows("extract-jsn")
    msg = str(err.value)
    assert "dataset" in msg and "did you mean 'extract-json'" in msg
    for t in list_tasks():
        assert t.name in msg


def test_hub_dataset_fails_fast_without_internet(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    with pytest.raises(DataError) as err:
        load_rows("someone/some-dataset")
    msg = str(err.value)
    assert "could not download dataset 'someone/some-dataset' from the Hugging Face Hub" in msg
    assert "extract-json" in msg and "local file" in msg


def test_datasets_offline_also_stops_a_hub_dataset(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_DATASETS_OFFLINE is set"):
        load_rows("someone/some-dataset")
