"""A user's data file that cannot be used: the error names the file, the line or row and the column,
says what was expected and how to fix it; bad rows are skipped (and counted) only when asked."""
import json

import pandas as pd
import pytest
from data_support import ROWS, cfg, write

from lorakit import ConfigError, RunConfig
from lorakit.data import DataError, build_data, load_rows

GOOD = json.dumps({"prompt": "p", "completion": "c"})


def error(path, **kw) -> str:
    with pytest.raises(DataError) as err:
        load_rows(str(path), **kw)
    msg = str(err.value)
    assert msg.startswith(f"dataset: {str(path)!r}")  # every message names the file
    return msg


def test_a_broken_jsonl_line_is_named_by_number(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([GOOD, GOOD, '{"prompt": "p", "completion": }', GOOD]) + "\n")
    msg = error(path)
    assert " line 3: not valid JSON (Expecting value at column 31)" in msg
    assert 'each line must be one JSON object' in msg and "on_bad_rows='skip'" in msg


def test_a_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(f'{GOOD}\n\n["p", "c"]\n')  # the blank line 2 is no record, but still counts as a line
    assert " line 3: expected a JSON object {...}, got a list" in error(path)


def test_not_utf8_names_the_byte_and_line_and_suggests_an_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("prompt,completion\nok,fine\ncafé,crème\n".encode("cp1252"))
    msg = error(path)
    assert "is not UTF-8 (byte 0xe9 on line 3): re-save it as UTF-8, or pass data_encoding='cp1252'" in msg
    rows = load_rows(str(path), encoding="cp1252").rows
    assert [r["prompt"] for r in rows] == ["ok", "café"] and rows[1]["answer"] == "crème"


def test_utf16_is_recognised_by_its_byte_order_mark(tmp_path):
    path = tmp_path / "u16.jsonl"
    path.write_bytes((GOOD + "\n").encode("utf-16"))
    assert "pass data_encoding='utf-16'" in error(path)
    assert load_rows(str(path), encoding="utf-16").rows[0]["prompt"] == "p"


def test_a_byte_order_mark_from_a_spreadsheet_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("prompt,completion\na,b\nc,d\n".encode("utf-8-sig"))
    assert [r["prompt"] for r in load_rows(str(path)).rows] == ["a", "c"]


def test_csv_rows_name_the_row_the_line_and_the_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion\na,b\n"two\nlines",x\nc,\n')
    msg = error(path)
    assert " row 3 (line 5), column 'completion': empty; every row needs a completion" in msg
    path.write_text("prompt,completion\na,b\nc,d,e\n")
    assert " row 2 (line 3): 3 values but the header names 2 columns; put a value that holds a comma" in error(path)


def test_csv_with_semicolons_says_it_is_not_comma_separated(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt;completion\na;b\n")
    assert "has one column 'prompt;completion': it is not comma-separated" in error(path)


def test_wrong_types_and_nulls_name_the_column(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"prompt": ["a", None], "completion": ["b", "c"]}).to_parquet(path)
    assert " row 2, column 'prompt': empty (null)" in error(path)
    path = tmp_path / "d.jsonl"
    path.write_text(GOOD + "\n" + json.dumps({"prompt": {"text": "p"}, "completion": "c"}) + "\n")
    assert " line 2, column 'prompt': expected text, got an object" in error(path)
    path.write_text(GOOD + "\n" + json.dumps({"prompt": "p"}) + "\n")
    assert " line 2, column 'completion': missing from this row" in error(path)
    path.write_text(json.dumps({"prompt": 2, "completion": 4.5}) + "\n" + GOOD + "\n")  # numbers are text
    assert load_rows(str(path)).rows[0]["answer"] == "4.5"


def test_bad_chat_turns_name_the_turn(tmp_path):
    path = tmp_path / "chat.jsonl"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["a", "b"]}]
    path.write_text(json.dumps({"messages": turns}) + "\n")
    assert " line 1, column 'messages': turn 2, 'content': expected text, got a list" in error(path)


def test_json_files_name_the_record_or_the_parse_position(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "a", "completion": "b"},\n {"prompt": "a", "completion": "b"')
    assert "is not valid JSON (line 2, column" in error(path)
    path.write_text(json.dumps([{"prompt": "a", "completion": "b"}, 7]))
    assert " record 2: expected a JSON object {...}, got int '7'" in error(path)
    path.write_text(json.dumps({"prompt": ["a", "b"], "completion": ["x", "y"]}))  # columns
    assert [r["answer"] for r in load_rows(str(path)).rows] == ["x", "y"]
    path.write_text(GOOD + "\n" + GOOD + "\n")  # JSON Lines under a .json name
    assert len(load_rows(str(path)).rows) == 2


def test_an_unknown_encoding_is_a_config_problem_and_a_data_error():
    with pytest.raises(ConfigError) as err:
        RunConfig(data_encoding="klingon", on_bad_rows="ignore")
    assert set(err.value.problems) == {"data_encoding", "on_bad_rows"}
    assert "'klingon'" in err.value.problems["data_encoding"]
    with pytest.raises(ConfigError, match="data_encoding"):
        RunConfig(data_encoding="rot13")  # a codec, but not bytes -> text


def test_skip_leaves_bad_rows_out_and_reports_count_and_first_lines(tmp_path, tok):
    lines = [json.dumps(r) for r in ROWS]
    lines[2] = "{broken"
    lines[5] = json.dumps({"prompt": "", "completion": "x"})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    msg = error(path)  # the default stops at the first bad row
    assert " line 3: not valid JSON" in msg
    source = load_rows(str(path), on_bad_rows="skip")
    assert len(source.rows) == len(ROWS) - 2 and source.skipped.count == 2
    bundle = build_data(cfg(dataset=str(path), on_bad_rows="skip"), tok)
    assert bundle.stats["skipped_rows"] == 2
    assert bundle.stats["skipped_at"] == ["line 3: not valid JSON (Expecting property name enclosed in double "
                                          "quotes at column 2)", "line 6, column 'prompt': empty"]
    assert any(n.startswith("2 bad row(s) skipped (on_bad_rows='skip'): line 3") for n in bundle.stats["notes"])


def test_skip_keeps_only_the_first_few_and_still_needs_two_rows(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(["nope"] * 9 + [GOOD]) + "\n")
    with pytest.raises(DataError, match=r"found 1, after 9 bad row\(s\) were skipped"):
        build_data(cfg(dataset=str(path), on_bad_rows="skip"), tok)
    skipped = load_rows(str(path), on_bad_rows="skip").skipped
    assert skipped.count == 9 and len(skipped.first) == 5 and skipped.note().endswith("; 4 more")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_file_that_only_has_a_header_is_empty(tmp_path, kind):
    path = write(tmp_path / f"d.{kind}", pd.DataFrame({"prompt": [], "completion": []}), kind)
    assert "is empty (no rows)" in error(path)
