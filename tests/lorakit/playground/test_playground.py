"""The Playground's engine on tiny models: one base, adapters switched by name, answers equal to plain peft's,
streaming, stop within a token, memory = base once + adapters, 4-bit, classifier, T5, bad input."""
from __future__ import annotations

import threading

import pytest
import torch
from playground_support import stored_run

import lorakit
from lorakit.common.errors import ConfigError
from lorakit.playground.session import BASE, Session
from lorakit.playground.streaming import AnswerStats, GenerationSettings
from lorakit.store import RunStore
from lorakit.training.evaluation import generation_config

PROMPT = "Anna is 31 and lives in Oslo."


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = RunStore(tmp_path_factory.mktemp("pg") / "runs.db")
    stored_run(st, seed=1)
    stored_run(st, seed=2, rank=8, targets=("q_proj", "v_proj", "o_proj"))
    yield st
    st.close()


@pytest.fixture(scope="module")
def session(store):
    return Session(store.run_ids(), store=store)


def _plain_greedy(model, tok, prompt, n):
    """What plain transformers (+ peft) answers: the chat template, greedy, new tokens decoded."""
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, generation_config=generation_config(tok, n))
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_each_adapter_column_answers_as_that_adapter_loaded_alone_with_plain_peft(store, session):
    from peft import PeftModel

    settings = GenerationSettings(max_new_tokens=12)
    answers = {c: session.answer(PROMPT, c, settings) for c in session.names}
    assert len(set(answers.values())) == 3  # the random adapters do change the answers
    for run_id in store.run_ids():
        base = lorakit.load_model("tiny-llama", device="cpu")
        alone = PeftModel.from_pretrained(base.model, store.load(run_id).adapter_path)
        assert answers[run_id] == _plain_greedy(alone, base.tokenizer, PROMPT, 12)
    plain = lorakit.load_model("tiny-llama", device="cpu")
    assert answers[BASE] == _plain_greedy(plain.model, plain.tokenizer, PROMPT, 12)
    # switching back and forth gives the same answers again
    assert session.answer(PROMPT, store.run_ids()[0], settings) == answers[store.run_ids()[0]]


def test_memory_is_the_base_once_plus_each_adapter(store, session):
    from safetensors import safe_open

    from lorakit.memory.breakdown import measure_weights

    mem = session.memory()
    assert mem.base == measure_weights(lorakit.load_model("tiny-llama", device="cpu").model)[0]
    for run_id in store.run_ids():
        with safe_open(f"{store.load(run_id).adapter_path}/adapter_model.safetensors", "pt") as f:
            on_disk = sum(f.get_tensor(k).numel() * 4 for k in f.keys())  # float32 A and B
        assert mem.adapters[run_id] == on_disk > 0
    assert mem.total == mem.base + sum(mem.adapters.values())
    assert "base" in mem.text() and "(once)" in mem.text()


def test_the_stream_is_the_answer_in_pieces_with_timing(session, store):
    run_id = store.run_ids()[0]
    stats = AnswerStats()
    pieces = list(session.stream(PROMPT, run_id, GenerationSettings(max_new_tokens=10), stats=stats))
    assert "".join(pieces).strip() == session.answer(PROMPT, run_id, GenerationSettings(max_new_tokens=10))
    assert 1 <= stats.tokens <= 10 and stats.ttft_s is not None and stats.ttft_s <= stats.wall_s
    assert not stats.stopped


def test_stop_before_the_first_token_leaves_exactly_one(session):
    stop, stats = threading.Event(), AnswerStats()
    stop.set()
    list(session.stream(PROMPT, BASE, GenerationSettings(max_new_tokens=200), stop=stop, stats=stats))
    assert stats.tokens == 1 and stats.stopped


def test_stop_during_an_answer_ends_it_within_a_token(session, store):
    stop, stats = threading.Event(), AnswerStats()
    seen = None
    for _ in session.stream(PROMPT, store.run_ids()[1], GenerationSettings(max_new_tokens=400), stop=stop, stats=stats):
        if seen is None:
            seen = stats.tokens  # the tokens made when Stop is pressed
            stop.set()
    if seen is not None:
        assert stats.tokens <= seen + 1 and stats.stopped


def test_sampling_is_seeded(session, store):
    run_id = store.run_ids()[0]
    a = session.answer(PROMPT, run_id, GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=0.95, seed=3))
    b = session.answer(PROMPT, run_id, GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=0.95, seed=3))
    assert a == b


def test_generate_gives_a_row_per_prompt_and_a_column_per_model(store):
    ids = store.run_ids()
    df = lorakit.generate([PROMPT, "Bo is 7."], runs=ids, store=store, max_new_tokens=6)
    assert list(df.columns) == [BASE, *ids] and list(df.index) == [PROMPT, "Bo is 7."]
    assert all(isinstance(v, str) for v in df.to_numpy().ravel())
    alone = lorakit.generate(PROMPT, runs=ids[:1], base=False, store=store, max_new_tokens=6)
    assert list(alone.columns) == ids[:1] and alone.iloc[0, 0] == df.iloc[0, 1]


def test_stream_one_model_yields_its_answer(store):
    run_id = store.run_ids()[0]
    pieces = list(lorakit.stream(PROMPT, run=run_id, store=store, max_new_tokens=6))
    assert "".join(pieces).strip() == lorakit.generate(PROMPT, runs=[run_id], base=False, store=store,
                                                       max_new_tokens=6).iloc[0, 0]


def test_bad_input_names_the_argument(store, tmp_path):
    with pytest.raises(ConfigError) as e:
        Session(["nope"], store=store)
    assert "runs" in e.value.problems and "nope" in e.value.problems["runs"]
    other = RunStore(tmp_path / "other.db")
    gpt2 = stored_run(other, model="tiny-gpt2", targets=("c_attn",))
    llama = stored_run(other)
    with pytest.raises(ConfigError) as e:
        Session([llama.run_id, gpt2.run_id], store=other)
    assert "tiny-gpt2" in e.value.problems["runs"] and gpt2.run_id in e.value.problems["runs"]
    full = stored_run(other, method="full")
    with pytest.raises(ConfigError) as e:
        Session([full.run_id], store=other)
    assert "full fine-tuning" in e.value.problems["runs"] and "format='merged'" in e.value.problems["runs"]
    with pytest.raises(ConfigError) as e:
        lorakit.generate(PROMPT, runs=[llama.run_id], store=other, max_new_tokens=0, top_p=2.0, colour="red")
    assert set(e.value.problems) == {"colour", "max_new_tokens", "top_p"}
    with pytest.raises(ConfigError) as e:
        GenerationSettings(max_new_tokens=0, top_p=2.0).validate()
    assert set(e.value.problems) == {"max_new_tokens", "top_p"}
    other.close()


def test_a_prompt_longer_than_the_context_is_refused_naming_prompt(session):
    limit = session.context_length()
    with pytest.raises(ConfigError) as e:
        list(session.stream("word " * (limit + 10), BASE))
    assert "prompt" in e.value.problems and str(limit) in e.value.problems["prompt"]
    with pytest.raises(ConfigError) as e:
        session.answer("", BASE)
    assert "prompt" in e.value.problems


def test_a_4bit_base_column_answers_as_plain_peft_on_the_4bit_base(tmp_path):
    from peft import PeftModel

    st = RunStore(tmp_path / "q.db")
    run = stored_run(st, quant="nf4")
    s = Session([run.run_id], store=st)
    assert s.loaded.quant == "nf4" and getattr(s.loaded.model, "is_loaded_in_4bit", False)
    mem = s.memory()
    assert mem.base < lorakit.memory.breakdown.measure_weights(lorakit.load_model("tiny-llama", device="cpu").model)[0]
    got = s.answer(PROMPT, run.run_id, GenerationSettings(max_new_tokens=8))
    base = lorakit.load_model("tiny-llama", quant="nf4", device="cpu")
    want = _plain_greedy(PeftModel.from_pretrained(base.model, run.adapter_path), base.tokenizer, PROMPT, 8)
    assert got == want
    st.close()


def test_a_classifier_column_gives_label_probabilities(tmp_path):
    st = RunStore(tmp_path / "c.db")
    run = stored_run(st, dataset="topic", task="classification", scale=1.0)
    s = Session([run.run_id], store=st)
    labels = lorakit.list_tasks("classification")[0].labels
    probs = {c: s.answer("The match ended two to one.", c) for c in s.names}
    for p in probs.values():
        assert list(p) == list(labels) and sum(p.values()) == pytest.approx(1.0, abs=1e-6)
    assert probs[BASE] != probs[run.run_id]  # the adapter (and its trained head) answer differently
    assert list(s.stream("The match ended two to one.", run.run_id))[0].startswith(labels[0])
    st.close()


def test_a_t5_column_generates(tmp_path):
    from peft import PeftModel

    st = RunStore(tmp_path / "t5.db")
    run = stored_run(st, model="tiny-t5", dataset="date-iso", targets=("q", "v"))
    s = Session([run.run_id], store=st)
    stats = AnswerStats()
    text = "".join(s.stream("March 5, 2021", run.run_id, GenerationSettings(max_new_tokens=8), stats=stats)).strip()
    assert stats.tokens >= 1
    base = lorakit.load_model("tiny-t5", device="cpu")
    alone = PeftModel.from_pretrained(base.model, run.adapter_path).eval()
    enc = base.tokenizer("March 5, 2021", return_tensors="pt")
    with torch.no_grad():
        out = alone.generate(**enc, generation_config=generation_config(base.tokenizer, 8))
    assert text == base.tokenizer.decode(out[0], skip_special_tokens=True).strip()
    st.close()


@pytest.mark.e2e
def test_smollm2_streams_english_in_several_pieces_and_matches_plain_generate(tmp_path):
    from peft import PeftModel

    st = RunStore(tmp_path / "smol.db")
    run = stored_run(st, model="smollm2-135m", scale=0.01)  # a small random update: still English
    s = Session([run.run_id], store=st)
    stats = AnswerStats()
    pieces = list(s.stream("What is the capital of France?", BASE, GenerationSettings(max_new_tokens=12), stats=stats))
    assert len(pieces) >= 3 and "Paris" in "".join(pieces) and stats.tokens >= 3
    plain = lorakit.load_model("smollm2-135m", device="cpu")
    assert "".join(pieces).strip() == _plain_greedy(plain.model, plain.tokenizer, "What is the capital of France?", 12)
    got = s.answer(PROMPT, run.run_id, GenerationSettings(max_new_tokens=12))
    alone = PeftModel.from_pretrained(plain.model, run.adapter_path)
    assert got == _plain_greedy(alone, plain.tokenizer, PROMPT, 12)
    st.close()


def test_set_runs_attaches_and_detaches_adapters_on_the_loaded_base(store, monkeypatch):
    import lorakit.models.loading as loading

    a, b = store.run_ids()
    loads, real = [], loading.load_base
    monkeypatch.setattr(loading, "load_base", lambda *args, **kw: loads.append(1) or real(*args, **kw))
    s = Session([a], store=store)
    settings = GenerationSettings(max_new_tokens=8)
    alone = {r: Session([r], store=store).answer(PROMPT, r, settings) for r in (a, b)}
    del loads[1:]  # the references' own loads
    s.set_runs([a, b], store=store)
    assert s.names == [BASE, a, b] and set(s.memory().adapters) == {a, b}
    assert {r: s.answer(PROMPT, r, settings) for r in (a, b)} == alone
    s.set_runs([b], store=store)
    assert s.names == [BASE, b] and set(s.memory().adapters) == {b}
    assert not any(f".{a}." in n for n, _ in s.model.named_parameters())  # its tensors are gone
    assert s.answer(PROMPT, b, settings) == alone[b]
    s.set_runs([], store=store)  # the last one: the plain base, answering as it
    assert s.names == [BASE] and s.memory().adapters == {} and not hasattr(s.model, "peft_config")
    s.set_runs([a], store=store)
    assert s.answer(PROMPT, a, settings) == alone[a] and len(loads) == 1  # the base was loaded once
    with pytest.raises(ConfigError) as e:
        s.set_runs(["no-such-run"], store=store)
    assert "runs" in e.value.problems and s.names == [BASE, a]  # refused: nothing changed
