"""The labelled-only head (lorakit.models.labelled_loss): the model's own loss, computed at the labelled rows only.
Same per-step losses as the model's forward (LoRA, full fine-tuning, a 4-bit base, checkpointing, GPT-2,
padded or not, mean or sum / num_items_in_batch); the same loss curve and eval loss through lorakit.train;
and the planner follows it exactly (activations) and within 1 % (the step peak)."""
import warnings

import pytest
import torch

import lorakit
from lorakit.adapters.lora import attach_lora, prepare_full
from lorakit.cli.commands import _config_kwargs, build_parser
from lorakit.config.run_config import ConfigError
from lorakit.memory.planner import plan_for_batch, plan_memory
from lorakit.memory.saved_tensors import ActivationRecorder
from lorakit.memory.step_peak import TrainingPeak
from lorakit.models.labelled_loss import labelled_loss, lm_parts
from lorakit.models.loading import load_model

warnings.filterwarnings("ignore")
REL = 1e-4  # the bound on a per-step loss difference


def _model(name="tiny-llama", method="lora", quant="none", gc=False):
    torch.manual_seed(0)
    model = load_model(name, quant=quant, device="cpu").model
    model = attach_lora(model, 8, 16, 0.05, "qv", gc) if method == "lora" else prepare_full(model, gc)
    model.train()
    return model


def _batch(padded: bool, vocab: int = 1536, b: int = 3, t: int = 24, prompt: int = 14) -> dict:
    """Answer-only labels (-100 on a prompt of ``prompt`` tokens); ``padded``: the second example ends early."""
    ids = torch.randint(3, vocab, (b, t), generator=torch.Generator().manual_seed(0))
    mask, labels = torch.ones_like(ids), ids.clone()
    labels[:, :prompt] = -100
    if padded:
        ids[1, 18:], mask[1, 18:], labels[1, 18:] = 0, 0, -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _losses(model, batch: dict, labelled: bool, num_items=None, steps: int = 3) -> list:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    parts, losses = lm_parts(model), []
    extra = {} if num_items is None else {"num_items_in_batch": num_items}
    for step in range(steps):
        torch.manual_seed(step)  # the same LoRA dropout masks on both paths
        loss = labelled_loss(parts, batch, num_items).loss if labelled else model(**batch, **extra).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _assert_close(a: list, b: list) -> None:
    assert len(a) == len(b) and all(abs(x - y) <= REL * abs(y) for x, y in zip(a, b, strict=True)), (a, b)


@pytest.mark.parametrize("name,method,quant,gc,padded", [
    ("tiny-llama", "lora", "none", False, False), ("tiny-llama", "lora", "none", False, True),
    ("tiny-llama", "full", "none", False, True), ("tiny-llama", "lora", "nf4", False, True),
    ("tiny-llama", "lora", "none", True, False), ("tiny-gpt2", "lora", "none", False, True),
])
def test_the_loss_of_every_step_is_the_models_own(name, method, quant, gc, padded):
    batch = _batch(padded)
    standard = _losses(_model(name, method, quant, gc), batch, labelled=False)
    labelled = _losses(_model(name, method, quant, gc), batch, labelled=True)
    _assert_close(labelled, standard)
    assert standard[0] != standard[-1]  # the steps trained something


def test_sum_over_num_items_in_batch_is_the_models_own_and_only_labelled_rows_reach_the_head():
    batch = _batch(padded=True)
    items = torch.tensor(40)  # what the Trainer passes: the labelled tokens of the whole accumulated batch
    _assert_close(_losses(_model(), batch, True, items), _losses(_model(), batch, False, items))
    model = _model()
    out = labelled_loss(lm_parts(model), batch)
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert out.logits.shape == (n, model.config.vocab_size) and n < batch["input_ids"].numel()


def test_models_whose_loss_is_not_a_plain_causal_lm_head_take_their_own_forward():
    assert lm_parts(load_model("tiny-t5", device="cpu").model) is None  # seq2seq
    assert lm_parts(load_model("tiny-llama", device="cpu", task="classification", labels=("a", "b")).model) is None
    assert lm_parts(_model()) is not None and lm_parts(_model(method="full")) is not None


def test_train_gives_the_same_loss_curve_eval_loss_and_an_exact_plan():
    cfg = lorakit.RunConfig(model="tiny-llama", max_steps=3, batch_size=2, train_examples=12, eval_examples=2,
                            learning_rate=1e-3)
    fast, slow = (lorakit.train(cfg.replace(labelled_head=on), store=False) for on in (True, False))
    assert fast.status == slow.status == "finished", (fast.reason, slow.reason)
    _assert_close([h["loss"] for h in fast.history], [h["loss"] for h in slow.history])
    _assert_close([e["eval_loss"] for e in fast.evals], [e["eval_loss"] for e in slow.evals])
    # the loss's saved tensors scale with the labelled tokens: fewer bytes, and the plan follows the real batch
    assert fast.memory.activations < slow.memory.activations
    for run in (fast, slow):
        assert 0 <= run.memory.activations - run.planned_memory.activations <= 8  # the loss normaliser
    assert fast.planned_memory.assumes["labelled_head"] and not slow.planned_memory.assumes["labelled_head"]


@pytest.mark.parametrize("name,method,quant,gc", [
    ("tiny-llama", "lora", "none", False), ("tiny-llama", "full", "none", False), ("tiny-llama", "lora", "int8", False),
    ("tiny-llama", "full", "none", True), ("tiny-gpt2", "lora", "none", False), ("tiny-gpt2", "full", "none", False),
])
def test_planned_activations_of_the_labelled_head_are_exact(name, method, quant, gc):
    model = _model(name, method, quant, gc)
    batch = _batch(padded=False, t=32, prompt=20)
    with ActivationRecorder(model, batch) as recorder:
        out = labelled_loss(lm_parts(model), batch)
    recorder.add_outputs(out)
    n = int((batch["labels"][:, 1:] != -100).sum())
    planned = plan_memory(name, method=method, quant=quant, gradient_checkpointing=gc, target_modules="qv",
                          batch_size=3, seq_len=32, device="cpu", labelled_tokens=n)
    assert planned.activations == recorder.nbytes
    assert planned.assumes["loss_positions"] == n


@pytest.mark.parametrize("method", ["lora", "full"])
def test_planned_peak_of_the_labelled_head_is_within_one_percent(method):
    """Most positions labelled: the (N_lab, V) logits' gradients still make the peak (with few labels on
    tiny-llama's 1,536-word vocabulary the backward through the layers does, see planning/peak.py)."""
    model = _model(method=method)
    batch = _batch(padded=False, b=4, t=128, prompt=8)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, peak, parts = torch.optim.AdamW(params, lr=1e-4, fused=True), TrainingPeak("cpu"), lm_parts(model)
    for _ in range(2):
        peak.step_begin(model, opt)
        labelled_loss(parts, batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        peak.step_end()
    n = int((batch["labels"][:, 1:] != -100).sum())
    planned = plan_memory("tiny-llama", method=method, batch_size=4, seq_len=128, device="cpu", labelled_tokens=n)
    assert planned.peak == pytest.approx(peak.reading.peak, rel=0.01)
    assert planned.peak_at == peak.reading.peak_at == "logits-loss"
    assert planned.peak < plan_memory("tiny-llama", method=method, batch_size=4, seq_len=128, device="cpu").peak


def test_plans_count_the_labelled_positions_of_the_batch_or_every_position_without_one():
    cfg = lorakit.RunConfig(model="tiny-llama", batch_size=3, seq_len=24)
    batch = _batch(padded=True)
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert plan_for_batch(cfg, batch, device="cpu").assumes["loss_positions"] == n
    assert plan_for_batch(cfg.replace(labelled_head=False), batch, device="cpu").assumes["loss_positions"] == 3 * 24
    assert lorakit.memory.planner.plan_for_config(cfg, device="cpu").assumes["loss_positions"] == 3 * 23
    t5 = lorakit.RunConfig(model="tiny-t5", batch_size=3, seq_len=24)  # seq2seq: the model's own loss
    assert plan_for_batch(t5, batch, device="cpu").assumes["labelled_head"] is False
    classifier = lorakit.RunConfig(model="tiny-llama", task="classification", batch_size=3, seq_len=24)
    one_label_each = dict(batch, labels=torch.tensor([0, 1, 0]))  # no positions to count
    assert plan_for_batch(classifier, one_label_each, device="cpu").assumes["labelled_head"] is False
    with pytest.raises(ConfigError) as e:
        plan_memory("tiny-llama", labelled_tokens=-1)
    assert "labelled_tokens" in e.value.problems


def test_the_switch_is_a_validated_field_and_a_cli_flag():
    assert lorakit.RunConfig().labelled_head is True
    with pytest.raises(ConfigError) as e:
        lorakit.RunConfig(labelled_head="no")
    assert "labelled_head" in e.value.problems
    ns = build_parser().parse_args(["train", "--model", "tiny-llama", "--no-labelled-head"])
    assert _config_kwargs(ns)["labelled_head"] is False
