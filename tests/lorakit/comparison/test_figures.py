"""The comparison charts (loss, memory, memory against a metric) and the Pareto front, from hand-built runs."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest
from comparison_support import LORA_PEAK, LORA_PEAK_PLANNED, QLORA_PEAK, point, run, sample_records

from lorakit.common.display import MiB
from lorakit.comparison.figures import loss_figure, memory_figure, pareto_figure, pareto_front
from lorakit.config.run_config import RunConfig
from lorakit.memory import MemoryBreakdown

S = "smollm2-135m · "  # a label names the model (issue 31)


@pytest.fixture
def records():
    return sample_records()


def test_loss_figure_traces(records):
    fig = loss_figure(records)
    assert isinstance(fig, go.Figure)
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert len(fig.data) == 4  # three train curves + one eval curve (only lora8 has evals)
    names = [t.name for t in fig.data]
    assert names == [S + "lora-r8", S + "lora-r8 (eval)", S + "qlora-nf4-r16", S + "full"]
    assert list(fig.data[0].y) == [2.6, 2.1, 1.8, 1.6] and list(fig.data[0].x) == [1, 2, 3, 4]
    assert list(fig.data[1].y) == [2.0, 1.7] and fig.data[1].line.dash == "dash"
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color


def test_loss_figure_unique_names_for_same_label():
    cfg = RunConfig(model="smollm2-135m")
    a = run("aaaaaa111", cfg, trainable=1, mem=None)
    b = run("bbbbbb222", cfg, trainable=1, mem=None)
    assert [t.name for t in loss_figure([a, b]).data] == [S + "lora-r8 [aaaaaa]", S + "lora-r8 [bbbbbb]"]


def test_memory_figure_stacks_measured_and_planned(records):
    fig = memory_figure(records)
    assert len(fig.data) == 7 and all(isinstance(t, go.Bar) for t in fig.data[:5])  # + the two step peaks
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data[:5]] == ["base weights", "adapters", "gradients", "optimizer state", "activations"]
    base, *_rest, act = fig.data[:5]
    # bars: lora8 measured, lora8 planned, qlora16 measured, full measured (horizontal bars, two-level y axis)
    assert [list(level) for level in base.y] == [[S + "lora-r8", S + "lora-r8", S + "qlora-nf4-r16", S + "full"],
                                                  ["measured", "planned", "measured", "measured"]]
    assert list(base.x) == pytest.approx([538_060_032 / MiB, 538_060_032 / MiB, 92_000_000 / MiB, 538_060_032 / MiB])
    assert list(act.x) == pytest.approx([61_865_984 / MiB, 58_720_256 / MiB, 70_000_000 / MiB, 80_000_000 / MiB])
    stacked = [sum(t.x[i] for t in fig.data[:5]) for i in range(4)]
    assert stacked == pytest.approx([r / MiB for r in (records[0].memory.total, records[0].planned_memory.total,
                                                        records[1].memory.total, records[2].memory.total)])
    assert "MiB" in fig.layout.xaxis.title.text and all(t.orientation == "h" for t in fig.data[:5])
    only_measured = memory_figure(records, planned=False)
    assert list(only_measured.data[0].y) == [S + "lora-r8", S + "qlora-nf4-r16", S + "full"]


def test_memory_figure_marks_the_measured_and_planned_step_peak_over_their_bars(records):
    fig = memory_figure(records)
    measured, planned = fig.data[5:]
    assert (measured.name, planned.name) == ("step peak (measured)", "step peak (planned)")
    assert all(isinstance(t, go.Scatter) and t.mode == "markers" for t in (measured, planned))
    # over the bar of the same run and kind; full fine-tuning has no peak (stored before peaks existed)
    assert [list(level) for level in measured.y] == [[S + "lora-r8", S + "qlora-nf4-r16"], ["measured", "measured"]]
    assert list(measured.x) == pytest.approx([LORA_PEAK / MiB, QLORA_PEAK / MiB])
    assert [list(level) for level in planned.y] == [[S + "lora-r8"], ["planned"]]
    assert list(planned.x) == pytest.approx([LORA_PEAK_PLANNED / MiB])
    assert list(measured.customdata) == ["at logits-loss", "at backward"]
    assert "cross-entropy gradients 24.0 MiB" in planned.customdata[0]
    only_measured = memory_figure(records, planned=False)
    assert [t.name for t in only_measured.data[5:]] == ["step peak (measured)"]
    assert list(only_measured.data[5].y) == [S + "lora-r8", S + "qlora-nf4-r16"]
    assert len(memory_figure(records[2:]).data) == 5  # no peak anywhere: no marker trace


def test_pareto_front_excludes_dominated_runs():
    pts = [point("A", 100, 0.5), point("B", 200, 0.7), point("C", 300, 0.6),  # C: B uses less and scores more
           point("D", 150, 0.4),  # D: A dominates
           point("E", 400, 0.9), point("F", 400, 0.8),  # F: same memory as E, lower score
           point("G", 50, None)]  # no metric: not plotted
    assert pareto_front(pts) == ["A", "B", "E"]
    # lower is better for a loss: the front flips
    losses = [point("A", 100, None), point("B", 200, None)]
    losses[0].eval_loss, losses[1].eval_loss = 1.2, 1.0
    assert pareto_front(losses, metric="eval_loss") == ["A", "B"]
    losses[1].eval_loss = 1.3  # more memory and a worse loss
    assert pareto_front(losses, metric="eval_loss") == ["A"]
    assert pareto_front(losses, metric="eval_loss", higher_is_better=True) == ["A", "B"]  # neither dominates
    losses[1].eval_loss = 1.0
    assert pareto_front(losses, metric="eval_loss", higher_is_better=True) == ["A"]


def test_pareto_figure_marks_the_front():
    pts = [point("A", 100, 0.5), point("B", 200, 0.7), point("C", 300, 0.6), point("E", 400, 0.9)]
    fig = pareto_figure(pts)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    runs, front = fig.data
    assert list(runs.text) == ["A", "B", "C", "E"] and list(runs.y) == [0.5, 0.7, 0.6, 0.9]
    assert list(front.x) == pytest.approx([100, 200, 400]) and list(front.y) == [0.5, 0.7, 0.9]
    assert "lines" in front.mode
    colors = list(runs.marker.color)
    assert colors[2] != colors[0] == colors[1] == colors[3]  # the dominated run is drawn differently
    with pytest.raises(ValueError, match="unknown metric"):
        pareto_figure(pts, metric="accuracy_typo")


def twelve_runs() -> list:
    """Twelve runs of very different sizes (4 MiB to 1 GiB), each with a plan, a peak and a metric."""
    out = []
    for i in range(12):
        scale = 2 ** (i % 9)
        mem = MemoryBreakdown(4_000_000 * scale, 400_000, 400_000, 800_000, 2_000_000 * scale,
                              peak=7_000_000 * scale, peak_at="backward")
        out.append(run(f"run{i:02d}", RunConfig(model="smollm2-135m", rank=2 ** (i % 6 + 1)), trainable=1000 * i,
                       mem=mem, planned=mem, task=0.05 * i, evals=[(4, 2.0 - 0.1 * i)], created=float(i)))
    return out


def _axes(fig) -> list:
    return [fig.layout[name] for name in fig.layout if name.startswith(("xaxis", "yaxis"))]


def test_figures_of_twelve_runs_keep_axes_at_or_above_zero_and_legends_inside():
    recs = twelve_runs()
    figs = {"loss": loss_figure(recs), "memory": memory_figure(recs), "pareto": pareto_figure(recs)}
    for name, fig in figs.items():
        numeric = [a for a in _axes(fig) if a.type != "multicategory" and a.autorange != "reversed"]
        assert numeric, name
        for axis in numeric:  # never below zero: memory, steps and losses are not negative
            assert axis.rangemode in ("tozero", "nonnegative") or (axis.range and axis.range[0] >= 0), (name, axis)
        legend = fig.layout.legend  # inside the plot area, anchored so that it grows inwards
        assert 0 <= legend.x <= 1 and 0 <= legend.y <= 1, (name, legend)
        assert (legend.xanchor, legend.yanchor) == ("right", "top"), name
    mem = figs["memory"]
    assert all(t.orientation == "h" for t in mem.data[:5])  # run labels as rows: they never overlap
    assert mem.layout.height >= 22 * 24 and mem.layout.xaxis.range[0] == 0  # 24 bars, each its row
    widest = max(max(r.memory.total, r.memory.peak) for r in recs) / MiB
    assert mem.layout.xaxis.range[1] >= 1.5 * widest  # the right third free for the legend
    assert [t.showlegend is not False for t in figs["loss"].data].count(True) == 12  # one entry per run
    assert figs["loss"].layout.height >= 20 * 12
    assert figs["pareto"].data[0].mode == "markers"  # names in the hover, not overlapping labels


def test_empty_figures_say_what_will_appear_instead_of_empty_axes():
    for fig, text in ((loss_figure([]), "loss curves appear here"), (memory_figure([]), "memory bars appear here"),
                      (pareto_figure([]), "no run has both")):
        assert text in fig.layout.annotations[0].text
        assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
