"""The text-to-text built-in task ``headline``: seeded generation, the headline copied from the sentence,
its check, which models it is offered to, and a tiny-t5 run scored by exact match and token F1."""
import random

import pytest

import lorakit
from lorakit.data import DataError, build_data, generate_examples, get_task, list_tasks, tasks_for
from lorakit.data.tasks import headline


def test_generation_is_deterministic_in_the_seed_and_train_never_meets_eval():
    first = generate_examples("headline", 300, 50, seed=0)
    assert first == generate_examples("headline", 300, 50, seed=0)
    other = generate_examples("headline", 300, 50, seed=1)
    assert [r["prompt"] for r in other[0]] != [r["prompt"] for r in first[0]]
    train, ev = first
    assert len({r["prompt"] for r in train}) == 300 and not {r["prompt"] for r in train} & {r["prompt"] for r in ev}
    assert len({r["answer"] for r in train}) > 250  # many facts, not a few memorisable headlines


def test_the_headline_is_the_facts_words_in_order_without_filler_or_articles():
    train, _ = generate_examples("headline", 300, 0, seed=0)
    starts = set()
    for r in train:
        assert r["prompt"].startswith(headline.PREFIX)
        sentence = headline.words(r["prompt"][len(headline.PREFIX):])
        answer = r["answer"].split()
        assert not {"a", "an", "the"} & set(answer) and 3 <= len(answer) <= 7
        it = iter(sentence)
        assert all(w in it for w in answer), r  # a subsequence of the sentence's words: copied, in order
        assert not any(w in r["answer"] for w in ("quietly", "finally", "Monday", "Lisbon", "officials"))
        starts.add(sentence.index(answer[0]))
    assert len(starts) > 8  # the fact sits at many places in the sentence, filler before it or after it


def test_check_compares_words_in_order_ignoring_case_and_punctuation():
    ref = "city council approved new bike lane"
    assert headline.check("City council approved new bike lane.", ref) == {"correct": True, "missing": [],
                                                                          "extra": []}
    wrong = headline.check("council approved the new bike lane", ref)
    assert wrong == {"correct": False, "missing": ["city"], "extra": ["the"]}
    assert not headline.check("new bike lane approved city council", ref)["correct"]  # same words, other order
    assert not headline.check("", ref)["correct"]
    info = get_task("headline")
    assert info.score(["city council approved new bike lane", "mayor opened"], [ref, ref]) == 0.5
    ex = info.example()
    assert info.check(ex["answer"], ex["answer"])["correct"]


def test_it_is_offered_first_to_encoder_decoders_and_not_to_decoders_or_encoders():
    info = get_task("headline")
    assert (info.kind, info.metric) == ("seq2seq", "exact match (and token F1)")
    assert [t.name for t in list_tasks("seq2seq")] == ["headline"]
    seq2seq = [t.name for t in tasks_for("seq2seq")]
    assert seq2seq[0] == "headline" and {"extract-json", "date-iso"} <= set(seq2seq) and "topic" not in seq2seq
    assert "headline" not in [t.name for t in tasks_for("causal-lm")]
    assert [t.name for t in tasks_for("classification")] == ["topic"]
    assert "headline" in [t.name for t in tasks_for("")]


def test_a_decoder_trains_it_when_named_and_a_classifier_refuses_it(tok):
    bundle = build_data(lorakit.RunConfig(model="tiny-llama", dataset="headline", train_examples=4,
                                          eval_examples=2), tok)
    assert bundle.kind == "causal-lm" and bundle.task.name == "headline"  # prompt and answer in the chat template
    with pytest.raises(DataError, match=r"^dataset: built-in task 'headline' is seq2seq data.*fit: topic"):
        build_data(lorakit.RunConfig(model="tiny-llama", dataset="headline"), tok, "classification")


def test_a_tiny_t5_run_is_scored_by_exact_match_and_token_f1():
    run = lorakit.train(lorakit.RunConfig(model="tiny-t5", dataset="headline", max_steps=2, batch_size=2,
                                          train_examples=8, eval_examples=2), store=False)
    assert run.status == "finished", run.reason
    assert (run.task, run.metric) == ("seq2seq", "exact match (and token F1)")
    assert run.task_metric is not None and run.task_metric_before is not None
    assert 0 <= run.token_f1 <= 1 and 0 <= run.token_f1_before <= 1
    assert all(s["prompt"].startswith(headline.PREFIX) for s in run.samples)


def test_examples_vary_with_the_random_stream():
    made = {headline.make(random.Random(i)) for i in range(200)}
    assert len(made) == 200
