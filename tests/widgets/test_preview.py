"""The data preview's HTML: loss tokens highlighted, text escaped, newlines visible."""
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
