"""Studio: every panel in one layout, sharing one controller."""
from __future__ import annotations

from typing import Optional

import ipywidgets as W

from .controller import StudioController
from .panels import AdapterPanel, ComparePanel, DataPanel, MemoryPanel, ModelPanel, QuantPanel, SweepPanel, TrainPanel
from .panels.playground import PlaygroundPanel

HEADER = ('<div style="font-size:12px;color:#555;line-height:1.4"><b style="font-size:14px;color:#222">lorakit '
          'Studio</b> · press <b>Train</b>; every run lands in <b>Compare</b> below, kept across restarts</div>')
# The working area: the form (Train first) in a column beside the live charts; at a laptop's width (1280 px,
# the file browser open) the two charts stack in the right column, at 1920 px they stand side by side.
FORM_WIDTH = "360px"
CHART_BOX = "496px"  # a 470 px chart, its panel's padding and border


class Studio(W.VBox):
    """The composed notebook panel: ``from lorakit.widgets import Studio; Studio()``.

    ``store``: a RunStore, a path, None for the default store (``$LORAKIT_STORE`` or
    ``./lorakit_runs.db``) or False for none. Keyword arguments set initial form values
    (any RunConfig field), e.g. ``Studio(model="tiny-llama", max_steps=10)``.
    ``autoload``: load the model at once (in the background) to list its layers.
    """

    def __init__(self, store=None, autoload: bool = True, controller: Optional[StudioController] = None,
                 **values):
        super().__init__()
        self.controller = controller or StudioController(store=store, **values)
        c = self.controller
        self.model_panel = ModelPanel(c, autoload=False)
        self.adapter_panel = AdapterPanel(c, autoload=False)
        self.quant_panel = QuantPanel(c)
        self.data_panel = DataPanel(c)
        self.train_panel = TrainPanel(c, chart_inside=False)
        self.memory_panel = MemoryPanel(c, compact=True)
        self.compare_panel = ComparePanel(c)
        self.sweep_panel = SweepPanel(c)
        self.playground_panel = PlaygroundPanel(c)
        left = W.VBox([self.train_panel, self.model_panel, self.adapter_panel, self.quant_panel, self.data_panel],
                      layout=W.Layout(width=FORM_WIDTH, flex="0 0 auto"))
        loss = W.Box([self.train_panel.chart.figure], layout=W.Layout(margin="4px"))
        loss.add_class("lorakit-live-loss")
        self.memory_panel.add_class("lorakit-live-memory")
        # as wide as its chart: its table scrolls rather than widening the panel past the loss chart's side
        self.memory_panel.layout.width = CHART_BOX
        self.memory_panel.layout.overflow = "auto"
        right = W.HBox([loss, self.memory_panel], layout=W.Layout(flex="1 1 440px", flex_flow="row wrap",
                                                                   align_items="flex-start",
                                                                   align_content="flex-start"))
        self.children = [W.HTML(HEADER), W.HBox([left, right], layout=W.Layout(flex_flow="row wrap")),
                         self.sweep_panel, self.compare_panel, self.playground_panel]
        self.add_class("lorakit-studio")
        if autoload:
            c.load_model()

    # conveniences for scripts and tests: the same as pressing the buttons
    def train(self) -> bool:
        return self.controller.train()

    def stop(self) -> bool:
        return self.controller.stop()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self.controller.wait(timeout)

    def set(self, **values) -> dict:
        return self.controller.set(**values)

    def sweep(self, **axes) -> bool:
        """Set the Sweep panel's axes (e.g. ``rank=[4, 16], quant=["none", "nf4"]``) and press Run sweep."""
        self.controller.sweep.set_axes(**axes)
        return self.controller.sweep.run()
