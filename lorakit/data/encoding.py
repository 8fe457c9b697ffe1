"""Rows to token ids with answer-only labels, cut to ``seq_len``, and the collator that pads them.

Labels are ``IGNORE_INDEX`` on the prompt: the loss covers the answer and its end-of-turn token
only. An example longer than ``seq_len`` is truncated from the end (the prompt start is kept); one
whose answer is cut away entirely has nothing to learn from and is dropped. Both are counted.

Classification (``encode_labelled``): the text alone, with the tokenizer's own special tokens
(BERT's [CLS] ... [SEP]: the classifier reads [CLS]), and one integer label per example (the
label's index in the classifier's output order); a long text is truncated and counted, never dropped.
"""
from __future__ import annotations

from typing import Optional

from lorakit.common.quiet import progress_bars_off
from lorakit.data.chat import end_of_turn, prompt_text

IGNORE_INDEX = -100  # label value the loss ignores (PyTorch's cross_entropy default)


def encode_example(tokenizer, messages: list, answer: str, seq_len: int, eot: Optional[str] = None) -> dict:
    """Token ids and answer-only labels for one example, truncated to ``seq_len``.

    Returns input_ids, attention_mask, labels, plus ``truncated`` (the example was longer than
    seq_len) and ``answer_tokens`` (answer tokens left after truncation; 0 means drop it).
    """
    return {k: v[0] for k, v in encode_examples(tokenizer, [messages], [answer], seq_len, eot).items()}


def encode_examples(tokenizer, messages: list, answers: list, seq_len: int, eot: Optional[str] = None) -> dict:
    """``encode_example`` for many examples at once, as columns (one list per key): the prompts and the
    answers each go through the tokenizer as one batch (a fast tokenizer's ``encode_batch``: 512 examples in
    ~0.1 s, where one call per example took ~0.5 s)."""
    out = {k: [] for k in ("input_ids", "attention_mask", "labels", "truncated", "answer_tokens")}
    if not messages:
        return out
    eot = end_of_turn(tokenizer) if eot is None else eot
    prompts = tokenizer([prompt_text(tokenizer, m) for m in messages], add_special_tokens=False)["input_ids"]
    replies = tokenizer([a + eot for a in answers], add_special_tokens=False)["input_ids"]
    for p_ids, a_ids in zip(prompts, replies, strict=True):
        ids, labels = p_ids + a_ids, [IGNORE_INDEX] * len(p_ids) + list(a_ids)
        out["truncated"].append(len(ids) > seq_len)
        ids, labels = ids[:seq_len], labels[:seq_len]
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
        out["answer_tokens"].append(sum(label != IGNORE_INDEX for label in labels))
    return out


def encode_rows(tokenizer, rows: list[dict], seq_len: int, eot: Optional[str] = None):
    """Rows as a ``datasets.Dataset`` (input_ids, attention_mask, labels) without the examples that
    lost their whole answer: (dataset, how many were truncated, how many dropped)."""
    import datasets

    enc = encode_examples(tokenizer, [r["messages"] for r in rows], [r["answer"] for r in rows], seq_len, eot)
    keep = [i for i, n in enumerate(enc["answer_tokens"]) if n > 0]
    # the column types datasets' own map gives a tokenizer's output (and an empty set too)
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "attention_mask": datasets.Sequence(datasets.Value("int8")),
                                  "labels": datasets.Sequence(datasets.Value("int64"))})
    with progress_bars_off("datasets"):
        data = datasets.Dataset.from_dict({k: [enc[k][i] for i in keep] for k in features}, features=features)
    return data, sum(enc["truncated"]), len(rows) - len(keep)


def encode_labelled(tokenizer, rows: list[dict], seq_len: int, labels: tuple):
    """Classification rows as a ``datasets.Dataset`` (input_ids, attention_mask, labels: one int each):
    (dataset, how many were truncated, 0 dropped). A row whose label is not in ``labels`` is a DataError."""
    import datasets

    from lorakit.data.rows import DataError

    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({r["answer"] for r in rows} - set(index))
    if unknown:
        raise DataError(f"dataset: label(s) {', '.join(map(repr, unknown[:5]))} are not among the classifier's "
                        f"labels {', '.join(map(repr, labels))}")
    with progress_bars_off("datasets"):
        enc = tokenizer([r["prompt"] for r in rows], truncation=False)
        truncated = sum(len(ids) > seq_len for ids in enc["input_ids"])
        enc = tokenizer([r["prompt"] for r in rows], truncation=True, max_length=seq_len)
        data = datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                           "labels": [index[r["answer"]] for r in rows]})
    return data, truncated, 0


def encode_seq2seq(tokenizer, rows: list[dict], seq_len: int):
    """Text-to-text rows for an encoder-decoder (T5): the prompt's plain text as the encoder's input (no chat
    template: generation feeds the same text), the answer and EOS as the labels (the model shifts them into
    the decoder's input), each cut to ``seq_len``: (dataset, how many were truncated, 0 dropped)."""
    import datasets

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    inputs = tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    answers = [ids + eos for ids in tokenizer([r["answer"] for r in rows], add_special_tokens=False)["input_ids"]]
    truncated = sum(len(i) > seq_len or len(a) > seq_len for i, a in zip(inputs, answers, strict=True))
    with progress_bars_off("datasets"):
        data = datasets.Dataset.from_dict({"input_ids": [i[:seq_len] for i in inputs],
                                           "attention_mask": [[1] * len(i[:seq_len]) for i in inputs],
                                           "labels": [a[:seq_len] for a in answers]})
    return data, truncated, 0


def make_collator(tokenizer, kind: str = "causal-lm"):
    """Pads each batch to its own longest example (dynamic padding); labels are padded with
    ``IGNORE_INDEX``, so padding carries no loss (classification: one label per example, nothing to pad).
    The tokenizer needs a pad token."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    if kind == "classification":
        return DataCollatorWithPadding(tokenizer, padding=True)

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX,
                                  pad_to_multiple_of=None)
