"""The dataset formats people already have: Alpaca, ShareGPT, messages and prompt/completion in each
file type, a datasets.Dataset and its save_to_disk folder; the format is detected from the columns."""
import json

import pandas as pd
import pytest
from data_support import cfg, write

from lorakit.data import DataError, build_data, load_rows

ALPACA = [{"instruction": f"Add {i} and {i}.", "input": "" if i % 2 else f"Show the sum of {i}.",
           "output": f"{2 * i}"} for i in range(12)]
SHAREGPT = [{"conversations": [{"from": "system", "value": "Be brief."},
                               {"from": "human", "value": f"Name {i}."}, {"from": "gpt", "value": f"n{i}"}]}
            for i in range(12)]
MESSAGES = [{"messages": [{"role": "user", "content": f"Name {i}."}, {"role": "assistant", "content": f"n{i}"}]}
            for i in range(12)]
PAIRS = [{"prompt": f"Name {i}.", "completion": f"n{i}"} for i in range(12)]


def _flat(rows, kind):
    """Nested turns as JSON text in a CSV cell (how a spreadsheet holds them); other files keep them nested."""
    if kind != "csv":
        return rows
    return [{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]


def _alpaca_prompt(r):
    return f"{r['instruction']}\n\n{r['input']}" if r["input"] else r["instruction"]


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_alpaca_in_each_file_type(tmp_path, kind):
    found = load_rows(write(tmp_path / f"a.{kind}", ALPACA, kind))
    assert found.format == "alpaca" and "Alpaca" in found.format_label
    assert [(r["prompt"], r["answer"]) for r in found.rows] == [(_alpaca_prompt(r), r["output"]) for r in ALPACA]
    assert found.rows[0]["prompt"] == "Add 0 and 0.\n\nShow the sum of 0." and found.rows[1]["prompt"] == "Add 1 and 1."


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_sharegpt_in_each_file_type(tmp_path, kind):
    found = load_rows(write(tmp_path / f"s.{kind}", _flat(SHAREGPT, kind), kind))
    assert found.format == "sharegpt" and "ShareGPT" in found.format_label
    assert [r["answer"] for r in found.rows] == [f"n{i}" for i in range(12)]
    assert found.rows[3]["messages"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Name 3."}]
    assert found.rows[3]["prompt"] == "Name 3."


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("rows,fmt", [(MESSAGES, "messages"), (PAIRS, "pairs")])
def test_messages_and_pairs_are_detected_too(tmp_path, kind, rows, fmt):
    found = load_rows(write(tmp_path / f"m.{kind}", _flat(rows, kind), kind))
    assert found.format == fmt
    assert [(r["prompt"], r["answer"]) for r in found.rows] == [(f"Name {i}.", f"n{i}") for i in range(12)]


def test_every_format_trains_the_same_examples(tmp_path, tok):
    """Alpaca and ShareGPT data tokenize into the chat template's prompt with the answer as the only loss."""
    sharegpt = [{"conversations": [{"from": "human", "value": r["prompt"]}, {"from": "gpt", "value": r["completion"]}]}
                for r in PAIRS]
    alpaca = [{"instruction": r["prompt"], "input": "", "output": r["completion"]} for r in PAIRS]
    built = [build_data(cfg(dataset=write(tmp_path / f"{n}.jsonl", rows, "jsonl")), tok)
             for n, rows in (("pairs", PAIRS), ("sharegpt", sharegpt), ("alpaca", alpaca))]
    assert [b.stats["format"].split(" ")[0] for b in built] == ["prompt/completion", "ShareGPT", "Alpaca"]
    assert built[0].train["input_ids"] == built[1].train["input_ids"] == built[2].train["input_ids"]
    assert built[0].train["labels"] == built[1].train["labels"] == built[2].train["labels"]


def test_a_save_to_disk_folder_and_a_dataset_object(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path / "home"))
    ds = datasets.Dataset.from_list(ALPACA)
    ds.save_to_disk(str(tmp_path / "saved"))
    found = load_rows(str(tmp_path / "saved"))
    assert found.format == "alpaca" and found.description == f"saved dataset {str(tmp_path / 'saved')!r}"
    assert [r["answer"] for r in found.rows] == [r["output"] for r in ALPACA]
    # a DatasetDict's folder: its train split
    datasets.DatasetDict({"train": datasets.Dataset.from_list(SHAREGPT)}).save_to_disk(str(tmp_path / "dict"))
    assert load_rows(str(tmp_path / "dict")).format == "sharegpt"
    # an object in RunConfig: saved once by fingerprint, so the stored config names a folder
    c = cfg(dataset=ds)
    assert isinstance(c.dataset, str) and c.dataset.startswith(str(tmp_path / "home" / "datasets"))
    assert cfg(dataset=ds).dataset == c.dataset and c.to_dict()["dataset"] == c.dataset
    assert [r["prompt"] for r in load_rows(c.dataset).rows] == [_alpaca_prompt(r) for r in ALPACA]


def test_a_dict_without_a_train_split_is_refused_by_name(tmp_path):
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_list(PAIRS)}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match="splits 'test' but no 'train' split"):
        load_rows(str(tmp_path / "d"))


def test_a_folder_that_is_not_a_saved_dataset(tmp_path):
    with pytest.raises(DataError, match="not a datasets save_to_disk folder"):
        load_rows(str(tmp_path))


def test_a_file_that_fits_no_format_lists_the_formats_and_its_columns(tmp_path):
    path = write(tmp_path / "q.csv", [{"question": "a", "answer": "b"}], "csv")
    with pytest.raises(DataError) as err:
        load_rows(path)
    msg = str(err.value)
    assert "has the columns 'question', 'answer'" in msg and repr(path) in msg
    for fmt in ("prompt/completion", "OpenAI/HF messages", "Alpaca", "ShareGPT", "classification"):
        assert fmt in msg


def test_bad_rows_name_the_file_line_and_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [ALPACA[0], {"instruction": "x", "output": ""}]) + "\n")
    with pytest.raises(DataError, match=rf"{path}'? line 2, column 'output': empty"):
        load_rows(str(path))
    bad = [SHAREGPT[0], {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}]}]
    path = write(tmp_path / "s.jsonl", bad, "jsonl")
    with pytest.raises(DataError, match=r"line 2, column 'conversations': turn 2 is from 'robot'"):
        load_rows(path)
    path = write(tmp_path / "s.csv", [{"conversations": "[oops"}, {"conversations": "[]"}], "csv")
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'conversations': is text but not JSON"):
        load_rows(path)
    pd.DataFrame([{"conversations": [{"from": "human", "value": "hi"}]}] * 2).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DataError, match=r"row 1, column 'conversations': needs an assistant turn .*'gpt' turns"):
        load_rows(str(tmp_path / "s.parquet"))
