"""TrainerEvents, the Trainer -> events bridge: a plain Trainer's run as events, and the hooks one by one."""
from __future__ import annotations

import logging
import math
import threading
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from lorakit.run.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged
from lorakit.training import trainer_events as callback
from lorakit.training.trainer_events import StopRun, TrainerEvents


class Recorder(list):
    def __call__(self, event):
        self.append(event)

    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


def test_a_plain_trainers_run_is_announced_and_reported_from_the_hooks(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    import lorakit
    from lorakit.adapters.lora import attach_lora

    model = attach_lora(lorakit.load_model("tiny-llama", device="cpu").model, rank=4, alpha=8, dropout=0.0,
                        target_modules="qv")
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": (ids := torch.randint(3, 250, (24,), generator=g).tolist()), "attention_mask": [1] * 24,
             "labels": ids} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
                             eval_strategy="steps", eval_steps=3, save_strategy="no", report_to="none",
                             disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    sink = Recorder()
    bridge = TrainerEvents([sink])
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(rows[:2]),
            callbacks=[bridge]).train()
    assert not bridge.errors, bridge.errors
    assert isinstance(sink[0], RunStarted) and isinstance(sink[-1], RunFinished) and sink[-1].status == "finished"
    assert len({e.run_id for e in sink}) == 1 and sink[0].run_id
    assert sink[0].trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps = sink.of(StepLogged)
    assert [s.step for s in steps] == [1, 2, 3] and all(s.max_steps == 3 and s.tokens_per_s > 0 for s in steps)
    (ev,) = sink.of(EvalDone)
    assert ev.step == 3 and ev.perplexity == pytest.approx(math.exp(ev.eval_loss))
    # once after the first optimizer step, again when the first two steps' peak is known
    mem, with_peak = sink.of(MemoryMeasured)
    assert mem.step == 1 and mem.measured.activations > 0 and mem.measured.optimizer > 0
    assert mem.planned is None and mem.plan_error == TrainerEvents.NO_CONFIG  # no config: no prediction
    # the step's peak holds everything the breakdown counts except the gradients freed before the
    # next forward, plus at least the activations of that forward
    assert with_peak.measured.peak >= with_peak.measured.total - with_peak.measured.gradients
    assert with_peak.measured.peak_at in ("forward", "logits-loss", "backward", "optimizer step")
    assert not model._forward_pre_hooks and not model._forward_hooks  # the hooks left with the run


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(callback, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def _begin(bridge, counting="non_padding", max_steps=10):
    args = SimpleNamespace(include_num_input_tokens_seen=counting, max_steps=max_steps, n_gpu=1)
    state = SimpleNamespace(num_input_tokens_seen=0, max_steps=max_steps, global_step=0)
    bridge.on_train_begin(args, state, TrainerControl())
    return args, state


def test_tokens_per_second_count_since_the_previous_log(clock):
    sink = Recorder()
    bridge = TrainerEvents([sink], run_id="r1", clock_start=90.0)
    args, state = _begin(bridge)
    clock[0], state.num_input_tokens_seen, state.global_step = 102.0, 300, 1  # the Trainer's own count
    bridge.on_log(args, state, None, logs={"loss": 2.0, "learning_rate": 1e-4, "grad_norm": "n/a"})
    clock[0], state.num_input_tokens_seen, state.global_step = 103.0, 400, 2
    bridge.on_log(args, state, None, logs={"loss": 1.5, "learning_rate": None, "grad_norm": 0.5})
    a, b = sink.of(StepLogged)
    assert (a.tokens_per_s, a.elapsed_s, a.grad_norm, a.learning_rate) == (150.0, 12.0, None, 1e-4)
    assert (b.tokens_per_s, b.elapsed_s, b.grad_norm, b.learning_rate) == (100.0, 13.0, 0.5, 0.0)
    # a Trainer that counts no real tokens: the forward pre-hook's count
    args, state = _begin(bridge, counting="no")
    bridge.hooks.tokens = 50
    clock[0] += 0.5
    bridge.on_log(args, state, None, logs={"loss": 1.0})
    assert sink.of(StepLogged)[-1].tokens_per_s == 100.0


def test_a_non_finite_loss_ends_lorakits_own_run_but_not_someone_elses(clock):
    own, theirs = Recorder(), Recorder()
    bridge = TrainerEvents([own], run_id="r1")
    args, state = _begin(bridge)
    state.global_step = 3
    with pytest.raises(StopRun) as stop:
        bridge.on_log(args, state, None, logs={"loss": float("nan")})
    assert (stop.value.status, stop.value.reason) == ("failed", "non-finite loss (nan) at step 3")
    assert len(own.of(StepLogged)) == 1  # the sinks saw the step first
    outside = TrainerEvents([theirs])
    args, state = _begin(outside)
    outside.on_log(args, state, None, logs={"loss": float("inf")})
    assert math.isinf(theirs.of(StepLogged)[0].loss)


def test_a_failing_sink_is_kept_outside_and_logged_inside(caplog):
    def broken(event):
        raise RuntimeError("dashboard closed")

    outside = TrainerEvents([broken])
    _begin(outside)  # RunStarted goes to the broken sink
    assert [str(e) for e in outside.errors] == ["dashboard closed"]
    caplog.set_level(logging.ERROR, logger="lorakit")
    inside = TrainerEvents([broken], run_id="r1")
    args, state = _begin(inside)
    inside.on_evaluate(args, state, None, metrics={"eval_loss": 60.0})  # perplexity: inf, not an overflow
    assert not inside.errors and any("sink" in r.getMessage() for r in caplog.records)


def test_a_stop_request_ends_the_loop_after_the_current_step():
    stop = threading.Event()
    bridge = TrainerEvents([], run_id="r1", stop=stop)
    args, state = _begin(bridge)
    control = TrainerControl()
    bridge.on_step_end(args, state, control)
    assert not control.should_training_stop and bridge.last_step_at is not None
    stop.set()
    bridge.on_step_end(args, state, control)
    assert control.should_training_stop


def test_perplexity_is_left_blank_for_a_classifier_and_kept_for_token_losses(capsys):
    """exp(eval loss) is a perplexity over tokens (causal LM, a seq2seq target); a classifier's loss is
    over its labels: its EvalDone carries None, and the CLI line leaves the perplexity out."""
    import io

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lorakit.adapters.lora import attach_lora
    from lorakit.cli.commands import ProgressBar

    cfg = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    bare = AutoModelForSequenceClassification.from_config(cfg)
    wrapped = attach_lora(AutoModelForSequenceClassification.from_config(cfg), rank=2, target_modules="qv",
                          task_type="SEQ_CLS")
    causal = SimpleNamespace()  # any other model: no classifier head
    sink = Recorder()
    bridge = TrainerEvents([sink], run_id="r1")
    args, state = _begin(bridge)
    for model in (bare, wrapped, causal):
        bridge.on_evaluate(args, state, None, metrics={"eval_loss": 0.5}, model=model)
    assert [e.perplexity for e in sink.of(EvalDone)] == [None, None, pytest.approx(math.exp(0.5))]
    out = io.StringIO()
    bar = ProgressBar(file=out)
    for event in sink.of(EvalDone)[1:]:
        bar(event)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  eval @ step 0: loss 0.500" and lines[1].endswith(f"perplexity {math.exp(0.5):.1f}")
