"""Evaluation: scorers, batched greedy generation, task metric over a bundle."""
import json

import pytest
import torch

import lorakit
from lorakit import RunConfig
from lorakit.data import build_data
from lorakit.training import evaluation as ev
from lorakit.training.evaluation import evaluate_task, field_accuracy, generate, generation_config, score

REF = json.dumps({"name": "Maria Lopez", "age": 34, "city": "Lisbon"})


@pytest.fixture(scope="module")
def tiny():
    return lorakit.load_model("tiny-llama")


# --- scorers -----------------------------------------------------------------------------------------

def test_json_exact_match_ignores_key_order_and_whitespace():
    reordered = '{"city": "Lisbon",\n "age": 34, "name": "Maria Lopez"}'
    fenced = '```json\n{"name": "Maria Lopez", "age": 34, "city": "Lisbon"}\n```'
    assert score("extract-json", [reordered, fenced, REF], [REF] * 3) == 1.0


def test_json_wrong_or_malformed_scores_zero():
    preds = [
        '{"name": "Maria Lopez", "age": 34, "city": "Lisbon"',  # unclosed
        "Maria Lopez, 34, Lisbon",  # not JSON
        '{"name": "Maria Lopez", "age": "34", "city": "Lisbon"}',  # age as a string
        '{"name": "Maria Lopez", "age": 34, "city": "Porto"}',  # wrong value
        '{"name": "Maria Lopez", "age": 34, "city": "Lisbon", "job": "chef"}',  # extra key
        '["Maria Lopez", 34, "Lisbon"]',  # not an object
        "",
    ]
    assert score("extract-json", preds, [REF] * len(preds)) == 0.0
    assert score("extract-json", preds[:1] + [REF], [REF] * 2) == 0.5


def test_json_per_field_details():
    task = {t.name: t for t in lorakit.data.list_tasks()}["extract-json"]
    d = task.check('{"name": "Maria Lopez", "age": "34", "city": "Porto"}', REF)
    assert d == {"correct": False, "valid_json": True, "fields": {"name": True, "age": False, "city": False}}
    assert task.check("nope", REF)["valid_json"] is False
    details = [task.check(REF, REF), d]
    assert field_accuracy(details) == {"name": 1.0, "age": 0.5, "city": 0.5}


def test_other_task_scorers():
    assert score("sort-words", ["apple kiwi pear", "apple, kiwi, pear.", "kiwi apple pear"],
                 ["apple kiwi pear"] * 3) == pytest.approx(2 / 3)
    assert score("arithmetic", ["405", " 405.", "404", "the answer is 405"], ["405"] * 4) == 0.5
    assert score("date-iso", ["2021-03-05", "2021-3-5", "March 5, 2021", "2021-03-05."], ["2021-03-05"] * 4) == 0.5
    with pytest.raises(ValueError):
        score("extract-json", ["a"], [])
    with pytest.raises(lorakit.data.DataError, match="built-in tasks"):
        score("nope", [], [])


# --- generation ----------------------------------------------------------------------------------------

def test_generate_returns_strings_and_restores_mode(tiny):
    model, tok = tiny.model, tiny.tokenizer
    model.train()
    out = generate(model, tok, ["Hello", [{"role": "user", "content": "Hi there"}]], max_new_tokens=5)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert model.training
    model.eval()
    generate(model, tok, ["Hello"], max_new_tokens=2)
    assert not model.training
    assert generate(model, tok, [], max_new_tokens=2) == []


def test_batched_left_padding_matches_one_by_one(tiny):
    model, tok = tiny.model, tiny.tokenizer
    prompts = ["a", "a much longer prompt than the first one", "medium prompt", "xy"]
    # chat=False: raw text, so each answer continues its own prompt (the random tiny model
    # answers every chat prompt alike); right padding or a lost order would change the answers
    batched = generate(model, tok, prompts, max_new_tokens=8, batch_size=4, chat=False)
    single = [generate(model, tok, [p], max_new_tokens=8, batch_size=1, chat=False)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # outputs depend on the prompt: order was kept



def test_a_batch_that_runs_out_of_memory_is_halved_and_nothing_is_lost(tiny, monkeypatch):
    model, tok = tiny.model, tiny.tokenizer
    prompts = [f"prompt number {i} " + "word " * i for i in range(10)]
    expected = generate(model, tok, prompts, max_new_tokens=6, batch_size=1, chat=False)
    real, sizes = model.generate, []

    def small_memory(**kwargs):  # a device that holds at most 3 prompts at once
        sizes.append(kwargs["input_ids"].shape[0])
        if sizes[-1] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", small_memory)
    assert generate(model, tok, prompts, max_new_tokens=6, chat=False) == expected  # default batch: 32
    assert sizes == [10, 5, 2, 2, 2, 2, 2]  # all at once, halved twice, then every prompt once in batches of 2

def test_generation_is_greedy_quiet_and_uses_the_cache(tiny, capfd):
    model, tok = tiny.model, tiny.tokenizer
    gc = generation_config(tok, 7)
    assert gc.do_sample is False and gc.use_cache is True and gc.temperature is None and gc.top_p is None
    assert gc.pad_token_id == tok.pad_token_id and tok.convert_tokens_to_ids("<|im_end|>") in gc.eos_token_id
    assert model.config.use_cache is False  # load_model sets it for training
    seen = {}
    original = model.generate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    model.generate = spy
    try:
        capfd.readouterr()
        a = generate(model, tok, ["same prompt"] * 3, max_new_tokens=6)
    finally:
        del model.generate
    assert seen["generation_config"].use_cache is True
    assert seen["attention_mask"][0].tolist()[0] == 1  # all the same length: no padding
    assert len(set(a)) == 1  # greedy: same prompt, same answer
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert model.config.use_cache is False


def test_generate_works_on_a_peft_model(tiny):
    from lorakit.adapters.lora import attach_lora

    fresh = lorakit.load_model("tiny-llama")
    peft_model = attach_lora(fresh.model, rank=2, alpha=4, target_modules="qv")
    base_out = generate(tiny.model, tiny.tokenizer, ["Hello"], max_new_tokens=6)
    peft_model.train()
    out = generate(peft_model, fresh.tokenizer, ["Hello"], max_new_tokens=6)
    assert out == base_out  # B starts at zero: a fresh adapter changes nothing
    assert peft_model.training


# --- evaluate_task ---------------------------------------------------------------------------------------

def test_evaluate_task_scores_with_the_task_metric(tiny, monkeypatch):
    bundle = build_data(RunConfig(model="tiny-llama", train_examples=4, eval_examples=6, seq_len=512), tiny.tokenizer)
    refs = [r["reference"] for r in bundle.eval_raw]
    monkeypatch.setattr(ev, "generate", lambda model, tok, msgs, **kw: refs[:len(msgs)])
    metric, details = evaluate_task(tiny.model, tiny.tokenizer, bundle)
    assert metric == 1.0 and len(details) == 6 and all(d["correct"] for d in details)
    assert details[0]["fields"] == {"name": True, "age": True, "city": True}
    wrong = ['{"name": "x"}'] * 6
    monkeypatch.setattr(ev, "generate", lambda model, tok, msgs, **kw: wrong[:len(msgs)])
    metric, details = evaluate_task(tiny.model, tiny.tokenizer, bundle, limit=3)
    assert metric == 0.0 and len(details) == 3
    assert [d["prompt"] for d in details] == [r["prompt"] for r in bundle.eval_raw[:3]]


def test_evaluate_task_real_generation_and_user_data(tiny, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) for i in range(6)))
    bundle = build_data(RunConfig(model="tiny-llama", dataset=str(path), eval_examples=2), tiny.tokenizer)
    metric, details = evaluate_task(tiny.model, tiny.tokenizer, bundle, max_new_tokens=4)
    assert metric is None and len(details) == 2
    assert all(d["correct"] is None and isinstance(d["prediction"], str) for d in details)
    task_bundle = build_data(RunConfig(model="tiny-llama", dataset="arithmetic", train_examples=2, seq_len=512,
                                       eval_examples=3), tiny.tokenizer)
    metric, details = evaluate_task(tiny.model, tiny.tokenizer, task_bundle, max_new_tokens=4)
    assert metric == 0.0 and len(details) == 3  # a random tiny model does not do arithmetic


@pytest.mark.e2e
def test_smollm2_generates_a_known_answer():
    lm = lorakit.load_model("smollm2-135m")
    lm.model.train()
    out = generate(lm.model, lm.tokenizer, ["What is the capital of France? Answer in one word.",
                                            "Say hello."], max_new_tokens=12)
    assert "Paris" in out[0]
    assert lm.model.training
