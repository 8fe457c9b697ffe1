"""Quantization panel: how the frozen base is stored, the planned memory and step peak for the
choices, and whether the run fits on a chosen device (this machine or a common GPU) before Train."""
from __future__ import annotations

import html

import ipywidgets as W

from lorakit.common import CATEGORY_COLORS, CATEGORY_NAMES, fmt_bytes
from lorakit.config import DTYPE_CHOICES, OPTIMIZERS, four_bit
from lorakit.memory import CATEGORIES, THIS_MACHINE, plan_text

from ..fields import advanced
from .base import Panel

# the labels are the values the table, the CLI and RunConfig use (one word per idea); the tooltips say what they are
QUANT_OPTIONS = [("none", "none"), ("int8", "int8"), ("NF4", "nf4"), ("FP4", "fp4")]
QUANT_TOOLTIPS = ["full-precision base weights", "8-bit base weights (bitsandbytes LLM.int8)",
                  "4-bit NormalFloat base weights (QLoRA)", "4-bit floating-point base weights"]


class QuantPanel(Panel):
    """none / int8 / NF4 / FP4, double quantization, compute dtype, optimizer; planned memory."""

    title = "Quantization"
    subtitle = "how the base is stored"

    def __init__(self, controller=None, **kwargs):
        super().__init__(controller, **kwargs)
        self.quant = W.ToggleButtons(options=QUANT_OPTIONS, tooltips=QUANT_TOOLTIPS,
                                     style=W.ToggleButtonsStyle(button_width="52px"))
        self.double_quant = W.Checkbox(indent=False, description="double quantization (4-bit: quantize the "
                                                                 "absmax constants too)")
        self.dtype = W.Dropdown(options=list(DTYPE_CHOICES), layout=W.Layout(width="260px"))
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), layout=W.Layout(width="260px"))
        self.field("quant", self.quant, "base weights", also=("method",))
        self.field("double_quant", self.double_quant)
        self.field("dtype", self.dtype, "compute dtype")
        self.field("optimizer", self.optimizer, "optimizer")
        self.fields["double_quant"].message.layout.margin = "0"
        self.plan = W.HTML("")
        # not a RunConfig field: the controller keeps the choice (fit_device) and computes the verdict
        self.fit_device = W.Dropdown(options=[(_device_label(d), d) for d in self.controller.fit_devices()],
                                     value=self.controller.fit_device, layout=W.Layout(width="300px"))
        self.fit_device.observe(self._guard(lambda change: self.controller.set_fit_device(change["new"])), "value")
        self.verdict = W.HTML("")
        self.controller.on("plan", self._guard(self.refresh))
        fit_row = W.HBox([W.HTML('<span style="font-size:12px">will it fit on</span>'), self.fit_device],
                         layout=W.Layout(align_items="center", margin="4px 0 0 0"))
        self.advanced = advanced([self.fields[n].box for n in ("double_quant", "dtype", "optimizer")],
                                 "Advanced: double quantization, compute dtype, optimizer")
        self._set_children([self.fields["quant"].box, self.plan, fit_row, self.verdict, self.advanced])
        self.refresh()
        self.controller.request_plan()

    def refresh(self) -> None:
        c = self.controller
        v = c.values
        self.double_quant.disabled = not four_bit(v["quant"])
        plan, why = c.plan_result
        text = _plan_html(plan, v) if plan is not None else (
            f'<div style="font-size:12px;color:#777">planned memory: {html.escape(why)}</div>')
        if self.plan.value != text:
            self.plan.value = text
        if self.fit_device.value != c.fit_device:
            self.fit_device.value = c.fit_device  # set from code: the observer finds nothing to change
        verdict = _verdict_html(*c.fit_result, c.fit_device, v)
        if self.verdict.value != verdict:
            self.verdict.value = verdict

    @property
    def planned(self):
        """The breakdown shown (None when there is no plan)."""
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
    # the Memory panel's "planned (this batch)" bar is for the batch actually trained, often shorter
    head = (f'planned memory before training (batch {v["batch_size"]} × seq_len {v["seq_len"]}): '
            f'<b>{fmt_bytes(plan.total)}</b>')
    # the run's peak (lorakit.plan): its own batches and loading, what compare() shows as planned afterwards
    peak = f'<div class="lorakit-peak">planned {html.escape(plan_text.peak_text(plan))}</div>'
    overhead = plan_text.overhead_text(plan)
    overhead = f"<div>{html.escape(overhead)}</div>" if overhead else ""
    assumes = (f'<div style="color:#777">assumes: {html.escape(plan_text.assumes_text(plan.assumes))}</div>')
    return (f'<div class="lorakit-plan" style="font-size:12px;margin-top:4px">{head}'
            f'<table style="border-collapse:collapse;margin-top:2px">{"".join(rows)}</table>'
            f'{peak}{overhead}{assumes}</div>')


def _device_label(device: str) -> str:
    return f"{device} (free RAM)" if device == THIS_MACHINE else device


def _verdict_html(fit, why: str, device: str, v: dict) -> str:
    """The fit verdict for ``device``: fits or not, the need against the capacity, the largest sizes."""
    style = "font-size:12px;margin-top:2px"
    if fit is None or fit.device != device:  # none, or still the previous device's
        text = why if fit is None and why else f"checking {device}…"
        return f'<div class="lorakit-fit" style="{style};color:#777">{html.escape(text)}</div>'
    color, mark = ("#2e7d32", "✓") if fit.fits else ("#c62828", "✗")
    text = plan_text.verdict_text(fit, v["batch_size"], v["seq_len"])
    head, _, rest = text.partition(":")
    target = "planned as a CPU run" if fit.target == "cpu" else "planned as a CUDA run, with the device overhead"
    return (f'<div class="lorakit-fit" style="{style}"><b style="color:{color}">{mark} {html.escape(head)}</b>:'
            f'{html.escape(rest)} <span style="color:#777">({target})</span></div>')
