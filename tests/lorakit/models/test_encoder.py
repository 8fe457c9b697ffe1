"""The encoder (BERT) classification path: a tiny random BERT for the unit checks (load, LoRA count with
the head, base unchanged, disable = base, merge = adapter, the four quant modes, the metric, the data),
and one e2e run of the built-in minilm-l6 on the built-in topic task."""
import json
import shutil

import pytest
import torch

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.data import DataError, build_data, list_tasks
from lorakit.data.tasks import topic
from lorakit.memory.breakdown import head_parameters
from lorakit.models.loading import minilm_dir
from lorakit.training.evaluation import classify, evaluate_task, macro_f1

HIDDEN, LAYERS, LABELS = 32, 2, topic.LABELS
QV = ("query", "value")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT with random weights and all-MiniLM-L6-v2's tokenizer, saved as a local model."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, out / name)
    return str(out)


def _cfg(model, **kw):
    base = dict(model=model, dataset="topic", target_modules=QV, rank=4, max_steps=3, batch_size=4,
                train_examples=32, eval_examples=8, learning_rate=1e-3)
    return lorakit.RunConfig(**{**base, **kw})


def _lora(tiny_bert, rank=4):
    loaded = lorakit.load_model(tiny_bert, device="cpu", labels=LABELS)
    torch.manual_seed(0)
    return loaded, adapters.attach_lora(loaded.model, rank, 16, 0.0, QV, task_type="SEQ_CLS")


def test_a_bert_loads_as_a_classifier_with_the_datasets_labels(tiny_bert):
    loaded = lorakit.load_model(tiny_bert, device="cpu", labels=LABELS)
    assert (loaded.task, loaded.family) == ("classification", "encoder")
    assert type(loaded.model).__name__ == "BertForSequenceClassification"
    assert loaded.model.config.id2label == dict(enumerate(LABELS)) and loaded.model.num_labels == 4
    with pytest.raises(lorakit.ConfigError, match="task 'causal-lm' does not fit a bert model"):
        lorakit.load_model(tiny_bert, device="cpu", task="causal-lm")
    with pytest.raises(lorakit.ConfigError, match="at least 2 distinct labels"):
        lorakit.load_model(tiny_bert, device="cpu")


def test_the_new_heads_load_report_stays_out_of_the_output(tiny_bert, capfd):
    """transformers reports the classifier as 'newly initialized' (MISSING): expected, so not shown."""
    lorakit.load_model(tiny_bert, device="cpu", labels=LABELS)
    out, err = capfd.readouterr()
    assert "classifier" not in out + err and "initialized" not in out + err, out + err


def test_trainable_count_is_lora_plus_the_whole_head(tiny_bert):
    _, model = _lora(tiny_bert)
    lora = LAYERS * 2 * 4 * (HIDDEN + HIDDEN)  # Σ r·(d_in + d_out) over query and value
    head = HIDDEN * 4 + 4  # the classifier's weight and bias, trained in full
    assert adapters.count_params(model)[0] == lora + head
    assert sum(p.numel() for p in head_parameters(model)) == head


def test_steps_leave_the_base_alone_and_disable_and_merge_give_base_and_adapter(tiny_bert):
    loaded, model = _lora(tiny_bert)
    batch = loaded.tokenizer(["the keeper saved a penalty", "snow covered the roads"], return_tensors="pt",
                             padding=True)
    model.eval()
    with torch.no_grad():
        base_logits = model(**batch).logits  # B = 0 and the head copy equals the original: the base's output
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(**batch, labels=torch.tensor([0, 1])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    model.eval()
    with torch.no_grad():
        adapted = model(**batch).logits
        with model.disable_adapter():
            disabled = model(**batch).logits
    assert not torch.allclose(adapted, base_logits)
    torch.testing.assert_close(disabled, base_logits)
    merged = adapters.merge_adapter(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp4"])
def test_each_quant_mode_trains_a_bert_classifier(tiny_bert, quant, tmp_path):
    rec = lorakit.train(_cfg(tiny_bert, quant=quant), store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert (rec.task, rec.family, rec.head_params) == ("classification", "encoder", HIDDEN * 4 + 4)
    assert rec.trainable_params == LAYERS * 2 * 4 * 2 * HIDDEN + rec.head_params
    assert 0 <= rec.task_metric <= 1 and rec.task_metric_before is not None and rec.macro_f1 is not None
    head_bytes = rec.head_params * 4  # fp32: the head is never quantized
    # AdamW: exp_avg and exp_avg_sq of the weight and the bias, and a 4-byte step counter for each
    assert rec.memory.head == {"base_weights": head_bytes, "gradients": head_bytes, "optimizer": 2 * head_bytes + 8}
    assert rec.memory.total == sum(rec.memory.as_dict()[c] for c in lorakit.memory.breakdown.CATEGORIES)
    store = lorakit.RunStore(tmp_path / "runs.db")
    stored = store.load(rec.run_id)
    assert (stored.task, stored.family, stored.memory.head) == (rec.task, rec.family, rec.memory.head)
    assert {k: v for k, v in store.summaries()[0].items() if k in ("task", "family")} == {
        "task": "classification", "family": "encoder"}
    store.close()
    row = lorakit.compare([rec]).iloc[0]
    assert (row["family"], row["task"], row["metric"], row["head_params"]) == (
        "encoder", "classification", "accuracy (and macro-F1)", rec.head_params)


def test_the_metric_is_accuracy_of_the_argmax_and_macro_f1(tiny_bert):
    loaded, model = _lora(tiny_bert)
    bundle = build_data(_cfg(tiny_bert), loaded.tokenizer, "classification")
    metric, details = evaluate_task(model, loaded.tokenizer, bundle)
    preds = classify(model, loaded.tokenizer, [r["prompt"] for r in bundle.eval_raw], LABELS)
    assert [d["prediction"] for d in details] == preds and set(preds) <= set(LABELS)
    assert metric == sum(p == r["reference"] for p, r in zip(preds, bundle.eval_raw, strict=True)) / len(preds)
    # macro-F1 by hand: sports F1 = 2/3 (1 TP, 1 FN), weather 2/3 (1 TP, 1 FP), food 1; tech absent
    rows = [("sports", "sports"), ("sports", "weather"), ("weather", "weather"), ("food", "food")]
    details = [{"reference": r, "prediction": p} for r, p in rows]
    assert macro_f1(details, LABELS) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_topic_is_a_classification_task_and_a_wrong_kind_is_refused(tiny_bert):
    assert [t.name for t in list_tasks("classification")] == ["topic"]
    assert all(t.kind == "causal-lm" for t in list_tasks("causal-lm")) and "topic" not in [
        t.name for t in list_tasks("causal-lm")]
    tok = lorakit.load_model(tiny_bert, device="cpu", labels=LABELS).tokenizer
    with pytest.raises(DataError, match=r"^dataset: built-in task 'date-iso' is causal-lm data.*fit: topic"):
        build_data(_cfg(tiny_bert, dataset="date-iso"), tok, "classification")
    # a model RunConfig cannot see (a local folder) is checked when its data is built ...
    with pytest.raises(DataError, match=r"^dataset: built-in task 'topic' is classification data.*extract-json"):
        build_data(_cfg(tiny_bert, dataset="topic"), tok, "causal-lm")
    # ... a built-in one already by RunConfig
    with pytest.raises(lorakit.ConfigError, match=r"dataset 'topic' is a classification task.*'extract-json'"):
        lorakit.RunConfig(model="tiny-llama", dataset="topic")


def test_a_user_file_with_text_and_label_columns(tiny_bert, tmp_path):
    tok = lorakit.load_model(tiny_bert, device="cpu", labels=LABELS).tokenizer
    path = tmp_path / "reviews.jsonl"
    rows = [{"text": f"review {i}", "label": ["neg", "pos"][i % 2]} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    bundle = build_data(_cfg(tiny_bert, dataset=str(path), eval_examples=2), tok, "classification")
    assert bundle.labels == ("neg", "pos") and bundle.kind == "classification"
    assert sorted(list(bundle.train["labels"]) + list(bundle.eval["labels"])) == [0] * 5 + [1] * 5
    path.write_text(json.dumps({"text": "fine", "label": "pos"}) + "\n" + json.dumps({"text": "x", "label": ""}))
    with pytest.raises(DataError, match=r"line 2, column 'label': empty; every row needs a label"):
        build_data(_cfg(tiny_bert, dataset=str(path)), tok, "classification")


def test_a_run_config_knows_the_task_of_a_built_in_model():
    assert lorakit.RunConfig().resolved_task() == "causal-lm"
    assert lorakit.RunConfig(model="minilm-l6", target_modules=QV).resolved_task() == "classification"
    with pytest.raises(lorakit.ConfigError) as err:
        lorakit.RunConfig(model="minilm-l6", task="causal-lm", target_modules=QV)
    assert "task 'causal-lm' does not fit a bert model" in err.value.problems["task"]
    with pytest.raises(lorakit.ConfigError):
        lorakit.RunConfig(task="regression")


@pytest.mark.e2e
def test_minilm_l6_learns_the_topic_task(tmp_path):
    """all-MiniLM-L6-v2 + LoRA r=8 on query/value + the new head: from chance to well above it."""
    cfg = lorakit.RunConfig(model="minilm-l6", dataset="topic", target_modules=QV, rank=8, max_steps=40,
                            batch_size=8, learning_rate=3e-3, train_examples=320, eval_examples=64)
    rec = lorakit.train(cfg, store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert rec.trainable_params == 6 * 2 * 8 * (384 + 384) + rec.head_params and rec.head_params == 384 * 4 + 4
    assert rec.task_metric_before < 0.45  # an untrained head: about chance (0.25)
    assert rec.task_metric >= 0.8 and rec.task_metric > rec.task_metric_before + 0.3, (rec.task_metric_before,
                                                                                      rec.task_metric)


def test_a_decoder_classifies_when_the_task_says_so(tmp_path):
    """task='classification' on tiny-llama: LlamaForSequenceClassification, its 'score' head (no bias) trained whole."""
    rec = lorakit.train(lorakit.RunConfig(model="tiny-llama", task="classification", dataset="topic", max_steps=2,
                                          train_examples=16, eval_examples=4), store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert (rec.task, rec.family, rec.head_params) == ("classification", "decoder", 64 * 4)
    assert rec.trainable_params == 2 * 8 * (64 + 64) + 2 * 8 * (64 + 32) + rec.head_params  # q_proj, v_proj (GQA)
    for part in ("base_weights", "adapters", "gradients", "optimizer"):  # planned with the 4-label head it trained
        assert getattr(rec.memory, part) == getattr(rec.planned_memory, part), part


def test_a_classifier_is_planned_with_its_datas_labels():
    from lorakit.memory.planner import plan_for_config

    four = lorakit.plan_memory("tiny-llama", task="classification", num_labels=4)
    two = lorakit.plan_memory("tiny-llama", task="classification")  # the config's default
    assert four.base_weights - two.base_weights == 2 * 64 * 2 * 4  # 2 more outputs x 64 fp32, and peft's copy
    cfg = lorakit.RunConfig(model="tiny-llama", task="classification", dataset="topic")
    assert plan_for_config(cfg).base_weights == four.base_weights  # the built-in topic task: 4 labels
    with pytest.raises(lorakit.ConfigError) as err:
        lorakit.plan_memory("tiny-llama", task="classification", num_labels=1)
    assert "num_labels" in err.value.problems
