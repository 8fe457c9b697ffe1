"""The data preview as HTML: each example's tokens, the ones that carry loss highlighted."""
from __future__ import annotations

import html

from lorakit.data import preview

_BOX = ("font-family:monospace;font-size:12px;line-height:1.9;white-space:pre-wrap;"
        "border:1px solid #ddd;border-radius:4px;padding:6px;margin:4px 0")
_LOSS_BG, _PROMPT_BG = "#ffd54f", "#f1f1f1"


def preview_html(bundle_or_rows, tokenizer=None, n: int = 3) -> str:
    """HTML of the first ``n`` examples of a ``DataBundle`` (or a config), loss tokens highlighted;
    also accepts ``lorakit.data.preview()``'s output (then no tokenizer is needed)."""
    rows = bundle_or_rows if isinstance(bundle_or_rows, list) else preview(bundle_or_rows, tokenizer, n)
    parts = ['<div class="lorakit-preview">',
             f'<div style="font-size:12px">Tokens with a <span style="background:{_LOSS_BG}">yellow</span> '
             'background carry loss (the answer and end-of-turn); grey ones are the prompt (label -100).</div>']
    skipped = getattr(bundle_or_rows, "stats", {}).get("skipped_rows", 0)
    if skipped:  # on_bad_rows='skip': say how many rows were left out and where the first were
        where = "; ".join(bundle_or_rows.stats.get("skipped_at", []))
        parts.append(f'<div class="lorakit-skipped" style="font-size:12px;color:#a15c00">{skipped} bad row(s) '
                     f'skipped: {html.escape(where)}</div>')
    for tokens in rows:
        n_loss = sum(flag for _, flag in tokens)
        spans = []
        for text, flag in tokens:
            shown = html.escape(text).replace("\n", "\u21b5\n")  # a newline token stays visible
            bg, color = (_LOSS_BG, "#000") if flag else (_PROMPT_BG, "#777")
            spans.append(f'<span style="background:{bg};color:{color};border-right:1px solid #fff">{shown}</span>')
        parts.append(f'<div style="{_BOX}"><div style="font-size:11px;color:#555">{len(tokens)} tokens, '
                     f'{n_loss} with loss</div>{"".join(spans)}</div>')
    parts.append("</div>")
    return "".join(parts)
