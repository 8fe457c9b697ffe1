"""Runs side by side, exported: the table as CSV, and one self-contained HTML report (table, charts,
sample generations before and after training). Files are written atomically (a temporary file, then
a rename), so a failed export never leaves half a file."""
from __future__ import annotations

import html
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from lorakit.comparison.figures import loss_figure, memory_figure, pareto_figure
from lorakit.comparison.table import SHORT_COLUMNS, RunsArg, as_records, compare, display_names, styled
from lorakit.comparison.timeline_figure import timeline_figure
from lorakit.run.record import RunRecord

__all__ = ["export_csv", "export_html", "samples_html", "REPORT_COLUMNS"]

# The columns of the HTML report's table: the short set, with status and run id; every column is one click
# away, in a folded table below it.
REPORT_COLUMNS = (*SHORT_COLUMNS, "status", "run_id")
SAMPLE_HEADERS = {"prompt": "prompt", "reference": "reference", "before": "before training",
                  "after": "after training"}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_csv(df_or_records: RunsArg, path: Union[str, os.PathLike], store: Any = None) -> Path:
    """Write the comparison table (a ``compare()`` frame, or runs to compare) as CSV; returns the path."""
    df = compare(df_or_records, store)
    out = Path(path)
    _atomic_write(out, df.to_csv(index=False))
    return out


def samples_html(records: Sequence[RunRecord], keys: Sequence[str] = ("prompt", "reference", "before", "after"),
                 empty: str = "No sample generations recorded.") -> str:
    """Each run's sample generations as a small table (``keys``: which of prompt, reference, before and
    after training), styled inline so it reads the same in the report and in a notebook widget."""
    cell = ('<td style="padding:2px 6px;vertical-align:top;border:1px solid #ddd"><pre style="white-space:pre-wrap;'
            'margin:0;font-size:11px;max-width:26em">{}</pre></td>')
    head = "".join(f'<th style="padding:2px 6px;text-align:left">{SAMPLE_HEADERS[k]}</th>' for k in keys)
    parts = []
    for r, name in zip(records, display_names(records), strict=True):
        if not r.samples:
            continue
        rows = "".join(
            "<tr>" + "".join(cell.format(html.escape("" if s.get(k) is None else str(s[k]))) for k in keys) + "</tr>"
            for s in r.samples)
        parts.append(f'<div class="lorakit-samples" style="font-size:12px;margin:4px 0 12px"><b>{html.escape(name)}'
                     f'</b> <span style="color:#777">{html.escape(r.run_id)}</span>'
                     '<table style="border-collapse:collapse">'
                     f'<tr>{head}</tr>{rows}</table></div>')
    if not parts:
        return f'<div class="note" style="font-size:12px;color:#777;padding:8px">{html.escape(empty)}</div>'
    return "\n".join(parts)


def _tables(df) -> str:
    """The short table, and every column in a folded one (one click away)."""
    if not len(df):
        return "<p class='note'>No runs.</p>"
    return (styled(df, REPORT_COLUMNS, headers=True).to_html()
            + f"<details class='all-columns'><summary>Every column ({len(df.columns)})</summary>"
            + styled(df).to_html() + "</details>")


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .note { color: #666; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 24px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
.figure { margin: 16px 0 32px; }
details.all-columns { margin: -16px 0 24px; } details.all-columns summary { cursor: pointer; color: #555; }
"""


def export_html(records: RunsArg = None, path: Union[str, os.PathLike] = "lorakit_report.html",
                title: str = "lorakit runs", store: Any = None, metric: Optional[str] = None) -> Path:
    """One self-contained HTML file (plotly.js inlined once): the table, loss / memory / Pareto charts,
    and the sample generations before and after training. Returns the path.

    ``metric`` for the Pareto chart: default ``task_metric`` when any run has one, else ``eval_loss``.
    """
    recs = as_records(records, store)
    df = compare(recs)
    if metric is None:
        metric = "task_metric" if df["task_metric"].notna().any() else "eval_loss"
    figures = [loss_figure(recs), memory_figure(recs), pareto_figure(df, metric=metric), timeline_figure(recs)]
    fig_html = []
    for i, fig in enumerate(figures):
        fig_html.append("<div class='figure'>" + fig.to_html(
            full_html=False, include_plotlyjs=(i == 0), include_mathjax=False,
            config={"displaylogo": False, "responsive": True},
        ) + "</div>")
    table = _tables(df)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{len(recs)} run(s) &middot; generated {stamp} by lorakit. Memory in MiB (2<sup>20</sup> bytes).</p>
<h2>Runs</h2>
{table}
<h2>Loss</h2>
{fig_html[0]}
<h2>Memory</h2>
{fig_html[1]}
<p class="note">The categories above never all exist at once: the activations are freed during backward as the
gradients appear. Below, a step moment by moment: what coexists at each phase; the tallest bar is the step peak.</p>
{fig_html[3]}
<h2>Memory vs {html.escape(metric)}</h2>
{fig_html[2]}
<h2>Sample generations</h2>
{samples_html(recs)}
</body></html>
"""
    out = Path(path)
    _atomic_write(out, doc)
    return out
