"""LiveCallback: a plain transformers Trainer (not lorakit.train) feeds the live loss and memory panels."""
from __future__ import annotations

import pytest

from lorakit.memory.breakdown import CATEGORIES

WAIT = 600


def _tiny_trainer(tmp_path, callback, max_steps=4):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    import lorakit
    from lorakit.adapters.lora import attach_lora

    loaded = lorakit.load_model("tiny-llama", device="cpu")
    model = attach_lora(loaded.model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(16):
        ids = torch.randint(3, 250, (24,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * 24, "labels": ids})
    ds = Dataset.from_list(rows)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=2,
        per_device_eval_batch_size=4, learning_rate=1e-3, logging_steps=1, eval_strategy="steps", eval_steps=2,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ds.select(range(4)),
                   callbacks=[callback])


def test_live_callback_dashboard_from_a_plain_trainer(tmp_path):
    from lorakit.widgets import LiveCallback, LiveDashboard

    cb = LiveCallback(label="my trainer", config=None)
    assert isinstance(cb.dashboard, LiveDashboard)
    _tiny_trainer(tmp_path, cb).train()
    d = cb.dashboard
    assert not cb.errors, cb.errors
    assert [x for x, _ in d.chart.train_points] == [1, 2, 3, 4]
    assert all(y > 0 for _, y in d.chart.train_points)
    assert [x for x, _ in d.chart.eval_points] == [2, 4]
    bars = d.memory.values()
    measured = bars[("my trainer", "measured")]
    assert set(measured) == set(CATEGORIES)
    assert measured["adapters"] == 2 * 4 * ((64 + 64) + (64 + 32)) * 4  # r=4 on q, v: fp32 bytes
    assert measured["gradients"] == measured["adapters"] and measured["optimizer"] > 0
    assert measured["activations"] > 0 and measured["base_weights"] > 0
    assert "finished" in d.status_text and d.progress.value == 4
    assert d.live.tokens_per_s and d.live.tokens_per_s > 0


def test_live_callback_feeds_an_open_studio(tmp_path):
    from lorakit.config.run_config import RunConfig
    from lorakit.widgets import LiveCallback, Studio

    s = Studio(store=False, autoload=False, model="tiny-llama")
    cfg = RunConfig(model="tiny-llama", rank=4, alpha=8, target_modules="qv", batch_size=2, seq_len=24)
    cb = LiveCallback(s, config=cfg)
    _tiny_trainer(tmp_path, cb, max_steps=3).train()
    assert not cb.errors, cb.errors
    assert [x for x, _ in s.train_panel.chart.train_points] == [1, 2, 3]
    assert "finished" in s.train_panel.status_text
    bars = s.memory_panel.chart.values()
    this = f"{cfg.label} (this run)"
    assert bars[(this, "measured")] is not None and bars[(this, "planned")] is not None  # planner next to it
    assert bars[(this, "planned")]["adapters"] == bars[(this, "measured")]["adapters"]


def test_live_callback_measures_activations_in_the_real_step_without_a_replay(tmp_path, monkeypatch):
    import lorakit.memory.breakdown
    from lorakit.memory.breakdown import saved_activation_tensors
    from lorakit.widgets import LiveCallback

    cb = LiveCallback(label="probe")
    trainer = _tiny_trainer(tmp_path, cb, max_steps=2)
    training_batches = []  # the kwargs of every training-mode forward

    def spy(module, args, kwargs):
        if module.training:
            training_batches.append({k: v for k, v in kwargs.items() if k in ("input_ids", "attention_mask", "labels")})

    trainer.model.register_forward_pre_hook(spy, with_kwargs=True)
    replays = []
    real_replay = lorakit.memory.breakdown.measure_activations
    monkeypatch.setattr(lorakit.memory.breakdown, "measure_activations",
                        lambda *a, **k: replays.append(1) or real_replay(*a, **k))
    trainer.train()
    assert not cb.errors, cb.errors
    assert replays == [] and len(training_batches) == 2  # two training steps, no extra forward
    measured = cb.dashboard.memory.values()[("probe", "measured")]["activations"]
    # the first batch replayed by hand: equal up to the Trainer's loss normaliser (a 4-byte scalar)
    trainer.model.train()
    replayed = sum(n for _, n in saved_activation_tensors(trainer.model, training_batches[0]))
    assert measured > 0 and abs(measured - replayed) <= 8, (measured, replayed)
    assert not trainer.model._forward_hooks  # the recording hook is gone


def test_with_gradient_accumulation_measured_and_predicted_describe_the_same_batch(tmp_path):
    """Micro-batches of different lengths: the recorded forward is the step's first, the optimizer step
    comes after the second; the plan must be for the recorded one."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    import lorakit
    from lorakit.adapters.lora import attach_lora
    from lorakit.config.run_config import RunConfig
    from lorakit.widgets import LiveCallback

    cfg = RunConfig(model="tiny-llama", rank=4, alpha=8, dropout=0.0, target_modules="qv")
    cb = LiveCallback(label="accum", config=cfg)
    model = attach_lora(lorakit.load_model("tiny-llama", device="cpu").model, rank=4, alpha=8, dropout=0.0,
                        target_modules="qv")
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": (ids := torch.randint(3, 250, (n,), generator=g).tolist()), "labels": ids}
            for n in (16, 96, 40, 72)]  # batch size 1: every micro-batch has its own length, no padding
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=1,
                             gradient_accumulation_steps=2, save_strategy="no", report_to="none",
                             disable_tqdm=True, use_cpu=True, logging_steps=1)
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[cb]).train()
    assert not cb.errors, cb.errors
    bars = cb.dashboard.memory.values()
    measured, planned = bars[("accum", "measured")], bars[("accum", "planned")]
    assert planned is not None
    # equal up to the Trainer's loss scalars (normaliser, accumulation: 3 x 4 bytes); a plan for
    # the other micro-batch (16 vs 96 tokens) would be off by a factor
    assert abs(planned["activations"] - measured["activations"]) <= 16, (planned, measured)


def test_an_interrupted_first_forward_leaves_no_hooks_behind_for_the_next_run(tmp_path):
    """Ctrl-C skips always_call forward hooks: the next train() must clear what the broken one left."""
    from lorakit.widgets import LiveCallback

    cb = LiveCallback(label="again")
    trainer = _tiny_trainer(tmp_path, cb, max_steps=2)

    def interrupt(module, args):  # Ctrl-C inside the first forward, after LiveCallback's pre-hook ran
        raise KeyboardInterrupt

    inner = trainer.model.get_base_model().register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()  # no `with cb`: on_train_end never runs
    inner.remove()
    trainer.train()
    assert not cb.errors, cb.errors
    assert not trainer.model._forward_pre_hooks and not trainer.model._forward_hooks
    assert cb.dashboard.memory.values()[("again", "measured")]["activations"] > 0
    assert cb.dashboard.live.status == "finished"


def test_live_callback_rejects_a_bad_target():
    from lorakit.widgets import LiveCallback

    with pytest.raises(TypeError):
        LiveCallback(target=42)


def test_live_callback_context_marks_the_dashboard_failed_when_the_trainer_raises(tmp_path):
    from lorakit.widgets import LiveCallback

    cb = LiveCallback(label="my trainer")
    trainer = _tiny_trainer(tmp_path, cb, max_steps=4)
    real_step = trainer.training_step

    def step_then_fail(*args, **kwargs):
        if trainer.state.global_step >= 2:
            raise RuntimeError("out of memory (simulated)")
        return real_step(*args, **kwargs)

    trainer.training_step = step_then_fail  # the user's training dies at step 3: on_train_end never fires
    with pytest.raises(RuntimeError, match="simulated"):  # the user's exception is not swallowed
        with cb:
            trainer.train()
    d = cb.dashboard
    assert d.live.status == "failed"
    assert d.status_text == "my trainer failed: RuntimeError: out of memory (simulated)"
    assert [x for x, _ in d.chart.train_points] == [1, 2]  # what ran is kept
    assert not trainer.model._forward_pre_hooks  # the batch-capturing hook left the user's model


def test_live_callback_context_reports_to_a_studio_and_an_interrupt_is_a_stop():
    from lorakit.widgets import LiveCallback, StudioController

    c = StudioController(store=False, model="tiny-llama")
    with pytest.raises(ValueError):
        with LiveCallback(c):
            raise ValueError("bad dataset column")  # before the Trainer even started
    assert c.live.status == "failed" and c.status == ("error", "your run failed: ValueError: bad dataset column")
    with pytest.raises(KeyboardInterrupt):
        with LiveCallback(c):
            raise KeyboardInterrupt
    assert c.live.status == "stopped"
    assert c.status == ("warn", "your run stopped after step 0: interrupted (KeyboardInterrupt)")
    with LiveCallback(c):  # no exception: nothing reported
        pass
    assert c.live.status == "stopped"


def test_an_outside_failure_never_ends_the_studios_own_run():
    from lorakit.widgets import LiveCallback, StudioController
    from lorakit.widgets.runstate import LiveRun

    c = StudioController(store=False, model="tiny-llama")
    own = LiveRun(label="studio run", status="running")
    c.live, c._active = own, True  # as while the Studio's own run trains
    with pytest.raises(ValueError):
        with LiveCallback(c):
            raise ValueError("bad dataset column")
    assert c.live is own and own.status == "running" and not own.done
    assert any("ignored: the Studio is training" in str(e) for e in c.errors)
