"""The encoder-decoder (T5) text-to-text path on a tiny random T5 with tiny-llama's tokenizer: load as a
seq2seq LM, text-to-text data as encoder input + decoder labels, LoRA count, base unchanged, disable =
base, merge = adapter, a short run with the generation metric before and after."""
import pytest
import torch

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.data import DataError, build_data, preview
from lorakit.models.tiny_llama import tiny_tokenizer
from lorakit.training.evaluation import generate, token_f1

D, LAYERS = 64, 2


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A 2+2-layer T5 with random weights and tiny-llama's tokenizer (ids: pad 0 starts the decoder, EOS 2)."""
    from transformers import T5Config, T5ForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny-t5")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=1536, d_model=D, d_ff=128, d_kv=16, num_heads=4, num_layers=LAYERS,
                   num_decoder_layers=LAYERS, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    T5ForConditionalGeneration(cfg).save_pretrained(out)
    tiny_tokenizer().save_pretrained(out)
    return str(out)


def _cfg(model, **kw):
    return lorakit.RunConfig(**{**dict(model=model, dataset="date-iso", target_modules=("q", "v"), rank=4,
                                       max_steps=3, batch_size=4, train_examples=16, eval_examples=4), **kw})


def test_text_to_text_data_is_the_encoders_input_and_the_decoders_labels(tiny_t5):
    loaded = lorakit.load_model(tiny_t5, device="cpu")
    assert (loaded.task, loaded.family, type(loaded.model).__name__) == (
        "seq2seq", "encoder-decoder", "T5ForConditionalGeneration")
    tok = loaded.tokenizer
    bundle = build_data(_cfg(tiny_t5), tok, "seq2seq")
    assert bundle.kind == "seq2seq"
    ex, raw = bundle.train[0], bundle.train_raw[0]
    assert ex["input_ids"] == tok(raw["prompt"], add_special_tokens=False)["input_ids"]  # plain text, no template
    assert ex["labels"] == tok(raw["answer"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    shown = preview(bundle, tok, 1)[0]
    assert "".join(t for t, loss in shown if loss) == raw["answer"] + tok.eos_token
    with pytest.raises(DataError, match=r"^dataset: built-in task 'topic' is classification data.*date-iso"):
        build_data(_cfg(tiny_t5, dataset="topic"), tok, "seq2seq")


def test_lora_on_t5_counts_every_attention_and_keeps_the_base(tiny_t5):
    loaded = lorakit.load_model(tiny_t5, device="cpu")
    tok = loaded.tokenizer
    torch.manual_seed(0)
    model = adapters.attach_lora(loaded.model, 4, 16, 0.0, ("q", "v"), task_type="SEQ_2_SEQ_LM")
    # q and v of the encoder's self-attention, the decoder's self- and cross-attention: 3 x LAYERS x 2 layers
    assert adapters.count_params(model)[0] == 3 * LAYERS * 2 * 4 * (D + D)
    enc = tok(["Convert to an ISO date:\nMarch 5, 2021"], return_tensors="pt", add_special_tokens=False)
    labels = tok(["2021-03-05"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    model.eval()
    with torch.no_grad():
        base = model(**enc, labels=labels).logits
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    model.eval()
    with torch.no_grad():
        adapted = model(**enc, labels=labels).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(**enc, labels=labels).logits, base)
    assert not torch.allclose(adapted, base)
    answer = generate(model, tok, ["Convert to an ISO date:\nMarch 5, 2021"], max_new_tokens=6, chat=False)
    assert len(tok(answer[0], add_special_tokens=False)["input_ids"]) <= 6  # the answer alone, not the prompt
    merged = adapters.merge_adapter(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(**enc, labels=labels).logits, adapted, rtol=1e-4, atol=1e-5)


def test_a_t5_run_trains_and_scores_its_answers(tiny_t5, tmp_path):
    rec = lorakit.train(_cfg(tiny_t5), store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert (rec.task, rec.family, rec.head_params) == ("seq2seq", "encoder-decoder", 0)
    assert rec.trainable_params == 3 * LAYERS * 2 * 4 * (D + D)
    assert rec.steps_done == 3 and rec.eval_loss is not None and rec.metric == "exact match"
    assert rec.task_metric is not None and rec.task_metric_before is not None
    assert 0 <= rec.token_f1 <= 1 and 0 <= rec.token_f1_before <= 1 and rec.macro_f1 is None
    assert lorakit.compare([rec]).iloc[0]["token_f1"] == pytest.approx(rec.token_f1)
    assert all(s["prompt"].startswith("Convert to an ISO date") for s in rec.samples)


def test_token_f1_is_the_overlap_of_whitespace_tokens():
    assert token_f1("the cat sat", "The cat sat") == 1.0
    assert token_f1("a b c d", "a b x y") == pytest.approx(2 * 2 / 8)
    assert token_f1("", "x") == 0.0 and token_f1("", "") == 1.0


def test_built_in_tiny_t5_trains_a_text_task_with_the_defaults():
    """``tiny-t5`` needs no folder: the registry builds it; 'qv' means T5's q and v; the plan's steady bytes match."""
    run = lorakit.train(lorakit.RunConfig(model="tiny-t5", dataset="date-iso", max_steps=2, batch_size=2,
                                          train_examples=8, eval_examples=2), store=False)
    assert run.status == "finished", run.reason
    assert (run.task, run.family) == ("seq2seq", "encoder-decoder")
    # q and v (64 -> 64) in 2 encoder self-attentions, 2 decoder self- and 2 cross-attentions: 12 x r(64 + 64)
    assert run.trainable_params == 12 * 8 * (64 + 64) and run.total_params == 263_168 + run.trainable_params
    for part in ("base_weights", "adapters", "gradients", "optimizer"):
        assert getattr(run.memory, part) == getattr(run.planned_memory, part), part
