"""Panel: a titled box of form fields bound to a StudioController (its own one when used alone)."""
from __future__ import annotations

import logging
from typing import Optional

import ipywidgets as W
from traitlets import TraitError

from ..controller import StudioController
from ..fields import Field, title_html

log = logging.getLogger("lorakit.widgets")


class Panel(W.VBox):
    """Widgets forward values to the controller; the controller's notifications redraw the panel.

    Every callback is guarded: an exception becomes a message in the status line, never a
    traceback in the notebook's log.
    """

    title = ""
    subtitle = ""

    def __init__(self, controller: Optional[StudioController] = None, **kwargs):
        super().__init__(**kwargs)
        self.owns_controller = controller is None
        self.controller = controller if controller is not None else StudioController()
        self.fields: dict = {}
        self._syncing = False
        self.layout = W.Layout(border="1px solid #e0e0e0", padding="6px 10px", margin="4px",
                               border_radius="4px")
        self.controller.on("problems", self._guard(self._show_problems))
        self.controller.on("values", self._guard(self._sync_values))

    def _set_children(self, children: list) -> None:
        head = [W.HTML(title_html(self.title, self.subtitle))] if self.title else []  # none: the chart's says it
        self.children = [*head, *children]
        self._show_messages(self.controller.problems)  # e.g. Studio(rank=0): said from the start

    # --- fields -------------------------------------------------------------------------------
    def field(self, name: str, widget: W.Widget, label: str = "", also: tuple = ()) -> Field:
        """Bind ``widget`` to the RunConfig field ``name``; its message also shows problems in ``also``."""
        f = Field(name, widget, label)
        f.keys = (name, *also)
        self.fields[name] = f
        if name in self.controller.values:
            self._put(widget, self.to_widget(name, self.controller.values[name]))
        widget.observe(self._guard(lambda change: self._forward(name, change["new"])), "value")
        return f

    def _forward(self, name: str, value) -> None:
        if not self._syncing:
            self.controller.set(**{name: self.to_value(name, value)})

    def to_value(self, name: str, widget_value):
        """Widget value -> RunConfig value (override for composite widgets)."""
        return widget_value

    def to_widget(self, name: str, value):
        """RunConfig value -> widget value (override for composite widgets)."""
        return value

    def _put(self, widget: W.Widget, value) -> None:
        """Show ``value`` in ``widget``; a value it cannot show (set from code: a rank off the slider, a
        word in a number box) leaves it as it was, and the message under the field says what is wrong."""
        self._syncing = True
        try:
            if widget.value != value:
                widget.value = value
        except (TraitError, TypeError, ValueError):  # a selection widget's check can fail on its own message
            pass
        finally:
            self._syncing = False

    def _sync_values(self, changes: dict) -> None:
        for name, value in changes.items():
            f = self.fields.get(name)
            if f is not None:
                self._put(f.widget, self.to_widget(name, value))
        self.refresh()

    def _show_problems(self, problems: dict) -> None:
        self._show_messages(problems)
        self.refresh()

    def _show_messages(self, problems: dict) -> None:
        for f in self.fields.values():
            f.show(next((problems[k] for k in f.keys if k in problems), ""))

    def message(self, name: str) -> str:
        """The message shown next to field ``name`` (plain text)."""
        return self.fields[name].text

    def refresh(self) -> None:
        """Redraw derived read-outs (override)."""

    # --- guarding -------------------------------------------------------------------------------
    def _guard(self, fn):
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - never a traceback in the notebook log
                log.debug("%s failed in %r", type(self).__name__, fn, exc_info=True)  # not shown by default
                self.controller.report("error", f"{type(self).__name__}: {type(exc).__name__}: {exc}")
        return guarded

    def button(self, text: str, on_click, style: str = "", tooltip: str = "", width: str = "auto") -> W.Button:
        b = W.Button(description=text, button_style=style, tooltip=tooltip, layout=W.Layout(width=width))
        b.on_click(self._guard(lambda _b: on_click()))
        return b
