"""The base model's "before" result: computed once per base, prompts and settings, reused by later runs."""
import json

import pytest

import lorakit
from lorakit import RunConfig
from lorakit.data import build_data
from lorakit.store import RunStore
from lorakit.store.eval_cache import lookup, size
from lorakit.training.base_eval import cache_key
from lorakit.training.evaluation import answer_budget, evaluate_task

TINY = dict(model="tiny-llama", max_steps=2, batch_size=2, train_examples=16, eval_examples=4, learning_rate=1e-3)


@pytest.fixture(scope="module")
def tiny():
    return lorakit.load_model("tiny-llama")


def _key(cfg, tok, device="cpu", budget=None):
    raw = build_data(cfg, tok).eval_raw
    return cache_key(cfg, tok, raw, device, budget or answer_budget(tok, raw))[0]


def test_the_key_changes_with_what_changes_the_result_and_only_with_that(tiny, tmp_path):
    tok, cfg = tiny.tokenizer, RunConfig(**TINY)
    key = _key(cfg, tok)
    # training settings do not touch the base's answers; full fine-tuning's base is the same model
    for same in (dict(learning_rate=5e-5), dict(rank=4), dict(method="full"), dict(max_steps=9), dict(name="x")):
        assert _key(cfg.replace(**same), tok) == key, same
    for other in (dict(quant="nf4"), dict(quant="int8"), dict(dtype="bfloat16"), dict(dataset="arithmetic"),
                  dict(eval_examples=3), dict(seed=1)):
        assert _key(cfg.replace(**other), tok) != key, other
    assert _key(cfg, tok, device="cuda") != key and _key(cfg, tok, budget=7) != key
    nf4 = cfg.replace(quant="nf4")
    assert _key(nf4.replace(double_quant=False), tok) != _key(nf4, tok)
    # a data file: same name, other rows -> another key
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) for i in range(8)))
    file_cfg = cfg.replace(dataset=str(path), eval_examples=2)
    before = _key(file_cfg, tok)
    path.write_text("\n".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) for i in range(9)))
    assert _key(file_cfg, tok) != before
    # the chat template renders the prompts: another template, another key
    template = tok.chat_template
    try:
        tok.chat_template = template.replace("<|im_start|>", "<|im_start|> ")
        assert _key(cfg, tok) != key
    finally:
        tok.chat_template = template


def test_a_second_run_on_the_same_base_reuses_the_first_runs_before(tiny, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    first = lorakit.train(RunConfig(**TINY), store=store)
    assert first.status == "finished", first.reason
    assert not first.before_cached and size(store) == 1
    # the cached result is what a fresh evaluation of the untrained base gives
    cfg = RunConfig(**TINY)
    bundle = build_data(cfg, tiny.tokenizer)
    budget = answer_budget(tiny.tokenizer, bundle.eval_raw)
    fresh = evaluate_task(tiny.model, tiny.tokenizer, bundle, max_new_tokens=budget)
    key, _ = cache_key(cfg, tiny.tokenizer, bundle.eval_raw, first.device, budget)
    assert lookup(store, key) == (fresh[0], json.loads(json.dumps(fresh[1])))
    assert first.task_metric_before == fresh[0]
    assert [s["before"] for s in first.samples] == [d["prediction"] for d in fresh[1][:3]]
    # full fine-tuning at another learning rate: the same base, a hit
    full = lorakit.train(RunConfig(**dict(TINY, method="full", learning_rate=1e-4)), store=store)
    assert full.status == "finished", full.reason
    assert full.before_cached and full.task_metric_before == first.task_metric_before
    assert [s["before"] for s in full.samples] == [s["before"] for s in first.samples]
    assert size(store) == 1
    assert store.load(full.run_id).before_cached  # kept with the run
    store.close()


@pytest.mark.parametrize("settings, before_first", [
    (dict(), False),  # LoRA: the base's answers come after training, through the adapter switched off
    (dict(quant="nf4"), False),  # QLoRA with fp32 compute: the same
    (dict(init="pissa"), True),  # PiSSA moves part of W into the adapter: the base is evaluated first
    (dict(method="full"), True),  # no adapter to switch off
])
def test_the_first_loss_waits_for_the_base_only_where_the_base_cannot_be_had_later(
        tmp_path, monkeypatch, settings, before_first):
    from lorakit.run.events import StepLogged
    from lorakit.training import evaluation

    order = []
    real = evaluation.evaluate_task

    def noted(model, *args, **kwargs):
        off = any(m.disable_adapters for m in model.modules() if hasattr(m, "lora_A"))  # peft's LoRA layers
        order.append("task pass, adapter off" if off else "task pass")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_task", noted)
    sink = lambda e: order.append("step") if isinstance(e, StepLogged) else None  # noqa: E731
    rec = lorakit.train(RunConfig(**dict(TINY, **settings)), sinks=[sink], store=RunStore(tmp_path / "r.db"))
    assert rec.status == "finished", rec.reason
    assert rec.task_metric_before is not None and not rec.before_cached and len(rec.samples) == 3
    if before_first:
        assert order[0] == "task pass" and order[-1] == "task pass"  # before, then after training
    else:  # after training: the trained model's answers, then the base's with the adapter off
        assert order[0] == "step" and order[-2:] == ["task pass", "task pass, adapter off"]


def test_after_the_last_step_the_run_says_it_evaluates_and_how_many_answers_it_generates(tmp_path):
    from lorakit.run import PhaseStarted, RunFinished, StepLogged

    events = []
    rec = lorakit.train(RunConfig(**TINY), sinks=[events.append], store=RunStore(tmp_path / "r.db"))
    assert rec.status == "finished", rec.reason
    kinds = [type(e).__name__ for e in events]
    last_step = max(i for i, e in enumerate(events) if isinstance(e, StepLogged))
    phases = [e for e in events if isinstance(e, PhaseStarted)]
    assert [p.phase for p in phases] == ["evaluating", "answering"], kinds
    assert events.index(phases[0]) > last_step and isinstance(events[-1], RunFinished)
    assert phases[1].count == 4 and phases[1].text.startswith("evaluating: generating 4 answers"), phases[1].text
