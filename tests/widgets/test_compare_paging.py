"""The Compare panel with a store of many runs: one page of the table at a time, every run in the selection
list, histories read only for the page and the selected runs; and user text in it shown as text."""
from __future__ import annotations

import pytest
from store_support import make_record  # tests/support

from lorakit.config.run_config import RunConfig  # noqa: E402
from lorakit.store import RunStore  # noqa: E402

N = 120


@pytest.fixture
def many(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for i in range(N):
            name = "<img src=x onerror=alert(1)>" if i == N - 1 else f"run{i:03d}"
            s.save(make_record(run_id=f"r{i:03d}", created_at=1e9 + i, steps=5,
                               config=RunConfig(model="smollm2-135m", rank=8, max_steps=5, name=name)))
    return path


def test_the_table_shows_one_page_newest_first_and_pages_move(many):
    from lorakit.widgets import ComparePanel, StudioController

    cp = ComparePanel(StudioController(store=many))
    assert len(cp.frame) == 50 and list(cp.frame["run_id"])[-1] == f"r{N - 1:03d}"  # newest last on the page
    assert list(cp.frame["run_id"])[0] == f"r{N - 50:03d}"
    assert "runs 1–50 of 120" in cp.page_label.value
    assert len(cp.select.options) == N  # every run can be selected
    assert len(cp.loss_chart.data) == 2 * 50  # nothing selected: the page's runs (loss and eval traces)
    cp.next_page()
    cp.next_page()
    assert list(cp.frame["run_id"]) == [f"r{i:03d}" for i in range(20)] and "runs 101–120" in cp.page_label.value
    cp.next_page()  # no page beyond the last
    assert len(cp.frame) == 20
    cp.previous_page()
    assert list(cp.frame["run_id"])[0] == "r020"


def test_selecting_runs_off_the_page_draws_only_them(many):
    from lorakit.widgets import ComparePanel, StudioController

    cp = ComparePanel(StudioController(store=many))
    cp.select.value = ("r000", "r005")  # both on the last page, not on the first
    assert {t.legendgroup for t in cp.loss_chart.data} == {"r000", "r005"}
    assert [r.run_id for r in cp.selected_records()] == ["r000", "r005"]
    assert len(cp.selected_records()[0].history) == 5


def test_a_hostile_label_is_text_in_the_panel(many):
    from lorakit.widgets import ComparePanel, StudioController

    cp = ComparePanel(StudioController(store=many))
    assert "<img src=x" not in cp.table.value and "&lt;img src=x onerror=alert(1)&gt;" in cp.table.value
    assert all("<img" not in (t.name or "") for t in cp.loss_chart.data)


def test_the_table_read_gives_the_same_frame_as_full_records(many):
    """compare() of a whole store reads no histories: the frame is the one full records give."""
    import lorakit

    with RunStore(many) as s:
        quick, full = lorakit.compare(store=s), lorakit.compare(s.records())
    assert quick.equals(full)


def test_the_table_shows_the_short_columns_and_folds_every_column(many):
    import re

    from lorakit.widgets import ComparePanel, StudioController

    cp = ComparePanel(StudioController(store=many))
    short, _, folded = cp.table.value.partition("<details")
    assert [h.strip() for h in re.findall(r"<th[^>]*>([^<]*)</th>", short)] == [
        "run", "model", "method", "quant", "rank", "memory", "peak", "eval loss", "task metric", "time", "status",
        "run id"]  # what a reader compares first, in words, fits the panel's width
    assert f"Every column ({len(cp.frame.columns)})" in folded and ">target_modules" in folded  # one click away


def test_charts_drawn_after_an_empty_store_show_their_axes(tmp_path):
    """An empty figure hides its axes behind a note; the runs' figure that replaces it must bring them back
    (a merged layout kept them hidden: bars without a scale or run names)."""
    from lorakit.widgets import ComparePanel, StudioController

    c = StudioController(store=tmp_path / "runs.db")
    cp = ComparePanel(c)
    assert cp.memory_chart.layout.xaxis.visible is False and cp.memory_chart.layout.annotations  # the empty note
    c.store.save(make_record(run_id="r1"))
    cp.refresh()
    for chart in (cp.loss_chart, cp.memory_chart):
        layout = chart.layout
        assert layout.xaxis.visible is not False and layout.yaxis.visible is not False, chart.layout.title.text
        assert not layout.annotations
