"""Model panel: a registry dropdown or a hub id / local path; what the loaded model is."""
from __future__ import annotations

import html

import ipywidgets as W

import lorakit
from lorakit.config import families

from ..fields import fmt_count
from .base import Panel


class ModelPanel(Panel):
    """Pick the base model; after loading: parameters, layers, architecture and load time."""

    title = "Model"
    subtitle = "the frozen base"

    def __init__(self, controller=None, autoload: bool = None, **kwargs):
        super().__init__(controller, **kwargs)
        # grouped by family (decoders, encoders, encoder-decoders), each entry saying what it trains for
        trainable = sorted((m for m in lorakit.list_models() if m.trainable),
                           key=lambda m: families.FAMILIES.index(families.family_of(m.architecture)))
        self.registry_names = [m.name for m in trainable]
        self.registry = W.Dropdown(options=[(_entry(m), m.name) for m in trainable],
                                   description="registry", layout=W.Layout(width="95%"))
        self.registry.style.description_width = "110px"
        self.registry.add_class("lorakit-model-registry")
        self.path = W.Text(placeholder="or a hub id / local directory (Enter to use it)", description="other",
                           continuous_update=False, layout=W.Layout(width="78%"))
        self.path.style.description_width = "110px"
        self.load_button = self.button("Load", lambda: self.controller.load_model(), tooltip=(
            "Load the model to list its linear layers (the weights are not kept; Train loads its own copy)"))
        self.info = W.HTML("")
        self.field("model", self.registry)  # the message line under the registry shows model problems
        self.path.observe(self._guard(self._path_changed), "value")
        self.controller.on("model", self._guard(self.refresh))
        self._put_model(self.controller.values["model"])
        self._set_children([self.fields["model"].box, W.HBox([self.path, self.load_button]), self.info])
        self.refresh()
        if autoload if autoload is not None else self.owns_controller:
            self.controller.load_model()

    # the model field is two widgets: the dropdown, or the free text when it is filled
    def _forward(self, name, value) -> None:
        if self._syncing:
            return
        if name == "model" and not self.path.value.strip():
            self.controller.set(model=value)
            self.controller.load_model()

    def _path_changed(self, change) -> None:
        if self._syncing:
            return
        text = change["new"].strip()
        self.controller.set(model=text or self.registry.value)
        if not text:
            self.controller.load_model()

    def _sync_values(self, changes: dict) -> None:
        if "model" in changes:
            self._put_model(changes["model"])
        self.refresh()

    def _put_model(self, name: str) -> None:
        if not isinstance(name, str):
            return  # set from code, and no model name: the message under the field says so
        self._syncing = True
        try:
            if name in self.registry_names:
                self.registry.value, self.path.value = name, ""
            else:
                self.path.value = name
        finally:
            self._syncing = False

    def refresh(self) -> None:
        c = self.controller
        info, name = c.model_info, c.values["model"]
        if c.model_loading:
            text = f"<i>loading {html.escape(c.model_loading)}…</i>"
        elif info is not None and info.name == name:
            text = (f"<b>{fmt_count(info.num_params)}</b> parameters · <b>{info.num_layers}</b> layers · "
                    f"{html.escape(info.architecture)} · loaded in {info.load_s:.1f} s")
        elif c.model_error:
            text = ""
        else:
            text = "<i>not loaded yet: press Load to see its layers</i>"
        text = f'<div class="lorakit-model-info" style="font-size:12px;color:#333">{text}</div>'
        if self.info.value != text:
            self.info.value = text


def _entry(m) -> str:
    """A registry dropdown entry: the name, then family and task (the list is sorted by family: it reads as groups)."""
    family = families.family_of(m.architecture)
    return f"{m.name} · {family} · {families.DEFAULT_TASK[family]} │ {m.description}"  # the name fits a narrow form
