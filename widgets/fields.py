"""Small building blocks shared by the panels: a field with its message line, status and number text."""
from __future__ import annotations

import html
from functools import lru_cache

import ipywidgets as W

STATUS_COLORS = {"info": "#555", "running": "#1565c0", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}


@lru_cache(maxsize=1)
def _docs() -> dict:
    try:
        from lorakit.config import field_docs

        return field_docs()
    except Exception:  # noqa: BLE001 - tooltips are a nicety
        return {}


class Field:
    """A form widget for one RunConfig field, with the field's help as tooltip and a message line.

    ``message`` shows the controller's problem for the field in red right under the widget.
    """

    def __init__(self, name: str, widget: W.Widget, label: str = ""):
        self.name, self.widget = name, widget
        if label:
            widget.description = label
        tip = _docs().get(name, "")
        if tip:
            widget.tooltip = tip
        if hasattr(widget, "style") and hasattr(widget.style, "description_width"):
            widget.style.description_width = "110px"
        self.message = W.HTML("", layout=W.Layout(margin="0 0 0 118px"))
        self.box = W.VBox([widget, self.message], layout=W.Layout(margin="0"))

    def show(self, problem: str) -> None:
        text = error_html(problem) if problem else ""
        if self.message.value != text:
            self.message.value = text

    @property
    def text(self) -> str:
        """The message as plain text (for tests)."""
        return html.unescape(_strip_tags(self.message.value))


def error_html(text: str) -> str:
    return (f'<div class="lorakit-field-error" style="color:{STATUS_COLORS["error"]};font-size:12px;'
            f'line-height:1.3;white-space:normal">{_lines(text)}</div>')


def status_html(level: str, text: str) -> str:
    color = STATUS_COLORS.get(level, STATUS_COLORS["info"])
    return (f'<div class="lorakit-status lorakit-status-{level}" style="color:{color};font-size:13px;'
            f'white-space:normal;padding:2px 0">{_lines(text)}</div>')


def title_html(text: str, sub: str = "") -> str:
    s = f'<b style="font-size:14px">{html.escape(text)}</b>'
    if sub:
        s += f' <span style="color:#777;font-size:12px">{html.escape(sub)}</span>'
    return s


def _lines(text: str) -> str:
    return html.escape(str(text)).replace("\n", "<br>")


def _strip_tags(s: str) -> str:
    import re

    return re.sub(r"<[^>]+>", " ", s).replace("  ", " ").strip()


def plain_text(widget_html: str) -> str:
    """An HTML widget's value as plain text (for tests and messages)."""
    return " ".join(html.unescape(_strip_tags(widget_html)).split())


def fmt_count(n) -> str:
    if n is None:
        return "—"
    n = int(n)
    if n >= 10 ** 9:
        return f"{n / 1e9:.2f} B"
    if n >= 10 ** 6:
        return f"{n / 1e6:.2f} M"
    if n >= 10 ** 4:
        return f"{n / 1e3:.1f} K"
    return f"{n:,}"


def panel_box(title: str, children: list, sub: str = "") -> W.VBox:
    """A titled, bordered panel."""
    return W.VBox([W.HTML(title_html(title, sub)), *children],
                  layout=W.Layout(border="1px solid #e0e0e0", padding="6px 10px", margin="4px",
                                  border_radius="4px"))


def advanced(children: list, title: str = "Advanced") -> W.Accordion:
    """The options a first run does not need, folded (closed until clicked): the working area stays on one
    screen, and nothing is removed."""
    box = W.Accordion(children=[W.VBox(children)], titles=(title,), selected_index=None,
                      layout=W.Layout(margin="4px 0 0 0"))
    box.add_class("lorakit-advanced")
    return box
