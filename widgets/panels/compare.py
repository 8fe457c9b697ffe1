"""Compare panel: every stored run in a table; charts and sample generations for the selected runs."""
from __future__ import annotations

from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go

import lorakit
from lorakit.comparison import samples_html, tables_html

from ..export_job import FORMATS, GGUF_TYPES, RunExport
from ..fields import plain_text, status_html
from .base import Panel

# said where the selection is made: one list picks the runs for the charts, Delete and Export
SELECT_HINT = ('<div style="font-size:12px;color:#555;line-height:1.3">Ctrl-click (⌘-click on a Mac) or '
               'Shift-click to pick several runs. The selection is what the charts below draw, and what Delete, '
               'Export and Export selected run act on (none selected: the charts draw this page).</div>')
PAGE_SIZE = 50  # runs in the table at once: a semester's store holds thousands


class ComparePanel(Panel):
    """The run store as a table (it survives kernel restarts), with row selection, delete and export;
    loss overlay, memory bars and memory vs task metric for the selection; generations before/after.

    The table shows one page of runs (the newest first, ``PAGE_SIZE`` at a time, Newer/Older to move);
    only the page's runs and the selected ones are read with their histories, so a store of thousands
    of runs opens as quickly as one of ten. The charts draw the selected runs (the page's, when none is)."""

    title = "Compare runs"
    subtitle = "every run in the store"

    def __init__(self, controller=None, **kwargs):
        super().__init__(controller, **kwargs)
        self.records: list = []  # the page's runs, oldest first, and any selected run read since
        self.frame = None
        self.page, self.page_size, self.total = 0, PAGE_SIZE, 0
        self.page_label = W.HTML("")
        self.table = W.HTML("", layout=W.Layout(overflow="auto", max_height="320px"))
        self.select = W.SelectMultiple(options=[], rows=6, description="selected",
                                       layout=W.Layout(width="420px"))
        self.select.style.description_width = "70px"
        self.select.add_class("lorakit-compare-select")
        self.select.observe(self._guard(lambda ch: self._selection_changed()), "value")
        self.path = W.Text(value="lorakit_report", description="export to", layout=W.Layout(width="300px"))
        self.path.style.description_width = "70px"
        self.message = W.HTML("")
        self.select_hint = W.HTML(SELECT_HINT, layout=W.Layout(width="420px"))
        # Delete asks first, naming how many runs go: a row that appears under the buttons until answered
        self.confirm_text = W.HTML("")
        self.confirm_row = W.HBox([self.confirm_text,
                                   self.button("Yes, delete", self.confirm_delete, style="danger", width="110px"),
                                   self.button("No", self.cancel_delete, width="60px")],
                                  layout=W.Layout(display="none", align_items="center"))
        self.confirm_row.add_class("lorakit-confirm-delete")
        self._to_delete: list = []
        buttons = W.VBox([
            self.button("Refresh", self.refresh, width="150px"),
            self.button("Delete selected…", self.delete_selected, style="warning", width="150px",
                        tooltip="Delete the selected runs and their adapters from the store (asks first)"),
            self.button("Export CSV", lambda: self.export("csv"), width="150px"),
            self.button("Export HTML report", lambda: self.export("html"), width="150px"),
            self._resume_button(),
        ])
        pager = W.HBox([self.button("◀ Newer", self.previous_page, width="90px"),
                        self.button("Older ▶", self.next_page, width="90px"), self.page_label])
        self.loss_chart = _figure("Loss (selected runs)")
        self.memory_chart = _figure("Memory (selected runs)")
        self.pareto_chart = _figure("Memory vs task metric")
        self.samples = W.HTML("", layout=W.Layout(overflow="auto", max_height="360px"))
        self._build_run_export()
        self.controller.on("runs", self._guard(self.refresh))
        # a run going: nothing resumes; its end (the status line, after the store has it): one may again
        self.controller.on("run", self._guard(lambda live: self.update_resume()))
        self.controller.on("status", self._guard(self.update_resume))
        self._set_children([
            pager,
            self.table,
            W.HBox([W.VBox([self.select, self.select_hint]), buttons, W.VBox([self.path, self.message])],
                   layout=W.Layout(margin="6px 0", flex_flow="row wrap")),
            self.confirm_row,
            self.run_export_box,
            W.HBox([self.loss_chart, self.memory_chart]),
            W.HBox([self.pareto_chart, self.samples]),
        ])
        self.refresh()

    # no form fields: a field change (values, problems) leaves the table and its charts as they are; the
    # store's changes (the runs topic) redraw them
    def _sync_values(self, changes: dict) -> None:
        pass

    def _show_problems(self, problems: dict) -> None:
        pass

    # --- data -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the store: the table's page, the selection list (every run, no histories) and charts."""
        summaries = self.controller.run_summaries()
        self.total = len(summaries)
        self.page = min(self.page, max(0, (self.total - 1) // self.page_size))
        self.records = self.controller.page_records(self.page, self.page_size)
        self.frame = lorakit.compare(self.records)
        if len(self.frame):
            short, every = tables_html(self.frame)  # the report's two tables: the short set, every column folded
            self.table.value = ('<div class="lorakit-runs-table" style="font-size:12px">' + short + "</div>"
                                f'<details class="lorakit-runs-all" style="font-size:12px"><summary style="cursor:'
                                f'pointer;color:#555">Every column ({len(self.frame.columns)})</summary>{every}'
                                "</details>")
        else:
            self.table.value = ('<div class="lorakit-runs-table" style="font-size:12px;color:#777">No runs in '
                                'the store yet: finished, stopped and failed runs all appear here.</div>')
        first = self.page * self.page_size
        self.page_label.value = (f'<span style="font-size:12px;color:#555">runs {first + 1:,}–'
                                 f'{first + len(self.records):,} of {self.total:,} (newest first)</span>'
                                 if self.total else "")
        options = [(_option_of(d), d["run_id"]) for d in reversed(summaries)]
        present = {d["run_id"] for d in summaries}
        keep = tuple(v for v in self.select.value if v in present)
        self._syncing = True
        try:
            self.select.options = options
            self.select.value = keep
        finally:
            self._syncing = False
        self.draw_charts()
        self.update_resume()

    def _selection_changed(self) -> None:
        self.draw_charts()
        self.update_resume()

    def next_page(self) -> None:
        """The table's next page (older runs)."""
        if (self.page + 1) * self.page_size < self.total:
            self.page += 1
            self.refresh()

    def previous_page(self) -> None:
        """The table's previous page (newer runs)."""
        if self.page > 0:
            self.page -= 1
            self.refresh()

    def selected_records(self) -> list:
        """The selected runs, oldest first (read from the store when not on this page); the page's runs
        when nothing is selected."""
        chosen = set(self.select.value)
        if not chosen:
            return list(self.records)
        known = {r.run_id: r for r in self.records}
        missing = [rid for rid in chosen if rid not in known]
        if missing:
            for r in self.controller.records_by_id(missing):
                known[r.run_id] = r
                self.records.append(r)
        return sorted((known[rid] for rid in chosen if rid in known), key=lambda r: r.created_at or 0.0)

    def draw_charts(self) -> None:
        recs = self.selected_records()
        _replace(self.loss_chart, lorakit.loss_figure(recs))
        _replace(self.memory_chart, lorakit.memory_figure(recs))
        metric = "task_metric" if any(r.task_metric is not None for r in recs) else "eval_loss"
        _replace(self.pareto_chart, lorakit.pareto_figure(recs, metric=metric))
        # the newest two: enough to read side by side
        self.samples.value = samples_html(recs[-2:], keys=("prompt", "before", "after"), empty=(
            "Sample generations before and after training appear here when a run finishes."))

    # --- resume: a stopped or failed run goes on from its newest checkpoint ---------------------------
    def _resume_button(self) -> W.Button:
        self.resume_button = self.button("Resume selected run", self.resume_selected, style="success",
                                         width="150px", tooltip="Select one stopped or failed run")
        self.resume_button.disabled = True
        return self.resume_button

    def update_resume(self) -> None:
        """Resume is enabled for exactly one selected run that can be resumed; its tooltip says why not."""
        ids = list(self.select.value)
        why = "Select one stopped or failed run" if len(ids) != 1 else self.controller.resumable(ids[0])
        self.resume_button.disabled = bool(why)
        self.resume_button.tooltip = why or f"Continue run {ids[0]} from its newest checkpoint"

    def resume_selected(self) -> bool:
        """Resume the one selected run (the Train panel's Stop stops it again)."""
        ids = list(self.select.value)
        if len(ids) != 1:
            self._say("warn", "Select one stopped or failed run to resume.")
            return False
        started = self.controller.resume_run(ids[0])
        self._say("ok" if started else "warn", f"Resuming run {ids[0]}: follow it in the Train panel."
                  if started else self.controller.status[1])
        self.update_resume()
        return started

    # --- actions ----------------------------------------------------------------------------------
    def delete_selected(self) -> None:
        """Ask before deleting the selected runs: the confirm row names how many (nothing is deleted yet)."""
        ids = list(self.select.value)
        if not ids:
            self._say("warn", "Select runs to delete first (Ctrl-click or Shift-click picks several).")
            return
        self._to_delete = ids
        what = "1 run" if len(ids) == 1 else f"{len(ids)} runs"
        self.confirm_text.value = status_html("warn", f"Delete {what} and their adapters from the store? "
                                                      "This cannot be undone.")
        self.confirm_row.layout.display = "flex"

    def confirm_delete(self) -> int:
        """Yes: delete the runs the question named (not a selection changed since)."""
        ids, self._to_delete = self._to_delete, []
        self.confirm_row.layout.display = "none"
        if not ids:
            return 0
        n = self.controller.delete_runs(ids)
        self._say("ok", f"Deleted {n} run(s).")
        return n

    def cancel_delete(self) -> None:
        self._to_delete = []
        self.confirm_row.layout.display = "none"
        self._say("info", "Nothing deleted.")

    @property
    def confirm_question(self) -> str:
        """The confirm row's question while it is shown, else ''."""
        return plain_text(self.confirm_text.value) if self.confirm_row.layout.display != "none" else ""

    def export(self, kind: str) -> Path:
        recs = self.selected_records()
        if not recs:
            self._say("warn", "No runs to export.")
            return None
        stem = self.path.value.strip() or "lorakit_report"
        path = Path(stem if stem.endswith(f".{kind}") else f"{stem}.{kind}")
        try:
            out = lorakit.export_csv(recs, path) if kind == "csv" else lorakit.export_html(recs, path)
        except Exception as exc:  # noqa: BLE001 - a bad path is a message
            self._say("error", f"Export to {str(path)!r} failed: {type(exc).__name__}: {exc}")
            return None
        self._say("ok", f"Wrote {len(recs)} run(s) to {out}")
        return out

    # --- take a run home: lorakit.export on the one selected run -----------------------------------------
    def _build_run_export(self) -> None:
        self.export_format = W.Dropdown(options=list(FORMATS), value="peft", description="format",
                                        layout=W.Layout(width="180px"))
        self.gguf_type = W.Dropdown(options=list(GGUF_TYPES), value="f16", description="gguf type",
                                    layout=W.Layout(width="180px"))
        self.export_dest = W.Text(value="", placeholder="folder (default: RUN-FORMAT)", description="to",
                                  layout=W.Layout(width="300px"))
        self.export_overwrite = W.Checkbox(value=False, description="overwrite", indent=False,
                                           layout=W.Layout(width="100px"))
        for w in (self.export_format, self.gguf_type, self.export_dest):
            w.style.description_width = "60px"
        self.export_message = W.HTML("")
        self.run_export = RunExport(self._guard(self._say_export))
        self.export_run_button = self.button("Export selected run", self.export_run, style="primary",
                                             width="170px", tooltip="Write the selected run as a peft adapter, "
                                             "a merged model or a GGUF with an Ollama Modelfile")
        self.run_export_box = W.VBox([
            W.HBox([self.export_format, self.gguf_type, self.export_dest, self.export_overwrite,
                    self.export_run_button]),
            self.export_message,
        ], layout=W.Layout(margin="0 0 6px 0"))

    def export_run(self, background: bool = True) -> bool:
        """Export the one selected run with the format, gguf type and destination shown (on a thread)."""
        return self.run_export.start(list(self.select.value), self.records, self.export_dest.value,
                                     self.export_format.value, gguf_type=self.gguf_type.value,
                                     overwrite=self.export_overwrite.value, store=self.controller.store,
                                     background=background)

    def _say_export(self, level: str, text: str) -> None:
        self.export_message.value = status_html(level, text)

    @property
    def export_text(self) -> str:
        return plain_text(self.export_message.value)

    def _say(self, level: str, text: str) -> None:
        self.message.value = status_html(level, text)

    @property
    def message_text(self) -> str:
        return plain_text(self.message.value)

    @property
    def table_text(self) -> str:
        return plain_text(self.table.value)


def _figure(title: str) -> go.FigureWidget:
    return go.FigureWidget(layout=go.Layout(title=title, height=300, width=480, template="plotly_white",
                                            margin=dict(t=40, r=10, b=40, l=50)))


def _replace(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Show ``fig`` in the existing FigureWidget, in one batched update."""
    layout = fig.layout.to_plotly_json()
    layout.pop("template", None)
    with fw.batch_update():
        fw.data = ()
        fw.add_traces(list(fig.data))
        # the whole layout replaced, not merged: an empty figure's hidden axes and note must not outlive it
        fw.layout = go.Layout(layout, template=fw.layout.template)
        # the figure's own height: it grows with the runs (a row per bar, a legend line per run)
        fw.update_layout(height=max(300, layout.get("height") or 0), width=480)


def _option(r) -> str:
    label = getattr(r.config, "label", "") or r.run_id
    return f"{label} · {r.status} · {r.run_id}"


def _option_of(summary: dict) -> str:
    """A selection-list entry from a store summary (no history read): label · status · run id."""
    return f"{summary.get('label') or summary['run_id']} · {summary['status']} · {summary['run_id']}"

