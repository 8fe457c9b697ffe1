#!/usr/bin/env python
"""Regenerate lorakit/models/tiny_llama_tokenizer.json, tiny-llama's tokenizer, deterministically.

A byte-level BPE: the GPT-2 byte alphabet (so any text encodes), digits split one by one (as
SmolLM2's tokenizer does), learnt from the built-in tasks' training conversations exactly as
tiny-llama's ChatML template renders them (system prompt and special tokens included), with
lorakit's three special tokens first (ids 0-2).

    python scripts/make_tiny_tokenizer.py          # rewrite the file
    python scripts/make_tiny_tokenizer.py --check  # exit 1 if a fresh one has another vocabulary or merges

Changing VOCAB_SIZE means changing registry.TINY_CONFIG (and the parameter count in the registry).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

VOCAB_SIZE = 1536  # the built-in tasks' examples come to 46-91 tokens (byte-level: 150-300)
EXAMPLES_PER_TASK = 2000  # training conversations of each built-in task (seed 0) the merges are learnt from


def corpus() -> list[str]:
    """Every built-in causal-LM task's training conversations, rendered by tiny-llama's chat template."""
    import lorakit
    from lorakit.data import generate_examples
    from lorakit.models.tiny_llama import byte_tokenizer

    template = byte_tokenizer()  # the same CHATML_TEMPLATE as tiny-llama; only used to render text
    texts = []
    for task in lorakit.list_tasks("causal-lm"):  # a decoder's tasks (the classification task's text: bytes)
        train, _ = generate_examples(task.name, EXAMPLES_PER_TASK, 0, seed=0)
        for row in train:
            turns = row["messages"] + [{"role": "assistant", "content": row["answer"]}]
            texts.append(template.apply_chat_template(turns, tokenize=False))
    return texts


def train(texts: list[str]) -> str:
    """The tokenizer's JSON (the ``tokenizers`` library's format)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from lorakit.models.tiny_llama import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"the corpus yields only {tok.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    return tok.to_str(pretty=True) + "\n"


def _model_part(text: str) -> tuple[dict, list]:
    """(vocab, merges) of a tokenizer JSON; merges as pairs whatever the library version writes."""
    model = json.loads(text)["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def main(argv=None) -> int:
    from lorakit.models.tiny_llama import TOKENIZER_FILE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    ap.add_argument("--out", type=Path, default=TOKENIZER_FILE, help=f"where to write (default {TOKENIZER_FILE})")
    args = ap.parse_args(argv)
    fresh = train(corpus())
    if args.check:
        same = _model_part(fresh) == _model_part(args.out.read_text())
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh build: rerun ' + Path(__file__).name}")
        return 0 if same else 1
    args.out.write_text(fresh)
    print(f"wrote {args.out} ({VOCAB_SIZE} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
