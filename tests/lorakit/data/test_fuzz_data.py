"""Fuzzed: the data readers (JSON Lines, JSON, CSV, Parquet files with odd records, bytes and encodings)
and load_rows' arguments. Any input gives rows or a DataError naming the dataset (fuzz_support.outcome)."""
import io
import json

import pandas as pd
import pytest
from fuzz_support import JUNK, budget, outcome
from hypothesis import given
from hypothesis import strategies as st

from lorakit.data import DataError, load_rows

NAMES = ("dataset", "data_encoding", "on_bad_rows")
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
TURNS = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", 3]),
                                        "content": st.one_of(st.text(max_size=8), JSON)}), max_size=3)
RECORD = st.one_of(
    st.fixed_dictionaries({"prompt": st.one_of(st.text(max_size=10), JSON),
                           "completion": st.one_of(st.text(max_size=10), JSON)}),
    st.fixed_dictionaries({"messages": st.one_of(TURNS, JSON, st.text(max_size=10))}), JSON)
ENCODING = st.sampled_from(["utf-8", "utf-8", "latin-1", "cp1252", "utf-16", "ascii", "rot13", "klingon", ""])
ON_BAD = st.sampled_from(["error", "skip", "skip", "ignore"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _text(records: list, kind: str) -> str:
    if kind == "jsonl":
        return "\n".join(json.dumps(r) for r in records)
    if kind == "json":
        return json.dumps(records)
    out = io.StringIO()  # csv: the records' values as text, under the keys of the first one
    keys = list(records[0]) if records and isinstance(records[0], dict) else ["prompt", "completion"]
    pd.DataFrame([r if isinstance(r, dict) else {"prompt": r} for r in records], columns=keys).to_csv(out, index=False)
    return out.getvalue()


@budget(150)
@given(records=st.lists(RECORD, max_size=5), kind=st.sampled_from(["jsonl", "json", "csv"]),
       damage=st.one_of(st.none(), st.binary(min_size=1, max_size=6)), cut=st.integers(0, 200),
       saved_as=ENCODING, encoding=ENCODING, on_bad_rows=ON_BAD)
def test_text_files(folder, records, kind, damage, cut, saved_as, encoding, on_bad_rows):
    try:
        data = _text(records, kind).encode(saved_as or "utf-8")
    except (LookupError, UnicodeEncodeError):  # a codec that cannot save this text: save UTF-8
        data = _text(records, kind).encode("utf-8")
    if damage is not None:  # bytes spliced in: broken JSON, a stray Latin-1 byte, a NUL
        data = data[:cut] + damage + data[cut:]
    path = folder / f"data.{kind}"
    path.write_bytes(data)
    result = outcome(load_rows, str(path), encoding, on_bad_rows, names=NAMES)
    if isinstance(result, DataError):
        assert str(result).startswith("dataset: ")
    else:
        assert all(isinstance(r["prompt"], str) and r["answer"].strip() for r in result.rows)


@budget(40)
@given(columns=st.dictionaries(st.sampled_from(["prompt", "completion", "messages", "other"]),
                               st.sampled_from([["a", "b"], [None, "x"], [1, 2], [1.5, None], [["x"], ["y"]],
                                                ['[{"role": "user", "content": "q"}]', "nope"]]), max_size=3),
       damage=st.one_of(st.none(), st.integers(0, 400)), on_bad_rows=ON_BAD)
def test_parquet_files(folder, columns, damage, on_bad_rows):
    path = folder / "data.parquet"
    try:
        pd.DataFrame(columns).to_parquet(path)
    except Exception:  # noqa: BLE001 - pyarrow cannot store this mix: not a user's file either
        return
    if damage is not None:
        path.write_bytes(path.read_bytes()[:damage])  # a truncated download
    outcome(load_rows, str(path), on_bad_rows=on_bad_rows, names=NAMES)


@budget(40)
@given(dataset=st.one_of(JUNK, st.sampled_from(["sort-words", "missing.csv", "./x", "a/b", "x.txt"])),
       encoding=st.one_of(ENCODING, JUNK), on_bad_rows=st.one_of(ON_BAD, JUNK))
def test_load_rows_arguments(dataset, encoding, on_bad_rows):
    outcome(load_rows, dataset, encoding, on_bad_rows, names=NAMES)
