"""``build_data``: a run's dataset resolved, split, formatted and tokenized into a ``DataBundle``;
``preview``: its first examples token by token, with the tokens that carry loss flagged."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from lorakit.data.chat import end_of_turn
from lorakit.data.encoding import (
    IGNORE_INDEX,
    encode_examples,
    encode_labelled,
    encode_rows,
    encode_seq2seq,
    make_collator,
)
from lorakit.data.rows import DataError
from lorakit.data.sources import Source, load_rows, split_rows
from lorakit.data.tasks import TaskInfo, generate_examples, tasks_for


@dataclass
class DataBundle:
    """Tokenized train/eval sets, the raw eval examples for generation, the collator and counts."""
    train: Any  # datasets.Dataset: input_ids, attention_mask, labels
    eval: Any  # datasets.Dataset: input_ids, attention_mask, labels
    eval_raw: list  # [{prompt, answer, reference, messages}] for generation and the task metric
    collator: Any  # transformers DataCollatorForSeq2Seq: dynamic padding, labels padded with -100
    task: Optional[TaskInfo]  # None for user data
    stats: dict = field(default_factory=dict)
    train_raw: list = field(default_factory=list, repr=False)  # [{prompt, answer, messages}]
    source: str = ""
    kind: str = "causal-lm"  # the model task the data is encoded for: 'causal-lm', 'classification', 'seq2seq'
    labels: tuple = ()  # classification: label names in the classifier's output order (labels are their index)


def build_data(cfg, tokenizer, task_kind: str = "") -> DataBundle:
    """Load or generate ``cfg.dataset``, split it, format with the chat template and tokenize.

    ``task_kind``: the model task the run trains (a loaded model's ``task``; '' : ``cfg.resolved_task()``,
    else the data's own kind); data of another kind is a DataError naming what fits."""
    found = load_rows(cfg.dataset, cfg.data_encoding, cfg.on_bad_rows)
    task_kind = task_kind or cfg.resolved_task()
    check_kind(found, task_kind)
    if found.kind == "classification":
        return _build_labelled(cfg, tokenizer, found)
    if task_kind == "seq2seq":
        return _build_labelled(cfg, tokenizer, found, "seq2seq")
    rows, task, source, skipped = found
    if tokenizer.pad_token is None:  # the collator pads; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    notes = [skipped.note()] if skipped.count else []
    if task is not None:
        train_rows, eval_rows = generate_examples(task.name, cfg.train_examples, cfg.eval_examples, cfg.seed)
    else:
        train_rows, eval_rows, note = split_rows(rows, cfg.train_examples, cfg.eval_examples, cfg.seed, skipped)
        if note:
            notes.append(note)

    eot = end_of_turn(tokenizer)
    train, train_truncated, train_dropped = encode_rows(tokenizer, train_rows, cfg.seq_len, eot)
    eval_set, eval_truncated, eval_dropped = encode_rows(tokenizer, eval_rows, cfg.seq_len, eot)
    if len(train) == 0:
        raise DataError(_nothing_fits(tokenizer, train_rows, cfg.seq_len, eot))
    if train_truncated or eval_truncated:
        notes.append(f"{train_truncated} train and {eval_truncated} eval examples were longer than "
                     f"seq_len={cfg.seq_len} and were truncated ({train_dropped} + {eval_dropped} "
                     "dropped: nothing of the answer was left)")
    columns = train[:]  # every row's lists at once (a column read row by row formats each row: ~10x slower)
    train_lengths = [len(x) for x in columns["input_ids"]]
    stats = {
        "source": source,
        "format": found.format_label,  # the user data's format as detected from its columns ("" for a task)
        "n_train": len(train),
        "n_eval": len(eval_set),
        "truncated_train": train_truncated,
        "truncated_eval": eval_truncated,
        "dropped_train": train_dropped,
        "dropped_eval": eval_dropped,
        "train_tokens": sum(train_lengths),
        "loss_tokens": sum(sum(1 for t in lab if t != IGNORE_INDEX) for lab in columns["labels"]),
        "max_len": max(train_lengths),
        "mean_len": sum(train_lengths) / len(train_lengths),
        "seq_len": cfg.seq_len,
        "skipped_rows": skipped.count,  # on_bad_rows='skip': bad rows left out, and where the first were
        "skipped_at": list(skipped.first),
        "notes": notes,
    }
    eval_raw = [{"prompt": r["prompt"], "answer": r["answer"], "reference": r["answer"], "messages": r["messages"]}
                for r in eval_rows]
    return DataBundle(train, eval_set, eval_raw, make_collator(tokenizer), task, stats, train_rows, source)


def check_kind(found: Source, task_kind: str) -> None:
    """Refuse data of another kind than the run's task, naming ``dataset`` and the built-in tasks that fit."""
    if not task_kind or found.kind == task_kind or {found.kind, task_kind} <= {"causal-lm", "seq2seq"}:
        return  # text-to-text data (a prompt, an answer) trains a decoder or an encoder-decoder
    fits = ", ".join(t.name for t in tasks_for(task_kind))
    fits = f"built-in tasks that fit: {fits}" if fits else f"no built-in task trains {task_kind} yet"
    shape = ("a file with 'text' and 'label' columns" if task_kind == "classification"
             else "a file with 'prompt' and 'completion' (or 'messages') columns")
    raise DataError(f"dataset: {found.description} is {found.kind} data, but this run trains a {task_kind} model "
                    f"(task={task_kind!r}); use {fits}, or {shape}")


def _build_labelled(cfg, tokenizer, found: Source, kind: str = "classification") -> DataBundle:
    """A classification dataset (the text and one label per example), or text-to-text data for an
    encoder-decoder (``kind='seq2seq'``: the prompt, the answer as labels); no chat template, nothing dropped."""
    rows, task, source, skipped = found
    labels = found.labels()
    notes = [skipped.note()] if skipped.count else []
    if task is not None:
        train_rows, eval_rows = generate_examples(task.name, cfg.train_examples, cfg.eval_examples, cfg.seed)
    else:
        train_rows, eval_rows, note = split_rows(rows, cfg.train_examples, cfg.eval_examples, cfg.seed, skipped)
        notes += [note] if note else []
    if kind == "seq2seq":
        train, train_truncated, _ = encode_seq2seq(tokenizer, train_rows, cfg.seq_len)
        eval_set, eval_truncated, _ = encode_seq2seq(tokenizer, eval_rows, cfg.seq_len)
    else:
        train, train_truncated, _ = encode_labelled(tokenizer, train_rows, cfg.seq_len, labels)
        eval_set, eval_truncated, _ = encode_labelled(tokenizer, eval_rows, cfg.seq_len, labels)
    if train_truncated or eval_truncated:
        notes.append(f"{train_truncated} train and {eval_truncated} eval texts were longer than seq_len={cfg.seq_len} "
                     "and were truncated (their label stays)")
    lengths = [len(x) for x in train["input_ids"]]
    stats = {"source": source, "format": found.format_label,
             "n_train": len(train), "n_eval": len(eval_set), "truncated_train": train_truncated,
             "truncated_eval": eval_truncated, "dropped_train": 0, "dropped_eval": 0, "train_tokens": sum(lengths),
             "loss_tokens": len(train) if kind == "classification" else sum(map(len, train["labels"])),
             "max_len": max(lengths), "mean_len": sum(lengths) / len(lengths), "seq_len": cfg.seq_len,
             "skipped_rows": skipped.count, "skipped_at": list(skipped.first), "notes": notes,
             "labels": list(labels)}
    eval_raw = [{"prompt": r["prompt"], "answer": r["answer"], "reference": r["answer"], "messages": r["messages"]}
                for r in eval_rows]
    return DataBundle(train, eval_set, eval_raw, make_collator(tokenizer, kind), task, stats, train_rows,
                      source, kind, labels)


def _nothing_fits(tokenizer, rows: list, seq_len: int, eot: str) -> str:
    """Why no example can train, with the lengths this tokenizer gives them: how far to raise seq_len."""
    whole = encode_examples(tokenizer, [r["messages"] for r in rows], [r["answer"] for r in rows], 1 << 30, eot)
    prompts = [labels.count(IGNORE_INDEX) for labels in whole["labels"]]
    longest = max(map(len, whole["input_ids"]))
    return (f"dataset: no training example fits in seq_len={seq_len} tokens: with this model's tokenizer the "
            f"prompts alone take {min(prompts)}-{max(prompts)} tokens, so all {len(rows)} answers were truncated "
            f"away; raise seq_len ({longest} keeps every example whole)")


def preview(bundle_or_cfg, tokenizer, n: int = 3) -> list[list[tuple[str, bool]]]:
    """The first ``n`` training examples as (token text, carries loss) pairs; given a config, only
    those ``n`` are built."""
    bundle = bundle_or_cfg if isinstance(bundle_or_cfg, DataBundle) else build_data(
        bundle_or_cfg.replace(train_examples=min(n, bundle_or_cfg.train_examples)), tokenizer)
    out = []
    for ex in bundle.train.select(range(min(n, len(bundle.train)))):
        if bundle.kind == "classification":  # no token carries loss; the label does, shown after the text
            out.append([(tokenizer.decode([i]), False) for i in ex["input_ids"]]
                       + [(f" -> {bundle.labels[ex['labels']]}", True)])
            continue
        if bundle.kind == "seq2seq":  # the encoder's input, then the decoder's targets (all carry loss)
            out.append([(tokenizer.decode([i]), False) for i in ex["input_ids"]]
                       + [(tokenizer.decode([i]), True) for i in ex["labels"]])
            continue
        out.append([(tokenizer.decode([i]), label != IGNORE_INDEX)
                    for i, label in zip(ex["input_ids"], ex["labels"], strict=True)])
    return out
