"""The Memory panel's timeline chart: a step by phase, planned next to measured, what coexists stacked."""
from __future__ import annotations

from lorakit.common import MiB
from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.timeline import moment
from lorakit.run.events import MemoryMeasured, RunStarted


def _timed(timeline: list, peak_at: str) -> MemoryBreakdown:
    m = MemoryBreakdown(base_weights=10 * MiB, adapters=MiB, gradients=MiB, optimizer=2 * MiB, activations=5 * MiB)
    m.timeline = timeline
    m.peak_at, m.peak = peak_at, max(sum(parts.values()) for _, parts in timeline)
    return m


PLANNED = [("forward", moment(base_weights=10 * MiB, activations=5 * MiB)),
           ("logits-loss", moment(base_weights=10 * MiB, activations=5 * MiB, transient=3 * MiB)),
           ("backward", moment(base_weights=10 * MiB, activations=5 * MiB)),
           ("end of backward", moment(base_weights=10 * MiB, gradients=MiB, transient=2 * MiB)),
           ("optimizer step", moment(base_weights=10 * MiB, gradients=MiB, optimizer=2 * MiB))]
MEASURED = [("forward", moment(base_weights=10 * MiB, activations=6 * MiB)),
            ("logits-loss", moment(base_weights=10 * MiB, activations=5 * MiB, transient=4 * MiB)),
            ("optimizer step", moment(base_weights=10 * MiB, gradients=MiB, optimizer=2 * MiB))]


def test_the_memory_panel_stacks_what_coexists_phase_by_phase(tiny):
    from lorakit.widgets import MemoryPanel, StudioController

    c = StudioController(store=False, **tiny)
    memory = MemoryPanel(c)
    chart = memory.timeline
    assert chart.values() == {} and "no timeline yet" in chart.figure.layout.annotations[0].text
    cfg = RunConfig(model="tiny-llama", batch_size=2, seq_len=256, name="<b>mine</b>")
    c.feed(RunStarted("run1", cfg, 10, 100))
    c.feed(MemoryMeasured("run1", 2, _timed(MEASURED, "logits-loss"), _timed(PLANNED, "logits-loss")))
    # in step order, planned next to measured; a phase only one side has stands alone
    assert list(chart.values()) == [("forward", "planned"), ("forward", "measured"), ("logits-loss", "planned"),
                                    ("logits-loss", "measured"), ("backward", "planned"),
                                    ("end of backward", "planned"), ("optimizer step", "planned"),
                                    ("optimizer step", "measured")]
    fig = chart.figure
    transient = next(t for t in fig.data if t.name == "on top (transient)")
    assert list(transient.y)[:4] == [0, 0, 3.0, 4.0]
    heights = [sum(t.y[i] for t in fig.data) for i in range(len(chart.values()))]
    assert max(heights) == 19.0 and heights.index(19.0) == 3  # the tallest: the measured peak, at the loss
    assert fig.layout.barmode == "stack" and not fig.layout.annotations
    assert "&lt;b&gt;mine&lt;/b&gt;" in fig.layout.title.text and "<b>mine" not in fig.layout.title.text
    assert "never all exist at once" in memory.meaning.value
