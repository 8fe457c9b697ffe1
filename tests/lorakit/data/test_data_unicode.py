"""Text that is not valid Unicode (a lone surrogate, as a cut emoji leaves in JSON) is a row error naming the
file, the line and the column, like any other, and ``on_bad_rows='skip'`` leaves the row out."""
from __future__ import annotations

import json

import pytest
from data_support import ROWS, cfg

from lorakit.data import DataError, build_data, load_rows

CUT_EMOJI = '{"prompt": "Smile \\ud83d please", "completion": "ok"}'  # the high half of U+1F600 alone


def _file(tmp_path, bad_line: str, at: int = 3):
    lines = [json.dumps(r) for r in ROWS]
    lines[at - 1] = bad_line
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_lone_surrogate_names_file_line_and_column(tmp_path):
    path = _file(tmp_path, CUT_EMOJI)
    with pytest.raises(DataError) as err:
        load_rows(str(path))
    msg = str(err.value)
    assert msg.startswith(f"dataset: {str(path)!r} line 3, column 'prompt': text that is not valid Unicode")
    assert "U+D83D at character 7" in msg and "on_bad_rows='skip'" in msg


def test_in_a_chat_turn_it_names_the_turn(tmp_path):
    turns = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udc00"}]}'
    lines = [json.dumps({"messages": [{"role": "user", "content": r["prompt"]},
                                      {"role": "assistant", "content": r["completion"]}]}) for r in ROWS]
    lines[1] = turns
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2, column 'messages': turn 2, 'content': text that is not valid"):
        load_rows(str(path))


def test_skip_leaves_it_out_and_training_data_builds(tmp_path, tok):
    path = _file(tmp_path, CUT_EMOJI)
    source = load_rows(str(path), on_bad_rows="skip")
    assert len(source.rows) == len(ROWS) - 1
    bundle = build_data(cfg(dataset=str(path), on_bad_rows="skip"), tok)
    assert bundle.stats["skipped_at"][0].startswith("line 3, column 'prompt': text that is not valid Unicode")
