"""The number the Studio shows before Train is the number compare() shows as planned after the run."""
from __future__ import annotations

import lorakit
from lorakit.store import RunStore

WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on


def test_the_studio_plan_before_train_is_compares_planned_peak_after(tiny, store_path):
    from lorakit.widgets import QuantPanel, StudioController

    c = StudioController(store=store_path, **dict(tiny, max_steps=3))
    quant = QuantPanel(c)  # asks for the form's plan on a background job
    assert c.wait(WAIT)
    shown, why = c.plan_result
    assert why == "" and shown.assumes["peak_of"].startswith("step ")  # the run's own batches, not full-length
    quant.refresh()
    assert lorakit.common.display.fmt_bytes(shown.peak) in quant.plan.value  # what the panel prints
    assert shown.peak == lorakit.plan(c.config()).peak
    assert c.train()
    assert c.wait(WAIT)
    with RunStore(store_path) as st:
        [record] = st.records()
    assert record.status == "finished", record.reason
    df = lorakit.compare(store=store_path)
    assert int(df.loc[0, "mem_peak_planned"]) == shown.peak
    assert record.planned_memory.assumes["peak_of"] == shown.assumes["peak_of"]  # the same step named


def test_the_studio_keeps_only_its_newest_plans():
    """The Studio's plan, time and batch caches hold their newest entries only: a session (or a fuzzer) that goes
    through hundreds of form values does not keep every plan and its per-step batches."""
    from lorakit.widgets.background import Recent

    kept = Recent(3)
    for i in range(5):
        kept[i] = [i] * 10_000
    assert list(kept) == [2, 3, 4]
    kept[2] = "again"  # set again: the newest now
    kept[5] = "new"
    assert list(kept) == [4, 2, 5] and kept.get(3) is None and kept[2] == "again"
