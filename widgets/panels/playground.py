"""Playground panel: type a prompt and watch the base and stored runs' adapters answer side by side, token by
token, with each column's time to first token and tokens/s, and the memory the loaded columns take. Each column
shows its conversation (the earlier prompts and its answers); Clear starts a new one."""
from __future__ import annotations

import html
import threading

import ipywidgets as W

from ..fields import plain_text, status_html
from ..playground import PlaygroundControl
from ..throttle import Throttle
from .base import Panel

STATE_COLORS = {"waiting": "#777", "writing": "#1565c0", "done": "#2e7d32", "stopped": "#b26a00", "failed": "#c62828"}


class PlaygroundPanel(Panel):
    """Prompt, columns (the base and stored runs of the same base; others listed with the reason), generation
    settings, Generate / Stop. The panel only forwards values; ``PlaygroundControl`` holds the state.
    Redraws from the generating thread are coalesced by a Throttle (at most one per ``interval`` seconds)."""

    title = "Playground"
    subtitle = "talk to the base and its adapters side by side"

    def __init__(self, controller=None, model=None, interval: float = 0.2, **kwargs):
        super().__init__(controller, **kwargs)
        c = self.controller
        self.play = getattr(c, "playground", None) or PlaygroundControl(c, model)
        c.playground = self.play
        p = self.play
        self.prompt = W.Textarea(placeholder="Type a prompt…", layout=W.Layout(width="100%", height="70px"))
        self.prompt.add_class("lorakit-playground-prompt")
        self.prompt.observe(self._guard(lambda ch: p.set_prompt(ch["new"])), "value")
        self.base = W.Dropdown(description="base", options=p.bases(), value=p.base, layout=W.Layout(width="320px"))
        self.base.observe(self._guard(lambda ch: p.set_base(ch["new"])), "value")
        self.columns_pick = W.SelectMultiple(description="columns", rows=4, layout=W.Layout(width="420px"))
        self.columns_pick.observe(self._guard(self._picked), "value")
        self.unavailable = W.HTML("")
        d = p.settings
        self.max_new_tokens = W.IntText(value=d["max_new_tokens"], description="max new tokens")
        self.temperature = W.FloatText(value=d["temperature"], description="temperature", tooltip="0: greedy")
        self.top_p = W.FloatText(value=d["top_p"], description="top-p")
        self.seed = W.IntText(value=d["seed"], description="seed")
        for name in ("max_new_tokens", "temperature", "top_p", "seed"):
            w = getattr(self, name)
            w.layout, w.style.description_width = W.Layout(width="200px"), "100px"
            w.observe(self._guard(lambda ch, n=name: p.set_setting(n, ch["new"])), "value")
        self.generate_button = self.button("Generate", p.generate, style="success", width="110px",
                                           tooltip="Every chosen column answers the prompt, token by token")
        self.stop_button = self.button("Stop", p.stop, style="danger", width="110px",
                                       tooltip="End the answer being written within a token")
        self.clear_button = self.button("Clear", p.clear, width="110px",
                                        tooltip="Forget the conversation: the next prompt starts a new one")
        self.status = W.HTML(status_html(*p.status))
        self.memory = W.HTML("")
        self.outputs = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.outputs.add_class("lorakit-playground-columns")
        self._cells: dict = {}
        self._draw_lock = threading.Lock()  # the throttle's thread and the control's both redraw
        self.throttle = Throttle(self._redraw_columns, interval=interval,
                                 on_error=lambda e: p._say("error", f"column redraw failed: {e}"))
        c.on("playground", self._guard(self._redraw))
        c.on("playground_piece", self._guard(lambda name: self.throttle.push(name)))
        c.on("playground_status", self._guard(self._redraw_status))
        self._set_children([
            self.prompt,
            W.HBox([W.VBox([self.base, self.columns_pick, self.unavailable]),
                    W.VBox([self.max_new_tokens, self.temperature, self.top_p, self.seed])]),
            W.HBox([self.generate_button, self.stop_button, self.clear_button, self.memory],
                   layout=W.Layout(align_items="center")),
            self.status, self.outputs,
        ])
        self._redraw()

    # no RunConfig fields: the form's changes leave the Playground as it is
    def _sync_values(self, changes: dict) -> None:
        pass

    def _show_problems(self, problems: dict) -> None:
        pass

    def _picked(self, change) -> None:
        if not self._syncing:
            self.play.select(change["new"])

    # --- from the control (any thread) --------------------------------------------------------------------
    def _redraw(self) -> None:
        p = self.play
        self._syncing = True
        try:
            if list(self.base.options) != p.bases():
                self.base.options = p.bases()
            if self.base.value != p.base:
                self.base.value = p.base
            options = [(label, name) for name, label in p.choices()]
            if list(self.columns_pick.options) != options:
                self.columns_pick.options = options
            if tuple(self.columns_pick.value) != tuple(p.selected):
                self.columns_pick.value = tuple(p.selected)
        finally:
            self._syncing = False
        self.unavailable.value = "".join(
            f'<div style="font-size:11px;color:#777">{html.escape(rid)}: {html.escape(why)}</div>'
            for rid, why in p.unavailable())
        self.memory.value = f'<span style="font-size:12px;color:#555">{html.escape(p.memory_text)}</span>'
        self._redraw_columns()  # before the status: "Done." / "Stopped." never shows above a column still writing
        self._redraw_status()

    def _redraw_status(self) -> None:
        p = self.play
        level, text = p.status
        if p.problems:
            level, text = "error", "; ".join(f"{k}: {v}" for k, v in p.problems.items())
        html_ = status_html(level, text)
        if self.status.value != html_:
            self.status.value = html_
        self.stop_button.disabled = not p.running
        self.generate_button.disabled = self.clear_button.disabled = p.running

    def _redraw_columns(self, _items=None) -> None:
        with self._draw_lock:
            self._draw_columns()

    def _draw_columns(self) -> None:
        p = self.play
        with p.lock:
            cols = [(c.name, c.label, c.text, c.state, c.stats.as_dict(), p.history(c.name)) for c in p.columns]
            asked = p.asked
        if [n for n, *_ in cols] != list(self._cells):
            self._cells = {n: (W.HTML(), W.HTML(), W.HTML(), W.HTML()) for n, *_ in cols}
            self.outputs.children = [W.VBox([head, talk, body, foot], layout=W.Layout(
                width="32%", min_width="260px", margin="4px", padding="4px", border="1px solid #eee"))
                for head, body, foot, talk in self._cells.values()]
            for name, (head, *_) in self._cells.items():
                head.add_class(f"lorakit-playground-column-{name}")
        for name, label, text, state, stats, history in cols:
            head, body, foot, talk = self._cells[name]
            talk_html = _talk_html(history, asked)
            if talk.value != talk_html:
                talk.value = talk_html
            head_html = (f'<b style="font-size:12px">{html.escape(label)}</b> '
                         f'<span style="color:{STATE_COLORS[state]};font-size:11px">{state}</span>')
            body_html = (f'<div class="lorakit-playground-answer" style="white-space:pre-wrap;font-size:13px">'
                         f'{html.escape(text)}</div>')
            for w, v in ((head, head_html), (body, body_html), (foot, _stats_html(stats))):
                if w.value != v:
                    w.value = v

    # --- for tests and scripts --------------------------------------------------------------------------------
    @property
    def status_text(self) -> str:
        return plain_text(self.status.value)

    def answer_text(self, name: str) -> str:
        """Column ``name``'s answer as shown (plain text)."""
        return plain_text(self._cells[name][1].value)

    def conversation_text(self, name: str) -> str:
        """Column ``name``'s conversation above its answer, as shown (plain text)."""
        return plain_text(self._cells[name][3].value)

    def click_clear(self) -> None:
        self.clear_button.click()

    def click_generate(self) -> None:
        self.generate_button.click()

    def click_stop(self) -> None:
        self.stop_button.click()


def _talk_html(history: list, asked: str) -> str:
    """A column's earlier turns (prompt, its answer) and the prompt it answers now; all text escaped."""
    you = '<div style="font-size:12px;color:#555;margin-top:4px"><b>you:</b> {}</div>'
    said = '<div style="white-space:pre-wrap;font-size:13px;color:#333">{}</div>'
    parts = [you.format(html.escape(q)) + said.format(html.escape(a)) for q, a in history]
    return "".join(parts) + (you.format(html.escape(asked)) if asked else "")


def _stats_html(s: dict) -> str:
    ttft = f"{s['ttft_s']:.2f} s" if s["ttft_s"] is not None else "–"
    rate = f"{s['tokens_per_s']:.1f} tok/s" if s["tokens_per_s"] else "– tok/s"
    return f'<span style="font-size:11px;color:#555">{s["tokens"]} tokens · first after {ttft} · {rate}</span>'


class Playground(PlaygroundPanel):
    """The Playground on its own: ``from lorakit.widgets import Playground; Playground()``.

    ``store``: a RunStore, a path or None (the default store); ``model``: the base to start with (default: the
    base of the newest stored LoRA run)."""

    def __init__(self, store=None, model=None, controller=None, **kwargs):
        if controller is None:
            from ..controller import StudioController

            controller = StudioController(store=store)
        super().__init__(controller, model=model, **kwargs)
