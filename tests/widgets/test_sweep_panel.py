"""The Sweep panel headless: axis values set through its widgets, the trials and their planned memory before
anything runs, invalid combinations refused by name, Run (rows finish, the Compare panel gains them), Stop
(the running trial ends early, queued ones never start), and only one job training at a time."""
from __future__ import annotations

import math
import threading

import lorakit
from lorakit.common.display import fmt_bytes
from lorakit.run.events import RunFinished, RunStarted, StepLogged
from lorakit.store import RunStore

WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on
INVALID = "rank=4, method=full, quant=nf4"


def _pick(panel, **axes) -> None:
    """Set axis widgets as a user would: picked values, or text for the number axes."""
    for name, value in axes.items():
        panel.axes[name].widget.value = value


def test_trials_and_their_planned_memory_show_before_running_and_invalid_ones_are_refused(tiny, store_path):
    from lorakit.widgets import StudioController, SweepPanel

    c = StudioController(store=store_path, **dict(tiny, max_steps=3))
    panel = SweepPanel(c)
    assert panel.table_text == "" and "Pick values" in panel.summary_text
    _pick(panel, rank=(4, 8), method=("lora", "full"), quant=("none", "nf4"))
    assert c.wait(WAIT)
    sweep = c.sweep
    assert len(sweep.trials) == 8 and len(sweep.invalid) == 2
    assert panel.summary_text.startswith("8 trial(s) · 2 invalid (the sweep will not start while any is invalid)")
    # each valid trial's row shows its own plan (full fine-tuning plans more than LoRA), computed before any run
    table = panel.table_text
    for t in sweep.valid:
        planned = lorakit.plan(t.config).as_planned()  # the trial's own run
        assert t.planned == planned and t.fit is not None and t.fit.fits
        assert f"{t.label} planned — — — — {fmt_bytes(planned.total)} {fmt_bytes(planned.peak)} fits" in table
    full = next(t for t in sweep.valid if t.changes == {"rank": 4, "method": "full", "quant": "none"})
    lora = next(t for t in sweep.valid if t.changes == {"rank": 4, "method": "lora", "quant": "none"})
    assert full.planned.total > lora.planned.total
    assert f"{INVALID} invalid method: full fine-tuning needs an unquantized base" in table

    panel.click_run()  # refused by name: nothing runs, nothing is stored
    assert not sweep.running and c.wait(WAIT)
    assert f"2 invalid combination(s): {INVALID} (method: full fine-tuning" in panel.status_text
    assert "tick 'skip invalid combinations'" in panel.status_text
    assert RunStore(store_path).records() == []
    # the skip option turns the refusal into a plan that names what it leaves out
    panel.skip_invalid.value = True
    assert "2 invalid (skipped when the sweep runs)" in panel.summary_text

    # a typed number axis: a bad token is named under the field and the axis is left out
    _pick(panel, method=(), quant=(), learning_rate="1e-3, 3x")
    assert panel.axes["learning_rate"].text == "'3x' is not a number (give numbers separated by commas)"
    assert [t.changes for t in sweep.trials] == [{"rank": 4}, {"rank": 8}]
    _pick(panel, learning_rate="1e-3, 3e-3")
    assert [t.changes for t in sweep.trials] == [{"rank": r, "learning_rate": lr} for r in (4, 8)
                                                 for lr in (1e-3, 3e-3)]
    # the grid follows the form: a form change is every trial's base
    c.set(alpha=32)
    assert {t.config.alpha for t in sweep.trials} == {32}
    assert c.wait(WAIT)


def test_sweep_and_train_refuse_each_other(tiny, monkeypatch):
    """Only one job trains at a time: Sweep while Train runs, and Train while a sweep runs, are refused."""
    from lorakit.widgets import StudioController, SweepPanel, TrainPanel

    c = StudioController(store=False, **dict(tiny, max_steps=3))
    sweep_panel, train_panel = SweepPanel(c), TrainPanel(c)
    release = threading.Event()

    def held(cfg, sinks=(), store=None, stop=None):  # a Train run that goes until released
        sinks[0](RunStarted("run-1", cfg, 10, 100))
        sinks[0](StepLogged("run-1", 1, cfg.max_steps, 2.5, 1e-3, 100.0, 0.1))
        release.wait(WAIT)
        sinks[0](RunFinished("run-1", "finished", None))

    monkeypatch.setattr(lorakit, "train", held)
    _pick(sweep_panel, rank=(4, 8))
    assert c.train() and c.running
    sweep_panel.click_run()
    assert not c.sweep.running
    assert sweep_panel.status_text.startswith("A training run is going (Train panel)")
    release.set()
    assert c.wait(WAIT) and not c.running

    started = threading.Event()
    monkeypatch.setattr(lorakit, "sweep", lambda *a, stop=None, **k: (started.set(), stop.wait(WAIT)))
    assert c.sweep.run() and c.sweep.running and started.wait(WAIT)
    assert c.train() is False
    assert train_panel.status_text.startswith("A sweep is going (Sweep panel)")
    sweep_panel.click_stop()
    assert c.wait(WAIT) and not c.sweep.running
    assert [t.status for t in c.sweep.trials] == ["not started", "not started"]


def test_run_fills_rows_and_curves_and_each_trial_lands_in_compare(studio, store_path):
    s = studio
    s.train_panel.max_steps.value = 3
    sp, cp = s.sweep_panel, s.compare_panel
    compare_sizes = []  # the Compare panel's rows each time a trial finished
    s.controller.on("sweep_event", lambda trial, e: isinstance(e, RunFinished) and compare_sizes.append(
        len(cp.records)))
    deleted = []  # what deleting a trial while it trains did
    s.controller.on("sweep_event", lambda trial, e: isinstance(e, StepLogged) and e.step == 2 and deleted.append(
        s.controller.delete_runs([trial.run_id])))
    _pick(sp, rank=(4, 8))
    assert "before anything runs" in sp.summary_text
    assert [a.text for a in sp.chart.layout.annotations] == ["each trial's loss curve appears here when the sweep runs"]
    sp.click_run()
    sp.click_run()  # a second press while it runs
    assert "A sweep is already going" in sp.status_text
    assert s.wait(WAIT)
    trials = s.controller.sweep.trials
    assert [t.status for t in trials] == ["finished", "finished"], sp.table_text
    assert sp.status_text.startswith("Sweep ended: 2 finished")
    assert "2 ended: measured memory beside the planned" in sp.summary_text  # no longer "before anything runs"
    assert not sp.chart.layout.annotations and sp.chart.layout.yaxis.rangemode == "tozero"
    for t in trials:
        assert [step for step, _ in t.steps] == [1, 2, 3] and all(math.isfinite(v) for _, v in t.steps)
        assert t.memory is not None and t.tokens_per_s
        assert f"{t.label} finished 3/3 {t.loss:.4g}" in sp.table_text
    # one loss curve per trial, named after it
    assert [(tr.name, list(tr.x)) for tr in sp.chart.data] == [("rank=4", [1, 2, 3]), ("rank=8", [1, 2, 3])]
    assert [tuple(tr.y) for tr in sp.chart.data] == [tuple(v for _, v in t.steps) for t in trials]
    # each trial was in the Compare panel when it finished, not only at the end
    assert compare_sizes == [1, 2]
    assert deleted == [0, 0]  # a trial that trains is not deleted from under the sweep
    rows = {r.run_id: r for r in RunStore(store_path).records()}
    assert set(rows) == {t.run_id for t in trials}
    assert sorted(r.config.rank for r in rows.values()) == [4, 8]
    assert all(r.status == "finished" and t.run_id in cp.table_text for r, t in zip(rows.values(), trials,
                                                                                     strict=True))


def test_stop_ends_the_running_trial_and_never_starts_the_queued_one(studio, store_path):
    s = studio
    s.train_panel.max_steps.value = 4
    sp = s.sweep_panel
    # Stop as soon as the first trial logged its first step (from the training thread, as a click would land)
    s.controller.on("sweep_event", lambda trial, e: isinstance(e, StepLogged) and e.step == 1 and sp.click_stop())
    assert s.sweep(rank=[4, 8])
    assert s.wait(WAIT)
    first, second = s.controller.sweep.trials
    assert first.status == "stopped" and first.steps and first.steps[-1][0] < 4, first
    assert second.status == "not started" and not second.run_id and not second.steps
    assert "1 stopped, 1 not started" in sp.status_text
    records = RunStore(store_path).records()
    assert [(r.run_id, r.status) for r in records] == [(first.run_id, "stopped")]
    assert not any(r.status == "running" for r in records)
    assert len(s.compare_panel.records) == 1 and "stopped" in s.compare_panel.table_text
