"""lorakit.plan(cfg): the run train(cfg) trains, from its own data, every step's batch planned."""
from __future__ import annotations

import json

import pytest

import lorakit
from lorakit.memory.planner import _batch_shape, config_settings, planning
from lorakit.training import probe

# answers ~5x apart in length, so the batches' shapes differ from step to step
ROWS = [{"prompt": f"Repeat {i}.", "completion": " ".join(["word"] * (2 + 5 * (i % 4)))} for i in range(11)]


def _trained_shapes(monkeypatch, cfg) -> tuple:
    """(the record, every training step's batch shape as the Trainer fed it)."""
    seen = []
    loss = probe.ProbingTrainer._loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            seen.append(_batch_shape(inputs, cfg.labelled_head))
        return loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(probe.ProbingTrainer, "_loss", recording)
    record = lorakit.train(cfg, store=False, device="cpu")
    assert record.status == "finished", record.reason
    return record, seen


def test_planned_batches_are_the_trained_ones(monkeypatch, tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    # 9 training examples in batches of 4: the third step's batch is short, the fourth starts the next epoch
    cfg = lorakit.RunConfig(model="tiny-llama", dataset=str(path), train_examples=9, eval_examples=2,
                            batch_size=4, max_steps=5, seq_len=64, checkpoint_every=0, seed=3)
    plan = lorakit.plan(cfg, device="cpu")
    assert plan.peak_step > 2  # this seed's longest batch comes later: a third step is profiled
    record, trained = _trained_shapes(monkeypatch, cfg)
    assert not plan.upper_bound
    assert plan.batches == trained
    assert [b["batch_size"] for b in trained] == [4, 4, 1, 4, 4]
    assert len({b["seq_len"] for b in trained}) > 1  # the order matters: the shapes differ
    # the plan covers every step; the run measures its first two: the plan is never below them
    assert plan.peak >= record.memory.peak
    assert plan.step_peak >= record.planned_memory.peak
    assert plan.text.startswith(f"step {plan.peak_step}'s batch, {plan.peak_batch['batch_size']} x ")
    # the measured side checks the step the plan names: steps 1, 2 and that one are profiled
    steps = record.memory.assumes["steps"]
    assert steps[:2] == [1, 2] and plan.peak_step in steps and len(steps) == len(set(steps)) <= 3
    row = lorakit.compare([record]).iloc[0]
    assert row["mem_peak_step"] == record.memory.assumes["peak_step"] in steps
    assert row["mem_peak_planned"] == plan.peak and row["mem_peak_planned_step"] == plan.peak_step
    assert row["mem_load_peak_planned"] == plan.load_peak


def test_a_t5_plan_takes_the_longer_of_input_and_target_so_it_is_never_below_the_run(monkeypatch, tmp_path):
    """The T5 plan prices encoder and decoder at one length: the longer of a batch's inputs and targets. Targets
    ~10x the inputs, planned at the inputs' length, came out at 0.35x the measured peak (an upper bound now)."""
    rows = [{"prompt": f"Say {i}.", "completion": " ".join(["word"] * (12 + 6 * (i % 4)))} for i in range(11)]
    path = tmp_path / "long_targets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = lorakit.RunConfig(model="tiny-t5", dataset=str(path), train_examples=9, eval_examples=2, batch_size=4,
                            max_steps=3, seq_len=64, checkpoint_every=0)
    plan = lorakit.plan(cfg, device="cpu")
    record, trained = _trained_shapes(monkeypatch, cfg)
    assert plan.batches == trained
    assert min(b["seq_len"] for b in trained) > 12  # the targets' length, not the ~5-token inputs'
    assert plan.peak >= record.memory.peak


def test_the_peak_step_is_the_largest_batch():
    cfg = lorakit.RunConfig(model="tiny-llama", dataset="extract-json", train_examples=40, max_steps=12)
    plan = lorakit.plan(cfg, device="cpu")
    assert len(plan.batches) == 12
    # every step planned alone: the run's peak is the largest of them, at the step named
    p = planning(config_settings(cfg), device="cpu")
    single = [p.plan(**b, first_step=i == 0).peak for i, b in enumerate(plan.batches)]
    assert plan.step_peak == max(single) == single[plan.peak_step - 1]
    assert plan.peak == max(plan.step_peak, plan.load_peak)


def test_a_long_run_lists_its_first_steps_and_bounds_the_rest(monkeypatch):
    """A run of a billion steps is planned as fast as one of EXACT_STEPS: those steps' batches exactly, every
    later one bounded by the longest examples together (a Studio field set to a huge max_steps once enumerated every
    step, and the process grew until the machine killed it)."""
    from lorakit.config.run_config import AT_MOST
    from lorakit.memory import run_plan

    cfg = lorakit.RunConfig(model="tiny-llama", dataset="extract-json", train_examples=40, batch_size=4,
                            max_steps=run_plan.EXACT_STEPS)
    exact = lorakit.plan(cfg, device="cpu")
    long = lorakit.plan(cfg.replace(max_steps=AT_MOST), device="cpu")
    assert long.batches == exact.batches and long.steps == AT_MOST == long.assumes["steps"]
    data = run_plan.run_data(cfg)
    assert long.later == dict(batch_size=4, seq_len=max(data.lengths), padded=True,
                              labelled=sum(sorted(data.labelled)[-4:]))  # the labelled-only head's positions
    assert long.step_peak >= exact.step_peak  # never below the steps drawn exactly
    # the time of a long run: the drawn steps' mean, over every step
    t_exact = lorakit.plan_time(cfg, exact.batches)
    t_long = lorakit.plan_time(cfg, exact.batches, steps=10 * run_plan.EXACT_STEPS)
    assert t_long.steps == 10 * t_exact.steps and t_long.train_s == pytest.approx(10 * t_exact.train_s)
    # a bound no drawn batch reaches is planned, and named as the peak's batch
    monkeypatch.setattr(run_plan, "EXACT_STEPS", 1)
    short = lorakit.plan(cfg.replace(max_steps=2), device="cpu")
    assert len(short.batches) == 1 and short.steps == 2 and short.peak_step is None
    first = lorakit.plan(cfg.replace(max_steps=1), device="cpu")
    assert short.peak_batch == short.later and short.step_peak > first.step_peak
    assert short.where.startswith("a batch after step 1 (its longest examples together), 4 x ")


@pytest.mark.parametrize("how", ["config-only", "no data", "unreadable"])
def test_unknown_data_plans_full_length_batches_as_an_upper_bound(how, tmp_path):
    kw = dict(model="tiny-llama", batch_size=2, seq_len=48, max_steps=3)
    if how == "config-only":
        kw["model"] = "llama-7b"
    if how == "unreadable":
        bad = tmp_path / "bad.jsonl"
        bad.write_text("{not json\n")
        kw["dataset"] = str(bad)
    plan = lorakit.plan(lorakit.RunConfig(**kw), device="cpu", data=how != "no data")
    assert plan.upper_bound
    assert plan.batches == [dict(batch_size=2, seq_len=48, padded=False)] * 3
    assert "upper bound" in plan.text and plan.why in plan.text
    known = lorakit.plan(lorakit.RunConfig(model="tiny-llama", batch_size=2, seq_len=48, max_steps=3), device="cpu")
    if kw["model"] == "tiny-llama":  # the run's own (shorter, labelled-only) batches need less
        assert known.step_peak < plan.step_peak


def test_fits_of_a_runconfig_is_the_run_plans_need():
    cfg = lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", batch_size=2, max_steps=4, train_examples=12)
    gpu, here = lorakit.fits(cfg, devices=[1, "this machine"])
    assert gpu.need == lorakit.plan(cfg, device="cuda").device_total  # the peak plus the CUDA overhead
    assert here.need == lorakit.plan(cfg, device="cpu").peak
    with pytest.raises(TypeError, match="rank"):
        lorakit.fits(cfg, rank=4)  # the settings are the RunConfig's
