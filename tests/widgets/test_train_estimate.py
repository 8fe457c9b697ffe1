"""How long the run will take, beside Train: "about N min" from the form before a run, the ETA while it trains."""
from __future__ import annotations

import pytest
from conftest import WAIT

import lorakit
from lorakit.memory import calibration
from lorakit.run import StepLogged

CAL = calibration.Calibration("float32", train_gflops=2.0, decode_gflops=1.0, elementwise_gbs=1.0,
                              dequant_gbs=1.0, adamw_ns_per_param=5.0, layer_overhead_s=0.001,
                              attention_gflops=1.0, dropout_ns_per_element=3.0)


@pytest.fixture
def calibrated(monkeypatch):
    """This machine's calibration stubbed: the estimate's figures are known, nothing is measured."""
    import lorakit.memory.timing as timing

    monkeypatch.setattr(timing, "calibrate", lambda *a, **k: CAL)


def _controller(tiny):
    from lorakit.widgets import StudioController

    return StudioController(store=False, **tiny)


def test_the_train_panel_says_about_how_long_before_a_run(tiny, calibrated):
    from lorakit.widgets import TrainPanel

    c = _controller(tiny)
    train = TrainPanel(c)
    c.request_plan(background=False)
    assert c.wait(WAIT)
    plan, _ = c.time_result
    run = lorakit.plan(c.config())  # the form's run, as the engine plans it: its own batches, step by step
    assert not run.upper_bound and plan == lorakit.plan_time(c.config(), run.batches)
    assert train.estimate_text == c.time_text and train.estimate_text.startswith(f"{plan.text} (training ")
    train.max_steps.value = 600  # a longer run, set through the widget: the estimate follows the form
    assert c.wait(WAIT)
    longer, _ = c.time_result
    assert longer.steps == 600 and longer.train_s == pytest.approx(100 * plan.train_s, rel=0.25)  # other batches
    assert train.estimate_text.startswith(longer.text)


def test_the_eta_counts_down_from_the_steps_while_it_trains(tiny, calibrated):
    from lorakit.widgets import TrainPanel

    c = _controller(tiny)
    train = TrainPanel(c)
    c.request_plan(background=False)
    assert c.wait(WAIT)
    etas, texts = [], []

    def on_event(event):
        if isinstance(event, StepLogged):
            etas.append(c.live.eta_s)
            texts.append(c.estimate_text)
    c.on("event", on_event)
    assert c.train()
    assert c.wait(WAIT) and c.live.status == "finished"
    planned_eval = c.time_result[0].eval_s
    assert c.live.eval_s_planned == planned_eval > 0
    assert len(etas) == tiny["max_steps"] and all(t.endswith(" left") for t in texts)
    assert etas[0] > etas[-1] == pytest.approx(planned_eval)  # the last step: only the evaluation is left
    assert train.estimate_text == c.time_text and "left" not in train.estimate_text  # after it: the form's again
