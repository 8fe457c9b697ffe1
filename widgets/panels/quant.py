"""Quantization panel: how the frozen base is stored, and the planner's predicted memory for the choices."""
from __future__ import annotations

import html

import ipywidgets as W

from lorakit.config import DTYPES, OPTIMIZERS
from lorakit.display import CATEGORY_COLORS, CATEGORY_NAMES, fmt_bytes
from lorakit.memory import CATEGORIES

from .base import Panel

QUANT_OPTIONS = [("none", "none"), ("8-bit", "int8"), ("NF4", "nf4"), ("FP4", "fp4")]


class QuantPanel(Panel):
    """none / 8-bit / NF4 / FP4, double quantization, compute dtype, optimizer; predicted memory."""

    title = "Quantization"
    subtitle = "how the base is stored"

    def __init__(self, controller=None, **kwargs):
        super().__init__(controller, **kwargs)
        self.quant = W.ToggleButtons(options=QUANT_OPTIONS, style=W.ToggleButtonsStyle(button_width="70px"))
        self.double_quant = W.Checkbox(indent=False, description="double quantization (4-bit: quantize the "
                                                                 "absmax constants too)")
        self.dtype = W.Dropdown(options=list(DTYPES), layout=W.Layout(width="260px"))
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), layout=W.Layout(width="260px"))
        self.field("quant", self.quant, "base weights", also=("method",))
        self.field("double_quant", self.double_quant)
        self.field("dtype", self.dtype, "compute dtype")
        self.field("optimizer", self.optimizer, "optimizer")
        self.fields["double_quant"].message.layout.margin = "0"
        self.plan = W.HTML("")
        self.controller.on("plan", self._guard(self.refresh))
        self._set_children([self.fields[n].box for n in ("quant", "double_quant", "dtype", "optimizer")]
                           + [self.plan])
        self.refresh()
        self.controller.request_plan()

    def refresh(self) -> None:
        v = self.controller.values
        self.double_quant.disabled = v["quant"] not in ("nf4", "fp4")
        plan, why = self.controller.plan_result
        text = _plan_html(plan, v) if plan is not None else (
            f'<div style="font-size:12px;color:#777">predicted memory: {html.escape(why)}</div>')
        if self.plan.value != text:
            self.plan.value = text

    @property
    def predicted(self):
        """The breakdown shown (None when there is no prediction)."""
        return self.controller.plan_result[0]


def _plan_html(plan, v) -> str:
    total = plan.total or 1
    rows = []
    for c in CATEGORIES:
        b = getattr(plan, c)
        width = max(0.0, 100.0 * b / total)
        rows.append(
            f'<tr><td style="padding:1px 6px">{CATEGORY_NAMES[c]}</td>'
            f'<td style="padding:1px 6px;text-align:right">{fmt_bytes(b)}</td>'
            f'<td style="width:160px"><div style="background:{CATEGORY_COLORS[c]};height:10px;'
            f'width:{width:.1f}%"></div></td></tr>')
    # the Memory panel's "predicted (this batch)" bar is for the batch actually trained, often shorter
    head = (f'predicted memory before training (batch {v["batch_size"]} × seq_len {v["seq_len"]}): '
            f'<b>{fmt_bytes(plan.total)}</b>')
    return (f'<div class="lorakit-plan" style="font-size:12px;margin-top:4px">{head}'
            f'<table style="border-collapse:collapse;margin-top:2px">{"".join(rows)}</table></div>')
