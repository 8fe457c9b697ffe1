"""What every source yields and the encoder consumes: example rows, and the error for a dataset
that cannot be used.

A row is ``{prompt, answer, messages}``: ``messages`` are the turns before the answer (chat
format), ``prompt`` the last user turn (shown in previews and sample tables), ``answer`` the text
the loss is on.
"""
from __future__ import annotations

from typing import Optional


class DataError(ValueError):
    """The dataset cannot be used; the message starts with ``dataset:`` and says what to do."""


def make_row(prompt: str, answer: str, messages: Optional[list] = None) -> dict:
    """A row; without ``messages``, the prompt is the single user turn."""
    messages = messages if messages is not None else [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "answer": answer, "messages": messages}
