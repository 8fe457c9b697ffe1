"""The built-in tasks: examples generated from a seed, scored by an automatic metric.

Each task is a module with ``make(rng) -> (prompt, answer)`` and ``check(prediction, reference)
-> {"correct": bool, ...extra per-example details}``; ``_TASKS`` below names it, describes it and
says what its metric is. A new task is one module and one entry there.

A task's ``kind`` is the model task it trains (``families.TASKS``): a ``causal-lm`` task's answer is
text the model writes; a ``classification`` task's answer is one of its ``labels``, predicted by a
classifier head (accuracy and macro-F1); a ``seq2seq`` task is text-to-text written for an encoder-decoder
(exact match, with the token overlap beside it). Text-to-text data (a prompt and an answer) trains a decoder
and an encoder-decoder alike; ``tasks_for`` offers each model the tasks of its own kind first.
"""
from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from lorakit.data.rows import DataError, make_row
from lorakit.data.tasks import arithmetic, date_iso, extract_json, headline, sort_words, topic


@dataclass(frozen=True)
class TaskInfo:
    """A built-in task: examples generated from a seed, scored by an automatic metric."""
    name: str
    description: str
    metric: str  # name of the metric, e.g. "exact match (parsed JSON)"
    make: Callable[[random.Random], tuple[str, str]] = field(repr=False, compare=False)
    check: Callable[[str, str], dict] = field(repr=False, compare=False)
    """check(prediction, reference) -> {"correct": bool, ...extra per-example details}"""
    kind: str = "causal-lm"  # the model task it is written for: 'causal-lm', 'classification' or 'seq2seq'
    labels: tuple = ()  # a classification task's label names, in the classifier's output order

    def example(self, seed: int = 0) -> dict:
        """One generated example, for showing what the task looks like."""
        prompt, answer = self.make(random.Random(f"{self.name}:{seed}:example"))
        return {"prompt": prompt, "answer": answer}

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> float:
        """Mean correctness over the pairs (0.0 for no pairs)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if not predictions:
            return 0.0
        pairs = zip(predictions, references, strict=True)
        return sum(bool(self.check(p, r)["correct"]) for p, r in pairs) / len(predictions)


# In the order list_tasks() gives them: the default (RunConfig.dataset) first.
_TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("extract-json", "A sentence about a person -> JSON {name, age, city}. The prompt does not "
                 "spell out the schema: keys, age as a number (words or 'turns 35 tomorrow' included), "
                 "first name first without titles, and the city they live in now (not where they came "
                 "from) are learned from the examples", "exact match (parsed JSON)",
                 extract_json.make, extract_json.check),
        TaskInfo("date-iso", "A date written in one of many ways (March 5, 2021 / the 5th of March 2021 / "
                 "Fri 5 Mar...) -> 2021-03-05", "exact match", date_iso.make, date_iso.check),
        TaskInfo("sort-words", "Sort 3-6 words alphabetically", "exact match", sort_words.make, sort_words.check),
        TaskInfo("arithmetic", "Add or subtract two numbers below 1000", "exact match",
                 arithmetic.make, arithmetic.check),
        TaskInfo("topic", "The topic of a sentence: sports, weather, food or tech (from what the sentence says, "
                 "not one keyword: 'running', 'cool', 'fast', 'chips' occur in several topics)",
                 "accuracy (and macro-F1)", topic.make, topic.check, "classification", topic.LABELS),
        TaskInfo("headline", "A news sentence -> its headline: who did what, the fact's own words in order "
                 "without the filler (time, place, adverbs, remarks) or articles ('city council approved new "
                 "bike lane')", "exact match (and token F1)", headline.make, headline.check, "seq2seq"),
    )
}


# Train + eval examples a built-in task generates at most: a fraction of the distinct examples of the
# smallest task (date-iso: 32,850 days x 10 formats), so generating never slows near exhaustion.
MAX_GENERATED = 100_000


def list_tasks(kind: str = "") -> list[TaskInfo]:
    """The built-in tasks (the default, ``extract-json``, first); with ``kind``, those of that kind
    ('causal-lm', 'classification' or 'seq2seq')."""
    return [t for t in _TASKS.values() if not kind or t.kind == kind]


def tasks_for(model_task: str) -> list[TaskInfo]:
    """The built-in tasks offered to a model trained for ``model_task`` (all of them for ''), its own kind
    first: an encoder-decoder (``seq2seq``) gets its text-to-text task, then the decoders' tasks (a prompt
    and an answer train it too). A decoder is not offered the seq2seq task (its instruction-style tasks
    fit a chat model; the headline's bare ``headline:`` prefix is T5's style), though it can train it
    when named."""
    if not model_task:
        return list_tasks()
    if model_task == "seq2seq":
        return list_tasks("seq2seq") + list_tasks("causal-lm")
    return list_tasks(model_task)


def get_task(name: str) -> TaskInfo:
    """A built-in task by name; ``DataError`` listing the tasks when unknown."""
    try:
        return _TASKS[name]
    except KeyError:
        raise DataError(f"dataset: unknown built-in task {name!r}{did_you_mean(name)}; "
                        f"built-in tasks: {', '.join(_TASKS)}") from None


def did_you_mean(name: str) -> str:
    """`` (did you mean 'x'?)`` for the closest task name, else empty: a suffix for messages."""
    close = difflib.get_close_matches(str(name), list(_TASKS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def generate_examples(task: str, n_train: int, n_eval: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows of a built-in task: deterministic in the seed, never overlapping.

    Eval comes from its own random stream and does not depend on ``n_train``; train examples
    that happen to equal an eval prompt (or an earlier train prompt) are skipped. More than
    ``MAX_GENERATED`` in all is refused at once (a typo such as 10**9 would otherwise fill memory,
    or spin for hours once a task runs out of distinct examples).
    """
    info = get_task(task)
    if n_train + n_eval > MAX_GENERATED:
        raise DataError(f"dataset: the built-in task {task!r} generates at most {MAX_GENERATED:,} examples; "
                        f"train_examples={n_train} + eval_examples={n_eval} is more: lower them, or use a data file")

    def stream(kind: str, n: int, exclude: set) -> list[dict]:
        rng = random.Random(f"{task}:{seed}:{kind}")
        out, seen = [], set(exclude)
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise DataError(f"dataset: task {task!r} cannot produce {n} distinct {kind} examples")
            prompt, answer = info.make(rng)
            if prompt in seen:
                continue
            seen.add(prompt)
            out.append(make_row(prompt, answer))
        return out

    eval_rows = stream("eval", n_eval, set())
    train_rows = stream("train", n_train, {r["prompt"] for r in eval_rows})
    overlap = {r["prompt"] for r in train_rows} & {r["prompt"] for r in eval_rows}
    assert not overlap, f"train/eval overlap in task {task!r}"
    return train_rows, eval_rows
