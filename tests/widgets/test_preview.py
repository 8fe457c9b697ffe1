"""The data preview's HTML: loss tokens highlighted, text escaped, newlines visible."""
import json

import pytest

import lorakit
from lorakit import RunConfig
from lorakit.data import build_data, preview
from lorakit.widgets.preview import preview_html


def test_tokens_are_escaped_and_flagged():
    html = preview_html([[("<b>", False), ("x\n", True)], [("y", True)]])
    assert html.startswith('<div class="lorakit-preview">') and html.endswith("</div>")
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "x\u21b5\n" in html  # a newline token is drawn, then breaks the line
    assert "2 tokens, 1 with loss" in html and "1 tokens, 1 with loss" in html
    assert html.count("background:#ffd54f") - 1 == 2  # -1: the legend
    assert html.count("background:#f1f1f1") == 1


@pytest.fixture(scope="module")
def tok():
    return lorakit.load_model("tiny-llama").tokenizer


def test_a_bundle_highlights_exactly_the_loss_tokens(tok):
    bundle = build_data(RunConfig(model="tiny-llama", train_examples=4, eval_examples=2, seq_len=512), tok)
    rows = preview(bundle, tok, n=2)
    html = preview_html(bundle, tok, n=2)
    assert html.count("background:#ffd54f") - 1 == sum(flag for row in rows for _, flag in row)  # -1: legend
    assert "&lt;|im_end|&gt;" in html and "<|im_end|>" not in html
    assert html == preview_html(rows)  # preview()'s rows draw the same


def test_skipped_rows_are_shown_above_the_examples(tok, tmp_path):
    path = tmp_path / "d.jsonl"
    good = [json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) for i in range(4)]
    path.write_text("\n".join([good[0], "{oops", *good[1:]]) + "\n")
    bundle = build_data(RunConfig(model="tiny-llama", dataset=str(path), on_bad_rows="skip", train_examples=4,
                                  eval_examples=1, seq_len=512), tok)
    html = preview_html(bundle, tok, n=1)
    assert '<div class="lorakit-skipped"' in html and "1 bad row(s) skipped: line 2: not valid JSON" in html
    assert "lorakit-skipped" not in preview_html(build_data(RunConfig(model="tiny-llama", train_examples=2,
                                                                      eval_examples=1, seq_len=512), tok), tok)


def test_the_studios_data_check_reads_as_the_run_will(tmp_path):
    """Studio(data_encoding=..., on_bad_rows=...) from code: the dataset field's check uses them too."""
    from lorakit.widgets.form import Form

    path = tmp_path / "d.csv"
    path.write_bytes("prompt,completion\ncafé,crème\n".encode("cp1252"))
    form = Form(model="tiny-llama", dataset=str(path), data_encoding="cp1252", on_bad_rows="skip")
    data_cfg = form.data_config()
    assert (data_cfg.data_encoding, data_cfg.on_bad_rows) == ("cp1252", "skip")
    assert data_cfg.dataset == str(path) and Form(model="tiny-llama").data_config().on_bad_rows == "error"
