"""Data: built-in tasks, user files, chat template, answer-only labels, truncation, collator."""
import json

import pandas as pd
import pytest

import lorakit
from lorakit import RunConfig
from lorakit.data import (IGNORE_INDEX, DataBundle, DataError, build_data, end_of_turn, generate_examples,
                          list_tasks, preview, preview_html, prompt_text)


@pytest.fixture(scope="module")
def tok():
    return lorakit.load_model("tiny-llama").tokenizer


def cfg(**kw):
    kw.setdefault("model", "tiny-llama")
    kw.setdefault("train_examples", 24)
    kw.setdefault("eval_examples", 8)
    kw.setdefault("seq_len", 512)  # the tiny tokenizer is byte-level: ~300 tokens
    return RunConfig(**kw)


def prompt_len(tok, messages):
    return len(tok(prompt_text(tok, messages), add_special_tokens=False)["input_ids"])


# --- tasks -----------------------------------------------------------------------------------------

def test_list_tasks_has_default_and_a_second_skill():
    tasks = {t.name: t for t in list_tasks()}
    assert list_tasks()[0].name == RunConfig().dataset == "extract-json"
    assert {"extract-json", "date-iso", "sort-words", "arithmetic"} <= set(tasks)
    for t in tasks.values():
        assert t.description and t.metric
        ex = t.example()
        assert ex["prompt"] and ex["answer"]
        assert t.check(ex["answer"], ex["answer"])["correct"]  # the reference scores itself as correct


def test_extract_json_examples_are_valid_and_varied():
    import re

    from lorakit.data import number_words

    train, _ = generate_examples("extract-json", 300, 0, seed=0)
    kinds = {"words": 0, "tomorrow": 0, "surname_first": 0, "title": 0, "distractor_city": 0}
    for r in train:
        obj = json.loads(r["answer"])
        text = r["prompt"].split("\n", 1)[1]
        assert list(obj) == ["name", "age", "city"] and isinstance(obj["age"], int)
        first, last = obj["name"].split()[0], obj["name"].split()[-1]
        assert first in text and last.lower() in text.lower() and obj["city"] in text
        if "tomorrow" in text.lower():
            kinds["tomorrow"] += 1
            assert str(obj["age"] + 1) in text  # "turns 35 tomorrow" -> 34
        elif number_words(obj["age"]) in text.lower():
            kinds["words"] += 1
        else:
            assert re.search(rf"\b{obj['age']}\b", text)
        kinds["surname_first"] += f"{last}, " in text or f"{last.upper()}, " in text
        kinds["title"] += text.count("Dr. ") + text.count("Prof. ")
        kinds["distractor_city"] += sum(c in text for c in lorakit.data._CITIES) > 1
    assert all(n >= 15 for n in kinds.values()), kinds  # every harder shape is well represented
    sentences = [r["prompt"].split("\n", 1)[1] for r in train]
    assert len({s.split()[0] for s in sentences}) > 30  # many templates and names, not one shape
    assert sum(len(re.findall(r"\d+", s)) > 1 for s in sentences) > 50  # distractor numbers


def test_same_seed_same_data_other_seed_other_data(tok):
    a, b = build_data(cfg(seed=3), tok), build_data(cfg(seed=3), tok)
    c = build_data(cfg(seed=4), tok)
    assert a.train["input_ids"] == b.train["input_ids"] and a.eval["labels"] == b.eval["labels"]
    assert [r["prompt"] for r in a.eval_raw] == [r["prompt"] for r in b.eval_raw]
    assert a.train["input_ids"] != c.train["input_ids"]
    assert [r["prompt"] for r in a.eval_raw] != [r["prompt"] for r in c.eval_raw]


@pytest.mark.parametrize("task", ["extract-json", "date-iso", "sort-words", "arithmetic"])
def test_train_and_eval_never_overlap(task):
    train, ev = generate_examples(task, 400, 64, seed=0)
    assert len(train) == 400 and len(ev) == 64
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in ev}
    assert len({r["prompt"] for r in train}) == 400  # no duplicates either


def test_date_iso_answers_are_the_dates_written():
    import datetime
    import re

    train, _ = generate_examples("date-iso", 200, 0, seed=0)
    shapes = set()
    for r in train:
        day = datetime.date.fromisoformat(r["answer"])
        text = r["prompt"].split("\n", 1)[1]
        assert str(day.year) in text and str(day.day) in text
        month = day.strftime("%B")
        assert month in text or month[:3] in text
        for weekday in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
            if weekday in text:
                assert weekday == day.strftime("%A")  # a weekday, when given, is the true one
        shape = re.sub(r"\d+(st|nd|rd|th)?", "N", text).replace(day.strftime("%A"), "W").replace(month, "M")
        shapes.add(shape.replace(month[:3], "m"))
    assert len(shapes) == 10, shapes  # every way of writing a date occurs


def test_eval_set_does_not_depend_on_train_size():
    _, ev_small = generate_examples("extract-json", 10, 16, seed=1)
    _, ev_big = generate_examples("extract-json", 300, 16, seed=1)
    assert ev_small == ev_big


# --- formatting and labels -------------------------------------------------------------------------

def test_labels_cover_exactly_the_answer_and_end_of_turn(tok):
    bundle = build_data(cfg(), tok)
    assert end_of_turn(tok) == "<|im_end|>"
    assert len(bundle.train) == len(bundle.train_raw) == 24 and bundle.stats["truncated_train"] == 0
    for ex, raw in zip(bundle.train, bundle.train_raw):
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
            [i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    # a truncated example keeps the start of its prompt
    kept = [i for i, p in enumerate(prompts) if p < seq_len]
    first = bundle.train[0]["input_ids"]
    assert first == base.train[kept[0]]["input_ids"][:len(first)]


def test_nothing_fits_is_a_clear_error(tok):
    with pytest.raises(DataError, match="seq_len"):
        build_data(cfg(seq_len=8), tok)


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


def test_preview_flags_match_labels_and_html_highlights(tok):
    bundle = build_data(cfg(), tok)
    rows = preview(bundle, tok, n=2)
    assert len(rows) == 2
    for row, ex in zip(rows, bundle.train):
        assert [flag for _, flag in row] == [lab != IGNORE_INDEX for lab in ex["labels"]]
        assert "".join(text for text, _ in row) == tok.decode(ex["input_ids"])
    html = preview_html(bundle, tok, n=2)
    assert html.count("background:#ffd54f") - 1 == sum(flag for row in rows for _, flag in row)  # -1: legend
    assert "&lt;|im_end|&gt;" in html and "<|im_end|>" not in html
    from_cfg = preview(cfg(), tok, n=1)
    assert from_cfg[0] == rows[0]


# --- user data ---------------------------------------------------------------------------------------

ROWS = [{"prompt": f"Say the number {i} in words.", "completion": f"number {i}"} for i in range(20)]


def write(path, rows, kind):
    df = pd.DataFrame(rows)
    if kind == "jsonl":
        df.to_json(path, orient="records", lines=True)
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_user_file_round_trip(tmp_path, tok, kind):
    path = write(tmp_path / f"data.{kind}", ROWS, kind)
    bundle = build_data(cfg(dataset=path, eval_examples=5, train_examples=100), tok)
    assert bundle.task is None and bundle.stats["n_eval"] == 5 and bundle.stats["n_train"] == 15
    got = [(r["prompt"], r["answer"]) for r in bundle.train_raw] + [(r["prompt"], r["reference"]) for r in bundle.eval_raw]
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
    for ex, raw in zip(bundle.train, bundle.train_raw):
        i = int(raw["prompt"].split()[1].rstrip("?"))
        assert raw["answer"] == str(2 * i) and len(raw["messages"]) == 4
        assert raw["messages"][0]["content"] == "You are terse."
        n_prompt = prompt_len(tok, raw["messages"])
        assert tok.decode(ex["labels"][n_prompt:]) == str(2 * i) + "<|im_end|>"
        text = tok.decode(ex["input_ids"])
        assert "Hello." in text and "trailing turn" not in text  # earlier turns are context, no loss
        assert text.startswith("<|im_start|>system\nYou are terse.")


def test_messages_without_assistant_turn(tmp_path, tok):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="assistant"):
        build_data(cfg(dataset=str(path)), tok)


def test_missing_columns_names_found_and_expected(tmp_path, tok):
    path = write(tmp_path / "qa.csv", [{"question": "q", "answer": "a"}] * 3, "csv")
    with pytest.raises(DataError) as err:
        build_data(cfg(dataset=path), tok)
    msg = str(err.value)
    assert msg.startswith("dataset:")
    for name in ("'question'", "'answer'", "'prompt'", "'completion'", "'messages'"):
        assert name in msg


@pytest.mark.parametrize("content", ["", "prompt,completion\n"])
def test_empty_file(tmp_path, tok, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="empty"):
        build_data(cfg(dataset=str(path)), tok)


def test_unreadable_and_missing_files(tmp_path, tok):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="could not read"):
        build_data(cfg(dataset=str(bad)), tok)
    with pytest.raises(DataError, match="not found"):
        build_data(cfg(dataset=str(tmp_path / "nope.jsonl")), tok)
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        build_data(cfg(dataset=str(odd)), tok)


def test_unknown_task_lists_tasks(tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        build_data(cfg(dataset="extract-jsn"), tok)
    msg = str(err.value)
    assert "dataset" in msg and "did you mean 'extract-json'" in msg
    for t in list_tasks():
        assert t.name in msg


def test_hub_dataset_fails_fast_without_internet(tok, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    with pytest.raises(DataError) as err:
        build_data(cfg(dataset="someone/some-dataset"), tok)
    msg = str(err.value)
    assert "could not download dataset 'someone/some-dataset' from the Hugging Face Hub" in msg
    assert "extract-json" in msg and "local file" in msg


@pytest.mark.e2e
def test_smollm2_labels_and_lengths():
    tok = lorakit.load_model("smollm2-135m").tokenizer
    bundle = build_data(RunConfig(), tok)
    s = bundle.stats
    assert (s["n_train"], s["n_eval"]) == (512, 32)
    assert s["truncated_train"] == 0 and s["max_len"] <= 128  # the default task fits the default seq_len
    for ex, raw in zip(bundle.train.select(range(5)), bundle.train_raw):
        n_prompt = prompt_len(tok, raw["messages"])
        assert tok.decode(ex["labels"][n_prompt:]) == raw["answer"] + "<|im_end|>"
        assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert isinstance(bundle, DataBundle)
