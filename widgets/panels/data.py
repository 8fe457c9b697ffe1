"""Data panel: a built-in task or a file; counts, truncation and which tokens carry the loss."""
from __future__ import annotations

import html

import ipywidgets as W

from lorakit.config import builtin_model_type, families
from lorakit.data import list_tasks, tasks_for

from .base import Panel


class DataPanel(Panel):
    """Pick the data; Preview shows a few formatted examples with the loss tokens highlighted."""

    title = "Data"
    subtitle = "what it learns"

    def __init__(self, controller=None, **kwargs):
        super().__init__(controller, **kwargs)
        self.tasks = {t.name: t for t in list_tasks()}
        self.task = W.Dropdown(options=self._task_options(), layout=W.Layout(width="95%"))
        self.path = W.Text(placeholder="or a .jsonl / .csv / .parquet file or a save_to_disk folder "
                                       "(prompt/completion, messages, Alpaca, ShareGPT)",
                           description="file", continuous_update=False, layout=W.Layout(width="95%"))
        self.path.style.description_width = "110px"
        self.train_examples = W.IntText(layout=W.Layout(width="220px"))
        self.eval_examples = W.IntText(layout=W.Layout(width="220px"))
        self.field("dataset", self.task, "task")
        self.field("train_examples", self.train_examples, "train examples")
        self.field("eval_examples", self.eval_examples, "eval examples")
        self.preview_button = self.button("Preview", lambda: self.controller.preview_data(),
                                          tooltip="Format and tokenize the data; count truncated examples")
        self.about = W.HTML("")
        self.counts = W.HTML("")
        self.preview = W.HTML("", layout=W.Layout(max_height="260px", overflow="auto"))
        self.path.observe(self._guard(self._path_changed), "value")
        self.controller.on("data", self._guard(self.refresh))
        self.controller.on("model", self._guard(lambda: self._offer_tasks()))
        self._put_dataset(self.controller.values["dataset"])
        self._set_children([self.fields["dataset"].box, self.path,
                            W.HBox([self.fields["train_examples"].box, self.fields["eval_examples"].box]),
                            self.about, W.HBox([self.preview_button, self.counts]), self.preview])
        self.refresh()

    def _forward(self, name, value) -> None:
        if self._syncing:
            return
        if name == "dataset" and self.path.value.strip():
            return  # the file field wins while it is filled
        super()._forward(name, value)

    def _path_changed(self, change) -> None:
        if not self._syncing:
            self.controller.set(dataset=change["new"].strip() or self.task.value)

    def _sync_values(self, changes: dict) -> None:
        if {"model", "task", "dataset"} & set(changes):
            self._offer_tasks()
        if "dataset" in changes:
            self._put_dataset(changes["dataset"])
        rest = {k: v for k, v in changes.items() if k != "dataset"}
        super()._sync_values(rest)

    # --- the tasks that fit the model: a classifier's labels, or a prompt and an answer ---------------
    def _model_task(self) -> str:
        """What the form's model trains for: the task asked, the loaded model's, a built-in's own ('' unknown)."""
        v, info = self.controller.values, self.controller.model_info
        if isinstance(v.get("task"), str) and v["task"]:
            return v["task"]
        if info is not None and info.name == v["model"]:
            return info.task
        model_type = builtin_model_type(v["model"])
        return families.default_task(model_type) if model_type else ""

    def _task_options(self) -> list:
        """The built-in tasks that fit the model, and the chosen one even when it does not (never changed
        behind the user's back: the data check's message under the field says why it does not fit)."""
        names = [t.name for t in tasks_for(self._model_task())]
        chosen = self.controller.values["dataset"]
        if isinstance(chosen, str) and chosen in self.tasks and chosen not in names:
            names.append(chosen)
        return [(f"{n} — {self.tasks[n].description}", n) for n in names]

    def _offer_tasks(self) -> None:
        options = self._task_options()
        if list(self.task.options) != options:
            self._syncing = True
            try:
                self.task.options = options
            finally:
                self._syncing = False
            self._put_dataset(self.controller.values["dataset"])

    def _put_dataset(self, name: str) -> None:
        if not isinstance(name, str):
            return  # set from code, and no dataset: the message under the task says so
        self._syncing = True
        try:
            if name in self.tasks:
                self.task.value, self.path.value = name, ""
            else:
                self.path.value = name
        finally:
            self._syncing = False

    def refresh(self) -> None:
        c = self.controller
        task = self.tasks.get(c.values["dataset"]) if isinstance(c.values["dataset"], str) else None
        if task is not None:
            ex = task.example(c.values.get("seed", 0) if isinstance(c.values.get("seed"), int) else 0)
            about = (f'<div style="font-size:12px;color:#444;margin:2px 0 4px 4px">scored by '
                     f'<b>{html.escape(task.metric)}</b>. Example: <code>{html.escape(ex["prompt"][:160])}</code> '
                     f'→ <code>{html.escape(ex["answer"][:120])}</code></div>')
        else:
            about = '<div style="font-size:12px;color:#444;margin:2px 0 4px 4px">your own data file</div>'
        if self.about.value != about:
            self.about.value = about
        s = c.data_stats
        if s:
            notes = "".join(f"<br><i>{html.escape(n)}</i>" for n in s.get("notes", []))
            fmt = f'format: <b>{html.escape(s["format"])}</b> · ' if s.get("format") else ""
            counts = (f'{fmt}<b>{s["n_train"]}</b> train · <b>{s["n_eval"]}</b> eval examples · truncated: '
                      f'<b>{s["truncated_train"]}</b> train, <b>{s["truncated_eval"]}</b> eval '
                      f'(longest {s.get("max_len", "?")} of seq_len {s.get("seq_len", "?")} tokens){notes}')
        elif c.data_hint:  # Preview was pressed while other fields are invalid
            counts = f"<i>{html.escape(c.data_hint)}</i>"
        elif c.data_changed:  # a preview was shown, then the form changed: say why it went away
            counts = (f"<i>{html.escape(', '.join(c.data_changed))} changed: press Preview to count "
                      f"again</i>")
        else:
            counts = "<i>press Preview to count examples and see the loss tokens</i>"
        counts = f'<div class="lorakit-data-counts" style="font-size:12px;margin:4px 8px">{counts}</div>'
        if self.counts.value != counts:
            self.counts.value = counts
        if self.preview.value != c.data_html:
            self.preview.value = c.data_html
