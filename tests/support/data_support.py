"""What the data tests share: a small run config, the prompt's token count, user rows written to a file."""
from __future__ import annotations

import json

import pandas as pd

from lorakit import RunConfig
from lorakit.data import prompt_text

ROWS = [{"prompt": f"Say the number {i} in words.", "completion": f"number {i}"} for i in range(20)]


def cfg(**kw) -> RunConfig:
    kw.setdefault("model", "tiny-llama")
    kw.setdefault("train_examples", 24)
    kw.setdefault("eval_examples", 8)
    kw.setdefault("seq_len", 512)  # room to spare: nothing is truncated unless a test asks
    return RunConfig(**kw)


def prompt_len(tok, messages) -> int:
    """Tokens of the prompt as training sees it (chat template + generation prompt)."""
    return len(tok(prompt_text(tok, messages), add_special_tokens=False)["input_ids"])


def write(path, rows, kind) -> str:
    """``rows`` as a .jsonl / .json / .csv / .parquet file at ``path``; returns the path as a string."""
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
