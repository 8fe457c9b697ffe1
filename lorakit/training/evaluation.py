"""Generation and task metrics: greedy, batched, left-padded, quiet.

``generate`` works on a plain transformers model, a peft model and a bitsandbytes-quantized base;
it leaves the model in the train/eval mode it found. ``evaluate_task`` generates answers for a
bundle's held-out examples and scores them with the task's own metric; for a classification bundle it
predicts each example's label instead (``classify``: the argmax of the classifier's logits), scored by
accuracy, with ``macro_f1`` beside it.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Optional, Sequence, Union

import torch
from accelerate.utils import find_executable_batch_size

from lorakit.common.devices import model_device
from lorakit.data import DataBundle, DataError, end_of_turn, get_task, prompt_text
from lorakit.models.dense_4bit import dense_4bit

Messages = list  # [{"role": ..., "content": ...}]
# Prompts per generate() call. On a 2-core CPU, 32 eval prompts of SmolLM2 took 46.7 s in batches of 8 and
# 23.8 s in one batch of 32: each decoding step reads every weight once, whatever the batch. Where a batch
# does not fit, accelerate's find_executable_batch_size halves it and tries again.
GENERATION_BATCH = 32


def stop_ids(tokenizer) -> list[int]:
    """EOS plus the chat template's end-of-turn token, so generation stops at the end of the answer."""
    ids = []
    for text in (tokenizer.eos_token, end_of_turn(tokenizer)):
        if not text:
            continue
        tid = tokenizer.convert_tokens_to_ids(text)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def generation_config(tokenizer, max_new_tokens: int = 64):
    """Greedy decoding with no sampling knobs set (so transformers has nothing to warn about)."""
    from transformers import GenerationConfig

    stop = stop_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                            temperature=None, top_p=None, top_k=None, use_cache=True,
                            pad_token_id=pad, eos_token_id=stop or None)


@contextlib.contextmanager
def quiet_generation():
    """Silence per-call chatter: bitsandbytes' int8 cast warning, transformers' generation notes."""
    loggers = [logging.getLogger(n) for n in ("transformers.generation.utils",
                                              "transformers.generation.configuration_utils",
                                              "bitsandbytes.autograd._functions")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def generate(model, tokenizer, prompts_or_messages: Sequence[Union[str, Messages]], max_new_tokens: int = 64,
             batch_size: int = GENERATION_BATCH, chat: bool = True) -> list[str]:
    """Greedy answers, one string per prompt (new tokens only, special tokens removed).

    Each item is a user message (``str``) or a conversation (list of ``{role, content}``); the
    tokenizer's chat template turns it into the same prompt text training used. With
    ``chat=False`` strings are fed verbatim. Batched by similar length with left padding, ``batch_size``
    prompts at a time, halved while a batch runs out of memory.
    """
    if isinstance(prompts_or_messages, str):  # one prompt
        prompts_or_messages = [prompts_or_messages]
    items = list(prompts_or_messages)
    if items and isinstance(items[0], dict):  # one conversation
        items = [items]
    if not items:
        return []
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(prompt_text(tokenizer, [{"role": "user", "content": item}]) if chat else item)
        else:
            texts.append(prompt_text(tokenizer, list(item)))
    if tokenizer.pad_token is None:  # batching needs a pad token; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    gen_cfg = generation_config(tokenizer, max_new_tokens)
    device = model_device(model)
    was_training = model.training
    # Longest first: similar lengths share a batch (less padding), and memory peaks at once.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[Optional[str]] = [None] * len(texts)

    start_size = max(1, min(batch_size, len(texts)))
    sizes = [start_size]

    def halve() -> int:  # accelerate's default takes 10 % off per failure; a KV cache can fail late
        sizes.append(sizes[-1] // 2)
        return sizes[-1]

    @find_executable_batch_size(starting_batch_size=start_size, reduce_batch_size_fn=halve)
    def run(size: int) -> None:
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                            padding_side="left", add_special_tokens=False).to(device)
            seqs = model.generate(**enc, generation_config=gen_cfg)
            # a decoder continues the prompt; an encoder-decoder's output is the answer alone
            new = seqs if _encoder_decoder(model) else seqs[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                out[i] = text.strip()

    model.eval()
    try:
        # a 4-bit base on CPU: each weight dequantized once for the whole call, not once per token (dense_4bit)
        with torch.no_grad(), quiet_generation(), dense_4bit(model):
            run()
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _encoder_decoder(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def score(task_name: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """The task's metric over prediction/reference pairs (exact match, in [0, 1])."""
    return get_task(task_name).score(predictions, references)


def answer_budget(tokenizer, raw: Sequence[dict], margin: int = 16, cap: int = 512) -> int:
    """New tokens enough for the longest reference answer, plus a margin (a wrong answer may run
    longer; an answer is scored on its text, so one cut past the margin is wrong either way)."""
    longest = max((len(tokenizer(r["reference"], add_special_tokens=False)["input_ids"]) for r in raw), default=0)
    return min(cap, longest + margin)


def evaluate_task(model, tokenizer, bundle: DataBundle, limit: Optional[int] = None,
                  max_new_tokens: Optional[int] = None, batch_size: int = GENERATION_BATCH):
    """Generate for the held-out examples and score them.

    Returns ``(metric, details)``: metric is the task's score (None for user data, which has no
    automatic metric); details has one dict per example with prompt, reference, prediction and
    correct (None without a metric), plus the task's extra fields (e.g. per-field correctness).
    """
    if not isinstance(bundle, DataBundle):
        raise DataError("dataset: evaluate_task needs the DataBundle from lorakit.data.build_data")
    raw = bundle.eval_raw if limit is None else bundle.eval_raw[:max(0, limit)]
    if not raw:
        return (None, [])
    if bundle.kind == "classification":
        preds = classify(model, tokenizer, [r["prompt"] for r in raw], bundle.labels, batch_size=batch_size,
                         max_length=bundle.stats.get("seq_len"))
    else:
        if max_new_tokens is None:
            max_new_tokens = answer_budget(tokenizer, raw)
        # seq2seq: the prompt's plain text, as the encoder saw it in training (no chat template)
        items = [r["prompt"] for r in raw] if bundle.kind == "seq2seq" else [r["messages"] for r in raw]
        preds = generate(model, tokenizer, items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         chat=bundle.kind != "seq2seq")
    details = []
    scored = bundle.task is not None or bundle.kind == "classification"  # a label is right or wrong
    for r, pred in zip(raw, preds, strict=True):
        d = {"prompt": r["prompt"], "reference": r["reference"], "prediction": pred, "correct": None}
        if bundle.task is not None:
            d.update(bundle.task.check(pred, r["reference"]))
            d["correct"] = bool(d["correct"])
        elif scored:
            d["correct"] = pred == r["reference"]
        if bundle.kind == "seq2seq":  # partial credit beside exact match
            d["token_f1"] = token_f1(pred, r["reference"])
        details.append(d)
    if not scored:
        return (None, details)
    return (sum(d["correct"] for d in details) / len(details), details)


def classify(model, tokenizer, texts: Sequence[str], labels: Sequence[str], batch_size: int = GENERATION_BATCH,
             max_length: Optional[int] = None) -> list[str]:
    """The predicted label of each text: the argmax of the classifier's logits (batch x num_labels),
    padded on the right and cut to ``max_length`` tokens as in training; train/eval mode left as found."""
    device = model_device(model)
    was_training = model.training
    out: list[str] = []
    model.eval()
    try:
        with torch.no_grad(), quiet_generation():
            for start in range(0, len(texts), max(1, batch_size)):
                enc = tokenizer(list(texts[start:start + max(1, batch_size)]), return_tensors="pt", padding=True,
                                truncation=True, max_length=max_length).to(device)
                logits = model(**enc).logits  # (batch, num_labels)
                out += [labels[i] for i in logits.argmax(-1).tolist()]
    finally:
        model.train(was_training)
    return out


def macro_f1(details: list[dict], labels: Sequence[str]) -> Optional[float]:
    """Macro-averaged F1 of ``evaluate_task`` details (prediction vs reference) over ``labels``: the mean of
    each label's F1 = 2TP / (2TP + FP + FN), over the labels that occur as reference or prediction
    (scikit-learn's f1_score(average='macro') over those labels); None without details."""
    if not details:
        return None
    scores = []
    for label in labels:
        tp = sum(d["prediction"] == label and d["reference"] == label for d in details)
        fp = sum(d["prediction"] == label and d["reference"] != label for d in details)
        fn = sum(d["prediction"] != label and d["reference"] == label for d in details)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else None


def token_f1(prediction: str, reference: str) -> float:
    """Token overlap of two texts (SQuAD's F1): whitespace tokens, lower-cased, counted with multiplicity;
    2 * common / (len(prediction) + len(reference)), 1.0 for two empty texts."""
    from collections import Counter

    pred, ref = prediction.lower().split(), reference.lower().split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    return 2 * common / (len(pred) + len(ref))


def mean_token_f1(details: list[dict]) -> Optional[float]:
    """The mean ``token_f1`` of ``evaluate_task`` details (None when they have none: not a seq2seq pass)."""
    scores = [d["token_f1"] for d in details if "token_f1" in d]
    return sum(scores) / len(scores) if scores else None


def field_accuracy(details: list[dict]) -> dict[str, float]:
    """Per-field accuracy from ``evaluate_task`` details of a task with fields (extract-json)."""
    with_fields = [d["fields"] for d in details if "fields" in d]
    if not with_fields:
        return {}
    return {k: sum(f[k] for f in with_fields) / len(with_fields) for k in with_fields[0]}
