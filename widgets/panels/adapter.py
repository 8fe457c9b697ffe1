"""Adapter panel: LoRA or full fine-tuning, rank / alpha / dropout, the LoRA variant (DoRA, rsLoRA, init,
LoRA+), target modules, trainable count."""
from __future__ import annotations

import ipywidgets as W

from lorakit.config import positive_int, targets, variant_name

from ..fields import advanced, fmt_count
from ..form import RANKS, selected_targets
from .base import Panel

# init choices as the dropdown shows them (RunConfig.init's values)
INIT_OPTIONS = [("default (B = 0)", "default"), ("Gaussian", "gaussian"), ("PiSSA (from W's SVD)", "pissa"),
                ("OLoRA (from W's QR)", "olora"), ("LoftQ (4-bit base)", "loftq")]


class AdapterPanel(Panel):
    """What trains: method, LoRA shape, target modules (from the loaded model) and what that costs."""

    title = "Adapter"
    subtitle = "what trains"

    def __init__(self, controller=None, autoload: bool = None, **kwargs):
        super().__init__(controller, **kwargs)
        self.method = W.ToggleButtons(options=[("LoRA", "lora"), ("full fine-tuning", "full")],
                                      style=W.ToggleButtonsStyle(button_width="105px"))
        self.rank = W.SelectionSlider(options=_rank_options(self.controller.values["rank"]),
                                      continuous_update=False, layout=W.Layout(width="95%"))
        self.alpha = W.FloatText(layout=W.Layout(width="200px"))
        self.dropout = W.FloatText(step=0.01, layout=W.Layout(width="200px"))
        self.field("method", self.method, "method")
        self.field("rank", self.rank, "rank r")
        self.field("alpha", self.alpha, "alpha")
        self.field("dropout", self.dropout, "dropout")
        self.use_dora = W.Checkbox(indent=False, layout=W.Layout(width="auto"))
        self.use_rslora = W.Checkbox(indent=False, layout=W.Layout(width="auto"))
        self.init = W.Dropdown(options=INIT_OPTIONS, layout=W.Layout(width="300px"))
        self.loftq_iter = W.IntText(layout=W.Layout(width="220px"))
        self.loraplus_lr_ratio = W.FloatText(step=1.0, layout=W.Layout(width="220px"))
        self.field("use_dora", self.use_dora, "DoRA")
        self.field("use_rslora", self.use_rslora, "rsLoRA (α/√r)")
        self.field("init", self.init, "init")
        self.field("loftq_iter", self.loftq_iter, "LoftQ iterations")
        self.field("loraplus_lr_ratio", self.loraplus_lr_ratio, "LoRA+ ratio")
        self.checks: dict = {}
        self.checks_box = W.VBox([], layout=W.Layout(margin="0 0 0 118px", width="calc(100% - 118px)"))
        self.targets_field = self._targets_field()
        self.presets = W.HBox([self.button(p, (lambda p=p: self.apply_preset(p)), width="auto",
                                           tooltip=targets.describe(p)) for p in targets.PRESETS],
                              layout=W.Layout(margin="0 0 0 8px", flex_flow="row wrap"))
        self.trainable = W.HTML("")
        self.controller.on("model", self._guard(self._rebuild_checks))
        self._rebuild_checks()
        self.advanced = advanced([
            W.HBox([self.fields["use_dora"].box, self.fields["use_rslora"].box], layout=W.Layout(flex_flow="row wrap")),
            self.fields["init"].box, self.fields["loftq_iter"].box, self.fields["loraplus_lr_ratio"].box,
            W.HTML('<div style="margin-left:4px;font-size:13px">target modules, one by one</div>'),
            self.checks_box,
        ], "Advanced: DoRA, rsLoRA, init, LoftQ, LoRA+, layers one by one")
        self._set_children([
            self.fields["method"].box, self.fields["rank"].box,
            W.HBox([self.fields["alpha"].box, self.fields["dropout"].box], layout=W.Layout(flex_flow="row wrap")),
            W.HTML('<div style="margin-left:4px;font-size:13px">target modules</div>'),
            self.presets, self.targets_field.box, self.trainable, self.advanced,
        ])
        self.refresh()
        if (autoload if autoload is not None else self.owns_controller) and self.controller.model_info is None:
            self.controller.load_model()

    def _targets_field(self):
        from ..fields import Field

        f = Field("target_modules", W.HTML(""))
        f.keys = ("target_modules",)
        self.fields["target_modules"] = f
        return f

    def to_widget(self, name, value):
        if name == "target_modules":
            return ""  # its Field is only the message line: the checkboxes show the value (refresh)
        if name == "rank" and not positive_int(value):
            return self.rank.value  # the slider cannot show it; the message under it says why
        return value

    # --- target modules ---------------------------------------------------------------------------
    def _names(self) -> list:
        info = self.controller.model_info
        if info is not None and info.name == self.controller.values["model"]:
            return info.group_names
        # a built-in model's names are known before it loads (its family's); any other model's once loaded
        return list(targets.known_layers(self.controller.values["model"]) or targets.LLAMA_LINEARS)

    def _selected(self) -> set:
        return set(selected_targets(self.controller.values["target_modules"], self._names()))

    def _sync_values(self, changes: dict) -> None:
        super()._sync_values(changes)
        if "model" in changes:  # another family's layer names, before the model loads
            self._rebuild_checks()

    def _rebuild_checks(self) -> None:
        names = self._names()
        for button, preset in zip(self.presets.children, targets.PRESETS, strict=True):
            button.tooltip = targets.describe(preset, names)  # in this model's names: c_attn, query, q ...
        if list(self.checks) != names:
            self.checks = {}
            for n in names:
                cb = W.Checkbox(value=False, indent=False, layout=W.Layout(width="98%"),
                                style={"description_width": "initial"})
                cb.observe(self._guard(lambda ch, n=n: self._check_changed(n, ch["new"])), "value")
                self.checks[n] = cb
            self.checks_box.children = list(self.checks.values())
        self.refresh()

    def _check_changed(self, name: str, on: bool) -> None:
        if self._syncing:
            return
        chosen = [n for n, cb in self.checks.items() if cb.value]
        if len(chosen) == len(self.checks) and chosen:
            value = targets.ALL_LINEAR
        else:
            value = tuple(chosen)
        self.controller.set(target_modules=value)

    def apply_preset(self, preset: str) -> None:
        """Select the preset's modules (``qv``, ``attention``, ``mlp``, ``all-linear``)."""
        if preset == targets.ALL_LINEAR:  # peft's shorthand stays one: it follows the model's layers
            self.controller.set(target_modules=preset)
            return
        chosen = targets.expand(preset, self._names())
        # the names in the model's order (the order of the checkboxes)
        self.controller.set(target_modules=tuple(n for n in self._names() if n in chosen) or tuple(chosen))

    def select_targets(self, names) -> None:
        """Tick exactly these modules (as a user would)."""
        for n, cb in self.checks.items():
            cb.value = n in names

    # --- read-outs ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        c = self.controller
        v = c.values
        if positive_int(v["rank"]) and v["rank"] not in self.rank.options:  # set from code: one extra stop
            self._syncing = True
            try:
                self.rank.options = _rank_options(v["rank"])
                self.rank.value = v["rank"]
            finally:
                self._syncing = False
        lora = v["method"] == "lora"
        for w in (self.rank, self.alpha, self.dropout, *self.checks.values(), *self.presets.children):
            w.disabled = not lora
        # the variant controls stay enabled: with method='full' they are refused (the message says so), so
        # the user must be able to turn them off
        self.loftq_iter.disabled = v["init"] != "loftq" and v["loftq_iter"] == 1
        dora = v["use_dora"] is True
        selected = self._selected()
        info = c.model_info if c.model_info is not None and c.model_info.name == v["model"] else None
        groups = {g.name: g for g in info.groups} if info else {}
        rank = v["rank"] if positive_int(v["rank"]) else 0
        self._syncing = True
        try:
            for n, cb in self.checks.items():
                cb.value = n in selected
                g = groups.get(n)
                if g is None:
                    cb.description = n
                else:
                    cb.description = (f"{n} · {g.count}× {g.d_in}→{g.d_out} · {fmt_count(g.params)}"
                                      + (f" · LoRA +{fmt_count(g.lora_params(rank, dora))}" if lora else ""))
                    cb.tooltip = (f"{g.count} layers of {g.d_in}→{g.d_out}: {g.params:,} weights; LoRA at "
                                  f"rank {rank} adds {g.lora_params(rank, dora):,} trainable parameters"
                                  + (f" ({g.count * g.d_out:,} of them DoRA magnitudes)" if dora else ""))
        finally:
            self._syncing = False
        t = c.trainable()
        if t is None:
            text = "<i>load the model to count trainable parameters</i>"
        else:
            n, total, pct = t
            variant = variant_name(v)
            what = ("parameters (every weight)" if not lora else "LoRA parameters"
                    + ("" if variant == "lora" else f" ({variant})"))
            text = (f"trainable: <b>{n:,}</b> {what} of {total:,} = <b>{pct:.3g} %</b>")
        text = f'<div class="lorakit-trainable" style="font-size:13px;margin:4px 0 0 4px">{text}</div>'
        if self.trainable.value != text:
            self.trainable.value = text

    @property
    def trainable_text(self) -> str:
        from ..fields import plain_text

        return plain_text(self.trainable.value)


def _rank_options(value) -> list:
    """The powers of two 1 … 256, plus ``value`` when it is another valid rank."""
    return sorted(set(RANKS) | ({value} if positive_int(value) else set()))

