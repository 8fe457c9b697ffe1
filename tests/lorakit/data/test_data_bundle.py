"""build_data end to end (bundle, encoding, chat): the chat template, answer-only labels, truncation,
the collator, preview, and user files through to tokens."""
import json

import pytest
from data_support import ROWS, cfg, prompt_len, write

import lorakit
from lorakit import RunConfig
from lorakit.data import IGNORE_INDEX, DataBundle, DataError, build_data, end_of_turn, preview

# --- tasks through to tokens ---------------------------------------------------------------------

def test_same_seed_same_data_other_seed_other_data(tok):
    a, b = build_data(cfg(seed=3), tok), build_data(cfg(seed=3), tok)
    c = build_data(cfg(seed=4), tok)
    assert a.train["input_ids"] == b.train["input_ids"] and a.eval["labels"] == b.eval["labels"]
    assert [r["prompt"] for r in a.eval_raw] == [r["prompt"] for r in b.eval_raw]
    assert a.train["input_ids"] != c.train["input_ids"]
    assert [r["prompt"] for r in a.eval_raw] != [r["prompt"] for r in c.eval_raw]


# --- formatting and labels -------------------------------------------------------------------------

def test_labels_cover_exactly_the_answer_and_end_of_turn(tok):
    bundle = build_data(cfg(), tok)
    assert end_of_turn(tok) == "<|im_end|>"
    assert len(bundle.train) == len(bundle.train_raw) == 24 and bundle.stats["truncated_train"] == 0
    for ex, raw in zip(bundle.train, bundle.train_raw, strict=True):
        n_prompt = prompt_len(tok, raw["messages"])
        labels = ex["labels"]
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert all(lab != IGNORE_INDEX for lab in labels[n_prompt:])
        assert labels[n_prompt:] == ex["input_ids"][n_prompt:]
        assert tok.decode(labels[n_prompt:]) == raw["answer"] + "<|im_end|>"
        assert tok.decode(ex["input_ids"][:n_prompt]).endswith("<|im_start|>assistant\n")
    assert bundle.stats["loss_tokens"] == sum(sum(lab != IGNORE_INDEX for lab in ex) for ex in bundle.train["labels"])
    assert bundle.stats["train_tokens"] == sum(len(x) for x in bundle.train["input_ids"])
    assert set(bundle.train.column_names) == {"input_ids", "attention_mask", "labels"}


def test_truncation_is_counted_and_answerless_examples_dropped(tok):
    base = build_data(cfg(seq_len=4096, train_examples=60), tok)
    full = [len(x) for x in base.train["input_ids"]]
    prompts = [prompt_len(tok, r["messages"]) for r in base.train_raw]

    def counts(n):  # (longer than n, prompt alone fills n)
        return sum(f > n for f in full), sum(p >= n for p in prompts)

    # a length where some examples fit, some are cut inside the answer, some lose the whole answer
    seq_len = next(n for n in range(min(prompts), max(full))
                   if 0 < counts(n)[1] < counts(n)[0] < len(full))
    expect_truncated, expect_dropped = counts(seq_len)

    bundle = build_data(cfg(seq_len=seq_len, train_examples=60), tok)
    s = bundle.stats
    assert s["truncated_train"] == expect_truncated
    assert s["dropped_train"] == expect_dropped
    assert s["n_train"] == len(bundle.train) == len(full) - expect_dropped
    assert any("truncated" in note for note in s["notes"])
    for ex in bundle.train:
        assert len(ex["input_ids"]) <= seq_len
        assert any(lab != IGNORE_INDEX for lab in ex["labels"])  # something left to learn
        assert [lab for lab in ex["labels"] if lab != IGNORE_INDEX] == \
            [i for i, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX]
    # a truncated example keeps the start of its prompt
    kept = [i for i, p in enumerate(prompts) if p < seq_len]
    first = bundle.train[0]["input_ids"]
    assert first == base.train[kept[0]]["input_ids"][:len(first)]


def test_nothing_fits_is_a_clear_error(tok):
    """It says how long the prompts and examples are with this tokenizer: how far to raise seq_len."""
    whole = build_data(cfg(seq_len=4096), tok)
    prompts = [prompt_len(tok, r["messages"]) for r in whole.train_raw]
    with pytest.raises(DataError) as err:
        build_data(cfg(seq_len=8), tok)
    assert str(err.value) == (
        f"dataset: no training example fits in seq_len=8 tokens: with this model's tokenizer the prompts alone "
        f"take {min(prompts)}-{max(prompts)} tokens, so all 24 answers were truncated away; raise seq_len "
        f"({whole.stats['max_len']} keeps every example whole)")


def test_collator_pads_dynamically_to_the_longest_in_batch(tok):
    bundle = build_data(cfg(dataset="sort-words"), tok)
    feats = [bundle.train[i] for i in range(6)]
    lengths = [len(f["input_ids"]) for f in feats]
    assert len(set(lengths)) > 1
    batch = bundle.collator(feats)
    assert batch["input_ids"].shape == (6, max(lengths))
    assert batch["labels"].shape == (6, max(lengths))
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].sum().item() == n
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
    shorter = bundle.collator(sorted(feats, key=lambda f: len(f["input_ids"]))[:2])
    assert shorter["input_ids"].shape[1] == sorted(lengths)[1] < max(lengths)


def test_preview_flags_match_labels(tok):
    bundle = build_data(cfg(), tok)
    rows = preview(bundle, tok, n=2)
    assert len(rows) == 2
    for row, ex in zip(rows, bundle.train, strict=False):  # the first two
        assert [flag for _, flag in row] == [lab != IGNORE_INDEX for lab in ex["labels"]]
        assert "".join(text for text, _ in row) == tok.decode(ex["input_ids"])
    from_cfg = preview(cfg(), tok, n=1)
    assert from_cfg[0] == rows[0]


# --- user data ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_user_file_round_trip(tmp_path, tok, kind):
    path = write(tmp_path / f"data.{kind}", ROWS, kind)
    bundle = build_data(cfg(dataset=path, eval_examples=5, train_examples=100), tok)
    assert bundle.task is None and bundle.stats["n_eval"] == 5 and bundle.stats["n_train"] == 15
    got = ([(r["prompt"], r["answer"]) for r in bundle.train_raw]
           + [(r["prompt"], r["reference"]) for r in bundle.eval_raw])
    assert sorted(got) == sorted((r["prompt"], r["completion"]) for r in ROWS)
    ex, raw = bundle.train[0], bundle.train_raw[0]
    n_prompt = prompt_len(tok, raw["messages"])
    assert tok.decode(ex["labels"][n_prompt:]) == raw["answer"] + "<|im_end|>"
    # the split is deterministic in the seed
    again = build_data(cfg(dataset=path, eval_examples=5, train_examples=100), tok)
    other = build_data(cfg(dataset=path, eval_examples=5, train_examples=100, seed=1), tok)
    assert again.eval_raw == bundle.eval_raw and other.eval_raw != bundle.eval_raw


def test_user_file_is_capped_and_small_files_shrink_eval(tmp_path, tok):
    path = write(tmp_path / "d.jsonl", ROWS, "jsonl")
    capped = build_data(cfg(dataset=path, train_examples=4, eval_examples=3), tok)
    assert (capped.stats["n_train"], capped.stats["n_eval"]) == (4, 3)
    small = build_data(cfg(dataset=path, eval_examples=50), tok)
    assert small.stats["n_eval"] == 10 and small.stats["n_train"] == 10
    assert any("eval_examples reduced" in n for n in small.stats["notes"])


def test_messages_format_last_assistant_turn_is_the_answer(tmp_path, tok):
    convs = [{"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"Hi {i}"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": f"Double {i}?"},
        {"role": "assistant", "content": str(2 * i)},
        {"role": "user", "content": "trailing turn, ignored"},
    ]} for i in range(10)]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in convs))
    bundle = build_data(cfg(dataset=str(path), eval_examples=2), tok)
    for ex, raw in zip(bundle.train, bundle.train_raw, strict=True):
        i = int(raw["prompt"].split()[1].rstrip("?"))
        assert raw["answer"] == str(2 * i) and len(raw["messages"]) == 4
        assert raw["messages"][0]["content"] == "You are terse."
        n_prompt = prompt_len(tok, raw["messages"])
        assert tok.decode(ex["labels"][n_prompt:]) == str(2 * i) + "<|im_end|>"
        text = tok.decode(ex["input_ids"])
        assert "Hello." in text and "trailing turn" not in text  # earlier turns are context, no loss
        assert text.startswith("<|im_start|>system\nYou are terse.")


@pytest.mark.e2e
def test_smollm2_labels_and_lengths():
    tok = lorakit.load_model("smollm2-135m").tokenizer
    bundle = build_data(RunConfig(), tok)
    s = bundle.stats
    assert (s["n_train"], s["n_eval"]) == (512, RunConfig.eval_examples) == (512, 16)
    assert s["truncated_train"] == 0 and s["max_len"] <= 128  # the default task fits the default seq_len
    for ex, raw in zip(bundle.train.select(range(5)), bundle.train_raw, strict=False):  # the first five
        n_prompt = prompt_len(tok, raw["messages"])
        assert tok.decode(ex["labels"][n_prompt:]) == raw["answer"] + "<|im_end|>"
        assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert isinstance(bundle, DataBundle)
