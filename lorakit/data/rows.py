"""What every source yields and the encoder consumes: example rows, the checks a user's record
passes to become one, and the errors for data that cannot be used.

A row is ``{prompt, answer, messages}``: ``messages`` are the turns before the answer (chat
format), ``prompt`` the last user turn (shown in previews and sample tables), ``answer`` the text
the loss is on. A user's record has ``prompt`` and ``completion`` columns, or a ``messages``
column (a list of ``{role, content}`` turns whose last assistant turn is the answer), or Alpaca's
``instruction`` / ``input`` / ``output``, or ShareGPT's ``conversations`` of ``{from, value}`` turns
(``FORMATS``; ``record_format`` detects which from the columns); for
classification, a ``text`` (or ``prompt``) column and a ``label`` column (the answer is the label,
and the row says ``kind: 'classification'``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

# The formats a user's records may have, detected from the columns (``record_format``): name -> what it needs.
FORMATS = {
    "pairs": "prompt/completion ('prompt' and 'completion' columns)",
    "messages": "OpenAI/HF messages (a 'messages' column of {role, content} turns)",
    "alpaca": "Alpaca ('instruction' and 'output' columns, 'input' optional)",
    "sharegpt": "ShareGPT (a 'conversations' column of {from, value} turns)",
    "labels": "classification ('text' or 'prompt', and 'label' columns)",
}
EXPECTED_COLUMNS = ("'prompt' and 'completion' columns, or a 'messages' column (chat format), or 'instruction' and "
                    "'output' columns (Alpaca), or a 'conversations' column (ShareGPT), or 'text' and 'label' "
                    "columns (classification)")
# Every column some format reads (a Parquet reader loads only these).
FORMAT_COLUMNS = ("prompt", "completion", "messages", "instruction", "input", "output", "conversations", "system",
                  "text", "label")
# ShareGPT's speaker names ('from') as chat roles; the names datasets in the wild use.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}
SKIP_HINT = " (or set on_bad_rows='skip' to leave such rows out)"
_SHAREGPT = "a list of {\"from\": \"human\" | \"gpt\" | \"system\", \"value\": ...} turns"
_TURNS = "a list of {\"role\": ..., \"content\": ...} turns whose last assistant turn is the answer"


class DataError(ValueError):
    """The dataset cannot be used; the message starts with ``dataset:`` and says what to do."""


class RowProblem(Exception):
    """One record cannot be a row: which column (None: the record as a whole), what is wrong and
    how to fix it. The source adds the file and the line; ``on_bad_rows='skip'`` leaves it out."""

    def __init__(self, column: Optional[str], problem: str, fix: str = ""):
        super().__init__(problem)
        self.column, self.problem, self.fix = column, problem, fix

    def message(self, source: str, where: str) -> str:
        column = f", column {self.column!r}" if self.column else ""
        fix = f"; {self.fix}" if self.fix else ""
        return f"dataset: {source} {where}{column}: {self.problem}{fix}"


@dataclass
class Skipped:
    """Rows left out by ``on_bad_rows='skip'``: how many, and where the first few were."""
    count: int = 0
    first: list = field(default_factory=list)  # ["line 3: not valid JSON (...)", ...]
    keep: int = 5

    def add(self, where: str, problem: RowProblem) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            column = f", column {problem.column!r}" if problem.column else ""
            self.first.append(f"{where}{column}: {problem.problem}")

    def note(self) -> str:
        """One line for the data stats and the preview ("" when nothing was skipped)."""
        if not self.count:
            return ""
        more = f"; {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return (f"{self.count} bad row(s) skipped (on_bad_rows='skip'): "
                f"{'; '.join(self.first)}{more}")


def make_row(prompt: str, answer: str, messages: Optional[list] = None) -> dict:
    """A row; without ``messages``, the prompt is the single user turn."""
    messages = messages if messages is not None else [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "answer": answer, "messages": messages}


def record_format(columns: list, source: str) -> str:
    """One of FORMATS from a source's columns ('messages', 'sharegpt', 'pairs', 'alpaca', 'labels', in
    that order of precedence); a DataError listing the formats and the columns found if none fits."""
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if "prompt" in columns and "completion" in columns:
        return "pairs"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if "label" in columns and ("text" in columns or "prompt" in columns):
        return "labels"
    found = ", ".join(map(repr, columns)) or "(none)"
    formats = "; ".join(FORMATS.values())
    raise DataError(f"dataset: {source} fits none of the formats lorakit reads; it has the columns {found}. "
                    f"The formats: {formats}")


def to_row(record: Any, fmt: str) -> dict:
    """A user's record as a row; a RowProblem naming the column when it cannot be one."""
    if isinstance(record, RowProblem):  # the reader could not even parse it
        raise record
    if fmt == "messages":
        return _from_messages(_value(record, "messages"))
    if fmt == "labels":
        return _from_label(record)
    if fmt == "alpaca":
        return _from_alpaca(record)
    if fmt == "sharegpt":
        return _from_sharegpt(record)
    prompt, answer = text(record, "prompt"), text(record, "completion")
    if not prompt.strip():
        raise RowProblem("prompt", "empty", "every row needs a prompt")
    if not answer.strip():
        raise RowProblem("completion", "empty", "every row needs a completion, the answer to learn")
    return make_row(prompt, answer)


def _from_alpaca(record: dict) -> dict:
    """An Alpaca record: the instruction, then its input (when there is one) after a blank line, is the
    prompt; the output is the answer (the Alpaca template's own headers are left to the chat template)."""
    instruction, answer = text(record, "instruction"), text(record, "output")
    extra = text(record, "input") if record.get("input") is not None else ""
    if not instruction.strip():
        raise RowProblem("instruction", "empty", "every row needs an instruction")
    if not answer.strip():
        raise RowProblem("output", "empty", "every row needs an output, the answer to learn")
    return make_row(f"{instruction}\n\n{extra}" if extra.strip() else instruction, answer)


def _from_sharegpt(record: dict) -> dict:
    """A ShareGPT record: its ``{from, value}`` turns as chat turns (a 'system' column, when set, first)."""
    turns = _turn_list("conversations", _value(record, "conversations"), _SHAREGPT)
    messages = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    for k, t in enumerate(turns, 1):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise RowProblem("conversations", f"turn {k} is not a {{\"from\", \"value\"}} object",
                             f"expected {_SHAREGPT}")
        who = t["from"]
        role = SHAREGPT_ROLES.get(who.lower()) if isinstance(who, str) else None
        if role is None:
            raise RowProblem("conversations", f"turn {k} is from {who!r}, a speaker lorakit does not know",
                             f"use one of {', '.join(map(repr, SHAREGPT_ROLES))}")
        messages.append({"role": role, "content": t["value"]})
    try:
        return _from_messages(messages)
    except RowProblem as p:  # the same checks as chat turns, named by this format's column
        raise RowProblem("conversations", p.problem + " (ShareGPT's 'gpt' turns are the assistant's)", p.fix) from None


def _from_label(record: dict) -> dict:
    """A classification record: its text (column 'text', else 'prompt') and its label, both non-empty."""
    column = "text" if "text" in record else "prompt"
    sentence, label = text(record, column), text(record, "label")
    if not sentence.strip():
        raise RowProblem(column, "empty", "every row needs the text to classify")
    if not label.strip():
        raise RowProblem("label", "empty", "every row needs a label, the class to learn")
    return {**make_row(sentence, label.strip()), "kind": "classification"}


def _value(record: dict, column: str) -> Any:
    if column not in record:
        raise RowProblem(column, "missing from this row")
    if record[column] is None:
        raise RowProblem(column, "empty (null)")
    return record[column]


def text(record: dict, column: str) -> str:
    """A column's value as text: strings as they are, finite numbers written out; else a RowProblem."""
    value = _value(record, column)
    if isinstance(value, str):
        return _encodable(value, column)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    raise RowProblem(column, f"expected text, got {kind(value)}")


def _encodable(value: str, column: str) -> str:
    """``value`` if it can be written as UTF-8 (the tokenizer, the store and the report all need that);
    a lone surrogate, as a cut emoji leaves in JSON (``"\\ud83d"``), is a RowProblem saying where."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = value[e.start]
        raise RowProblem(column, f"text that is not valid Unicode: a lone surrogate U+{ord(bad):04X} at character "
                                 f"{e.start + 1} of the value (half of an emoji cut in two?)",
                         "write the whole character, or remove it") from None
    return value


def kind(value: Any) -> str:
    """A value's JSON kind for a message ("a list", "true", ...)."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _from_messages(messages: Any) -> dict:
    """The last assistant turn is the answer, the turns before it the context; later turns are dropped."""
    messages = _turn_list("messages", messages, _TURNS)
    turns = []
    for k, m in enumerate(messages, 1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RowProblem("messages", f"turn {k} is not a {{\"role\", \"content\"}} object", f"expected {_TURNS}")
        try:
            turns.append({"role": text(m, "role"), "content": text(m, "content")})
        except RowProblem as p:
            raise RowProblem("messages", f"turn {k}, {p.column!r}: {p.problem}", f"expected {_TURNS}") from None
    last = max((k for k, m in enumerate(turns) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise RowProblem("messages", "needs an assistant turn after at least one other turn",
                         "the last assistant turn is the answer")
    if not turns[last]["content"].strip():
        raise RowProblem("messages", f"the answer (turn {last + 1}, the last assistant turn) is empty")
    context = turns[:last]
    users = [m["content"] for m in context if m["role"] == "user"]
    prompt = users[-1] if users else context[-1]["content"]
    return make_row(prompt, turns[last]["content"], context)


def _turn_list(column: str, value: Any, expected: str) -> list:
    """A column of chat turns as a list: a CSV or Parquet cell holds them as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RowProblem(column, "is text but not JSON", f"expected {expected}") from None
    if not isinstance(value, (list, tuple)):
        raise RowProblem(column, f"expected {expected}, got {kind(value)}")
    return value
