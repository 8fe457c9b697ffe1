"""The Studio's working area on one laptop screen: Train first beside the live charts, the options a first run does
not need folded behind Advanced disclosures, and live charts that keep their axes at or above zero and their legends
inside (the browser test measures the boxes at 1280 x 800)."""
from __future__ import annotations

import ipywidgets as W

from lorakit.memory import MemoryBreakdown
from lorakit.widgets import Studio
from lorakit.widgets.charts import MemoryChart


def _descendants(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)


def test_train_comes_first_beside_the_live_charts_and_advanced_options_are_folded(store_path):
    s = Studio(store=store_path, autoload=False, model="tiny-llama")
    form, charts = s.children[1].children
    assert form.children[0] is s.train_panel and form.children[1] is s.model_panel
    assert s.train_panel.chart.figure in list(_descendants(charts))
    assert s.memory_panel in charts.children and s.train_panel.chart.figure not in list(_descendants(form))
    buttons = [w for w in _descendants(s.train_panel) if isinstance(w, W.Button)]
    assert buttons[:2] == [s.train_panel.train_button, s.train_panel.stop_button]
    folded = {}
    for panel in (s.adapter_panel, s.quant_panel, s.train_panel, s.sweep_panel):
        for acc in (w for w in _descendants(panel) if isinstance(w, W.Accordion)):
            assert acc.selected_index is None  # closed until clicked
            folded.update({id(w): w for w in _descendants(acc)})
    hidden = {id(w) for w in folded.values()}
    for widget in (s.adapter_panel.use_dora, s.adapter_panel.init, s.adapter_panel.loftq_iter,
                   s.adapter_panel.loraplus_lr_ratio, s.quant_panel.optimizer, s.quant_panel.dtype,
                   s.sweep_panel.executor):
        assert id(widget) in hidden, widget
    for widget in (s.adapter_panel.rank, s.adapter_panel.method, s.quant_panel.quant, s.model_panel.registry,
                   s.train_panel.train_button):
        assert id(widget) not in hidden, widget
    assert s.wait(600)


def test_the_live_memory_chart_starts_at_zero_with_its_legend_inside():
    chart = MemoryChart()
    mem = MemoryBreakdown(400 * 2**20, 2**20, 2**20, 2 * 2**20, 60 * 2**20, peak=500 * 2**20)
    chart.show([("lora-r8", "planned", mem), ("lora-r8", "measured", mem)])
    layout = chart.figure.layout
    assert layout.yaxis.rangemode == "tozero" and layout.yaxis.range[0] == 0
    assert layout.yaxis.range[1] >= 1.4 * 500  # headroom above the highest peak: the legend's place
    assert 0 <= layout.legend.x <= 1 and 0 <= layout.legend.y <= 1 and layout.legend.yanchor == "top"


def test_the_live_charts_send_their_whole_layout_again_once_the_first_view_reports():
    """plotly can draw a FigureWidget's first view before its layout reached the browser: one full relayout mends it."""
    from lorakit.widgets.charts import LossChart

    for chart in (LossChart(), MemoryChart()):
        fig = chart.figure
        before = fig._last_layout_edit_id
        fig._js2py_layoutDelta = {"layout_delta": {}, "layout_edit_id": before}  # the first view reports in
        assert fig._last_layout_edit_id == before + 1  # one relayout sent, with every property
        fig._js2py_layoutDelta = {"layout_delta": {}, "layout_edit_id": before + 1}
        assert fig._last_layout_edit_id == before + 1  # once only
