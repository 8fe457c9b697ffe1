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
from lorakit.comparison.table import SHORT_COLUMNS, RunsArg, as_records, compare, display_names, plain_html, styled
from lorakit.comparison.timeline_figure import timeline_figure
from lorakit.run.record import RunRecord

__all__ = ["export_csv", "export_html", "samples_html", "tables_html", "REPORT_COLUMNS"]

# The columns of the HTML report's table: the short set, with status and run id; every column is one click
# away, in a folded table below it.
REPORT_COLUMNS = (*SHORT_COLUMNS, "status", "run_id")
SAMPLE_HEADERS = {"prompt": "prompt", "reference": "reference", "before": "before training",
                  "after": "after training"}


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading it means setting it: done once, at import, not beside a writing thread
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a report is shared, as an open() file would be
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


STYLED_ROWS = 300  # above this many runs the tables are plain HTML: pandas' Styler takes minutes for thousands


def tables_html(df) -> tuple[str, str]:
    """(the short table with its reader's headers, every column's table): styled, or plain HTML for many runs."""
    if len(df) > STYLED_ROWS:
        return plain_html(df, REPORT_COLUMNS, headers=True), plain_html(df)
    return styled(df, REPORT_COLUMNS, headers=True).to_html(), styled(df).to_html()


def _tables(df) -> str:
    """The short table, and every column in a folded one (one click away)."""
    if not len(df):
        return "<p class='note'>No runs.</p>"
    short, every = tables_html(df)
    return (short + f"<details class='all-columns'><summary>Every column ({len(df.columns)})</summary>"
            + every + "</details>")


# JupyterLab's HTML viewer runs no script until the file is trusted: its charts stay blank without a word. This
# note says what to do, and the report's first script removes it wherever scripts run (a browser, a trusted tab).
_SCRIPTS_NOTE = """<p id="lorakit-needs-scripts" class="warn">The charts in this report are drawn by JavaScript, which
this viewer has not run. In JupyterLab, press <b>Trust HTML</b> in this tab's toolbar; or open the file in a web
browser.</p>
<script>document.getElementById("lorakit-needs-scripts").remove();</script>"""


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .note { color: #666; }
.warn { background: #fff4e5; border: 1px solid #f0b35a; padding: 6px 10px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 24px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
.figure { margin: 16px 0 32px; }
details.all-columns { margin: -16px 0 24px; } details.all-columns summary { cursor: pointer; color: #555; }
"""


CHART_RUNS = 30  # runs the report's loss and memory charts and its samples show: the newest; the table lists all


def _report_runs(records: RunsArg, store: Any) -> tuple[list, list]:
    """(the table's runs, the charts' runs: the newest ``CHART_RUNS`` with their histories). Many runs given by id
    (or a whole store) are read as the table's light records, and only the charted ones whole."""
    from lorakit.store import RunStore, store_of

    if isinstance(records, RunStore):
        store, records = records, None
    ids = [records] if isinstance(records, str) else records
    by_id = records is None or (isinstance(ids, (list, tuple)) and all(isinstance(r, str) for r in ids))
    if not by_id or (ids is not None and len(ids) <= CHART_RUNS):
        recs = as_records(records, store)
        return recs, _newest(recs, CHART_RUNS)  # a curve or bar a run: past a few dozen, no chart can be read
    with store_of(store, required=True) as st:
        light = {r.run_id: r for r in st.table_records()}
        unknown = [i for i in ids or () if i not in light]
        if unknown:
            st.load(unknown[0])  # raises the store's own "unknown run" error
        recs = [light[i] for i in ids] if ids is not None else list(light.values())
        drawn = {r.run_id for r in _newest(recs, CHART_RUNS)}
        return recs, [st.load(r.run_id) for r in recs if r.run_id in drawn]


def _newest(recs: list, n: int) -> list:
    """The newest ``n`` of ``recs`` (by creation time), in the order given."""
    if len(recs) <= n:
        return recs
    keep = {id(r) for r in sorted(recs, key=lambda r: r.created_at or 0)[-n:]}
    return [r for r in recs if id(r) in keep]


def _drawn_note(drawn: list, recs: list) -> str:
    if len(drawn) == len(recs):
        return ""
    return (f" The loss and memory charts and the samples show the newest {len(drawn)}; the table and the "
            f"memory-vs-metric chart show all {len(recs):,}.")


def export_html(records: RunsArg = None, path: Union[str, os.PathLike] = "lorakit_report.html",
                title: str = "lorakit runs", store: Any = None, metric: Optional[str] = None) -> Path:
    """One self-contained HTML file (plotly.js inlined once): the table, loss / memory / Pareto charts,
    and the sample generations before and after training. Returns the path.

    ``metric`` for the Pareto chart: default ``task_metric`` when any run has one, else ``eval_loss``.
    """
    recs, drawn = _report_runs(records, store)
    df = compare(recs)
    if metric is None:
        metric = "task_metric" if df["task_metric"].notna().any() else "eval_loss"
    figures = [loss_figure(drawn), memory_figure(drawn), pareto_figure(df, metric=metric), timeline_figure(drawn)]
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
{_SCRIPTS_NOTE}
<p class="note">{len(recs)} run(s) &middot; generated {stamp} by lorakit. Memory in MiB (2<sup>20</sup> bytes).
{_drawn_note(drawn, recs)}</p>
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
{samples_html(drawn)}
</body></html>
"""
    out = Path(path)
    _atomic_write(out, doc)
    return out
