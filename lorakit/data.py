"""Training data: built-in tasks, user datasets, the chat template and answer-only loss.

Every example is a conversation whose last turn is the answer. The prompt is the tokenizer's own
chat template applied to the turns before the answer with ``add_generation_prompt=True`` (exactly
what generation sees later); the answer is followed by the template's end-of-turn token so the
model learns to stop. Labels are -100 on the prompt: the loss covers the answer tokens only.

Sources (``RunConfig.dataset``):

- a built-in task (``list_tasks()``), generated deterministically from the seed; train and eval
  examples come from different random streams and never overlap;
- a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file with ``prompt`` and ``completion``
  columns, or a ``messages`` column (chat format; the last assistant turn is the answer), split
  deterministically with the seed;
- a Hugging Face Hub dataset id with the same columns (needs internet; fails fast without it).

Examples longer than ``seq_len`` are truncated from the end (the prompt start is kept) and counted
in ``DataBundle.stats``; an example whose answer is cut away entirely is dropped, and counted too.
"""
from __future__ import annotations

import difflib
import html
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .logging_setup import progress_bars_off

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
IGNORE_INDEX = -100  # label value the loss ignores (PyTorch's cross_entropy default)


class DataError(ValueError):
    """The dataset cannot be used; the message names the field (``dataset``) and what to do."""

    field = "dataset"


# --- built-in tasks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskInfo:
    """A built-in task: examples generated from a seed, scored by an automatic metric."""
    name: str
    description: str
    metric: str  # name of the metric, e.g. "exact match (parsed JSON)"
    make: Callable[[random.Random], tuple[str, str]] = field(repr=False, compare=False)
    check: Callable[[str, str], dict] = field(repr=False, compare=False)
    """check(prediction, reference) -> {"correct": bool, ...extra per-example details}"""

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
        return sum(bool(self.check(p, r)["correct"]) for p, r in zip(predictions, references)) / len(predictions)


# extract-json ------------------------------------------------------------------------------------

_FIRST = (
    "Maria", "James", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Noah", "Fatima", "Lukas", "Sofia",
    "Daniel", "Yuki", "Amara", "Igor", "Chloe", "Mateo", "Hana", "Kofi", "Elena", "Ravi", "Nora",
    "Tomasz", "Grace", "Diego", "Ingrid", "Samuel", "Leila", "Arjun", "Zoe", "Felix", "Mei",
    "Hugo", "Ada", "Jonas", "Isabel", "Kenji", "Olga", "Tariq", "Emma", "Pablo", "Sara", "Ivan",
    "Lucia", "Ben", "Anya", "Marco", "Rosa", "Ahmed", "Julia", "Viktor", "Nadia", "Leo", "Clara",
)
_LAST = (
    "Lopez", "Smith", "Tanaka", "Haddad", "Fischer", "Mendes", "Sharma", "Brown", "Khan", "Weber",
    "Rossi", "Kim", "Nakamura", "Okafor", "Petrov", "Dubois", "Garcia", "Park", "Mensah", "Novak",
    "Patel", "Larsen", "Kowalski", "Murphy", "Silva", "Berg", "Cohen", "Ali", "Gupta", "Moreau",
    "Chen", "Costa", "Ivanova", "Jensen", "Yamamoto", "Nguyen", "Schmidt", "Ortiz", "Hughes",
    "Romano", "Sato", "Andersen", "Bianchi", "Wright", "Torres", "Kaya", "Lindqvist", "Adeyemi",
)
_CITIES = (
    "Lisbon", "Tokyo", "Nairobi", "Toronto", "Berlin", "Lima", "Mumbai", "Oslo", "Cairo", "Seoul",
    "Madrid", "Denver", "Krakow", "Dublin", "Accra", "Hanoi", "Porto", "Vienna", "Santiago", "Osaka",
    "Chicago", "Lyon", "Istanbul", "Melbourne", "Bogota", "Helsinki", "Marseille", "Quito",
    "New York", "Cape Town", "Buenos Aires", "San Diego", "Hong Kong", "Rio de Janeiro", "Tel Aviv",
    "Kuala Lumpur", "Mexico City", "Las Vegas", "St. Louis", "Abu Dhabi", "Sao Paulo", "Glasgow",
    "Zagreb", "Perth", "Montreal", "Athens", "Prague", "Manila", "Bergen", "Valencia", "Tallinn",
)
_JOBS = ("nurse", "architect", "teacher", "baker", "pilot", "chemist", "lawyer", "chef", "engineer",
         "painter", "librarian", "carpenter", "journalist", "dentist", "violinist", "gardener")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_SEASONS = ("spring", "summer", "autumn", "winter")
_THINGS = ("cats", "bikes", "plants", "guitars", "sisters", "brothers", "dogs", "books",
           "paintings", "awards", "patents", "children")

# {n}: the person's name, {a}: age, {c}: city, {o}: another city (distractor), {x}/{y}: distractor
# numbers, {j}: job, {m}: month, {s}: season, {t}: a countable thing, {yr}: a year.
_TEMPLATES = (
    "{n}, {a}, moved to {c} last {s}.",
    "At {a}, {n} opened a small bakery in {c}.",
    "{n} ({a}) lives in {c} with {x} {t}.",
    "Meet {n}: {a} years old, based in {c}, works {y} hours a week.",
    "{c} has been home to {n} since {yr}; {n0} turned {a} in {m}.",
    "Last year {n} ran {x} marathons; now {a}, {n0} coaches runners in {c}.",
    "The {a}-year-old {j} {n} from {c} has {x} {t}.",
    "{n} left {o} for {c} at the age of {a}.",
    "After {x} years in {o}, {n}, {a}, settled in {c}.",
    "Our new {j} is {n}. {n0} is {a} and commutes from {c}, about {y} km a day.",
    "Name: {n}. Age: {a}. Hometown: {c}. Apartment {y}, floor {x}.",
    "{n} is {ja} who grew up in {o} but lives in {c} now; {n0} is {a}.",
    "In {m}, {n} ({a}) flew home to {c} after {x} days in {o}.",
    "{n}, who is {a}, rents a flat in {c} for {y}0 euros a month.",
    "Born in {o}, {n} now works as {ja} in {c} and is {a} years old.",
    "{x} {t} and {y} plants share a house in {c} with {n}, aged {a}.",
    "Reporter's note: {n} ({j}, {a}) answered our call from {c} at {x}:30.",
    "{n} celebrated turning {a} with {y} friends at home in {c}.",
    "Ticket #{y}{x}: {n}, {a}, from {c}, seat {x}.",
    "When {n} was {x}, the family moved to {o}; today {n0} is {a} and lives in {c}.",
    "{j} {n}, {a}, has visited {o} {x} times but will never leave {c}.",
    "Since {yr}, {n} has lived in {c}. {n0} is {a}, with {x} {t}.",
)


# Harder shapes, each a skill the answer needs beyond copying:
# surname first ("LOPEZ, Maria") -> "Maria Lopez"; a birthday tomorrow ({a1} = age + 1) -> age.
_SURNAME_FIRST = (
    "Registry entry: {last}, {first}; age {a}; residence {c}; previous address {o}.",
    "{last}, {first} ({a}) - {j} - {c}, formerly {o}.",
    "Passenger {last}, {first}, age {a}, boarding in {c}, gate {x}.",
)
_NEXT_BIRTHDAY = (
    "{n} turns {a1} tomorrow and throws a party in {c} for {y} guests.",
    "Tomorrow {n} of {c} will be {a1}; {n0} grew up in {o}.",
    "{n}, {ja} in {c}, has a birthday tomorrow: {n0} turns {a1}.",
)
_TITLES = ("Dr.", "Prof.")
_UNITS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen")


def number_words(n: int) -> str:
    """10..99 in English words: 34 -> 'thirty-four'."""
    if 10 <= n < 20:
        return _TEENS[n - 10]
    tens, units = divmod(n, 10)
    return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")


def _make_extract_json(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if rng.random() < 0.12:
        first = f"{first} {rng.choice('ABCDEFGHJKLMNPRST')}."
    name = f"{first} {last}"  # the answer: no title, first name first
    shown = f"{rng.choice(_TITLES)} {name}" if rng.random() < 0.15 else name
    age = rng.randint(18, 89)
    city = rng.choice(_CITIES)
    other = rng.choice([c for c in _CITIES if c != city])
    x = rng.randint(2, 19)
    y = rng.choice([v for v in range(2, 99) if v not in (age, age + 1)])
    kind = rng.random()
    if kind < 0.15:
        template = rng.choice(_SURNAME_FIRST)
        last = last.upper() if rng.random() < 0.5 else last
    elif kind < 0.3:
        template = rng.choice(_NEXT_BIRTHDAY)
    else:
        template = rng.choice(_TEMPLATES)
    job = rng.choice(_JOBS)
    age_text = number_words(age) if rng.random() < 0.25 else str(age)
    sentence = template.format(
        n=shown, n0=first.split()[0], first=first, last=last, a=age_text, a1=age + 1, c=city, o=other,
        x=x, y=y, j=job, ja=("an " if job[0] in "aeiou" else "a ") + job, m=rng.choice(_MONTHS), s=rng.choice(_SEASONS),
        t=rng.choice(_THINGS), yr=rng.randint(1995, 2023),
    )
    sentence = sentence[0].upper() + sentence[1:]
    prompt = f"Extract the person as JSON:\n{sentence}"
    return prompt, json.dumps({"name": name, "age": age, "city": city}, ensure_ascii=False)


_JSON_FIELDS = ("name", "age", "city")


def parse_json_object(text: str) -> Optional[dict]:
    """The first JSON object in ``text`` (a ```json fence or leading words are tolerated), else None."""
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            start = text.find("{", start + 1)
            continue
        return obj if isinstance(obj, dict) else None
    return None


def _check_json(prediction: str, reference: str) -> dict:
    ref = json.loads(reference)
    pred = parse_json_object(prediction)
    fields_ok = {k: pred is not None and k in pred and pred[k] == ref[k] and type(pred[k]) is type(ref[k])
                 for k in _JSON_FIELDS}
    exact = pred is not None and set(pred) == set(ref) and all(fields_ok.values())
    return {"correct": exact, "valid_json": pred is not None, "fields": fields_ok}


# date-iso ----------------------------------------------------------------------------------------

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_FORMATS = (
    "{M} {d}, {y}", "{d} {M} {y}", "{Mon} {d}, {y}", "{Mon} {th}, {y}", "the {th} of {M} {y}",
    "{W}, {M} {d}, {y}", "{W} {d} {M} {y}", "{M} {th} {y}", "{y}, {M} {d}", "{d}-{Mon}-{y}",
)


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def _make_date_iso(rng: random.Random) -> tuple[str, str]:
    import datetime

    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 90))
    text = rng.choice(_DATE_FORMATS).format(
        M=_MONTHS[day.month - 1], Mon=_MONTH_ABBR[day.month - 1], d=day.day, th=_ordinal(day.day),
        y=day.year, W=_WEEKDAYS[day.weekday()])
    return f"Convert to an ISO date:\n{text}", day.isoformat()


def _check_exact(prediction: str, reference: str) -> dict:
    return {"correct": prediction.strip().rstrip(".").strip() == reference.strip()}


# sort-words --------------------------------------------------------------------------------------

_WORDS = (
    "apple", "river", "candle", "mango", "tiger", "planet", "violin", "anchor", "bridge", "cloud",
    "desert", "engine", "forest", "garden", "harbor", "island", "jacket", "kettle", "lemon", "marble",
    "needle", "orange", "pepper", "quartz", "rabbit", "saddle", "timber", "umbrella", "valley",
    "walnut", "yogurt", "zebra", "basket", "copper", "dolphin", "falcon", "ginger", "hammer", "iron",
    "jungle", "kitten", "ladder", "meadow", "nickel", "oyster", "pillow", "rocket", "silver",
    "tunnel", "velvet", "window", "bamboo", "cactus", "dragon", "feather", "glacier", "honey",
    "lantern", "mirror", "napkin", "olive", "parrot", "ribbon", "spider", "tomato", "wagon", "cherry",
    "button", "carpet", "puzzle", "castle", "salmon", "pencil", "butter", "cotton", "banana",
    "breeze", "cable", "circle", "coffee", "crystal", "donkey", "gravel", "helmet", "mushroom",
)


def _make_sort_words(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(_WORDS, rng.randint(3, 6))
    prompt = "Sort these words alphabetically. Answer with the sorted words separated by spaces.\n\n" + " ".join(words)
    return prompt, " ".join(sorted(words))


def _check_words(prediction: str, reference: str) -> dict:
    pred = prediction.replace(",", " ").strip().rstrip(".").split()
    return {"correct": pred == reference.split()}


# arithmetic --------------------------------------------------------------------------------------

def _make_arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    if rng.random() < 0.5:
        return f"What is {a} + {b}? Answer with the number only.", str(a + b)
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}? Answer with the number only.", str(a - b)


def _check_number(prediction: str, reference: str) -> dict:
    return {"correct": prediction.strip().rstrip(".").replace(",", "") == reference.strip()}


_TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("extract-json", "A sentence about a person -> JSON {name, age, city}. The prompt does not "
                 "spell out the schema: keys, age as a number (words or 'turns 35 tomorrow' included), "
                 "first name first without titles, and the city they live in now (not where they came "
                 "from) are learned from the examples", "exact match (parsed JSON)",
                 _make_extract_json, _check_json),
        TaskInfo("date-iso", "A date written in one of many ways (March 5, 2021 / the 5th of March 2021 / "
                 "Fri 5 Mar...) -> 2021-03-05", "exact match", _make_date_iso, _check_exact),
        TaskInfo("sort-words", "Sort 3-6 words alphabetically", "exact match", _make_sort_words, _check_words),
        TaskInfo("arithmetic", "Add or subtract two numbers below 1000", "exact match",
                 _make_arithmetic, _check_number),
    )
}
DEFAULT_TASK = "extract-json"


def list_tasks() -> list[TaskInfo]:
    """The built-in tasks (the default, ``extract-json``, first)."""
    return list(_TASKS.values())


def get_task(name: str) -> TaskInfo:
    """A built-in task by name; ``DataError`` listing the tasks when unknown."""
    try:
        return _TASKS[name]
    except KeyError:
        raise DataError(f"dataset: unknown built-in task {name!r}{_did_you_mean(name)}; "
                        f"built-in tasks: {', '.join(_TASKS)}") from None


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(str(name), list(_TASKS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def generate_examples(task: str, n_train: int, n_eval: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, eval) examples of a built-in task: deterministic in the seed, never overlapping.

    Eval comes from its own random stream and does not depend on ``n_train``; train examples
    that happen to equal an eval prompt (or an earlier train prompt) are skipped.
    """
    info = get_task(task)

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
            out.append(_row(prompt, answer))
        return out

    eval_rows = stream("eval", n_eval, set())
    train_rows = stream("train", n_train, {r["prompt"] for r in eval_rows})
    overlap = {r["prompt"] for r in train_rows} & {r["prompt"] for r in eval_rows}
    assert not overlap, f"train/eval overlap in task {task!r}"
    return train_rows, eval_rows


def _row(prompt: str, answer: str, messages: Optional[list] = None) -> dict:
    messages = messages if messages is not None else [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "answer": answer, "messages": messages}


# --- user datasets ---------------------------------------------------------------------------------

def _expected_columns() -> str:
    return "'prompt' and 'completion' columns, or a 'messages' column (chat format)"


def _rows_from_dataset(ds, source: str) -> list[dict]:
    """Rows {prompt, answer, messages} from a ``datasets.Dataset`` with the supported columns."""
    cols = list(ds.column_names)
    if len(ds) == 0:
        raise DataError(f"dataset: {source} is empty (no rows); it needs {_expected_columns()}")
    if "messages" in cols:
        return [_row_from_messages(m, i, source) for i, m in enumerate(ds["messages"])]
    if "prompt" in cols and "completion" in cols:
        rows = []
        for i, (p, c) in enumerate(zip(ds["prompt"], ds["completion"])):
            if p is None or c is None or not str(p).strip():
                which = "prompt" if p is None or not str(p).strip() else "completion"
                raise DataError(f"dataset: row {i} of {source} has an empty {which!r}")
            rows.append(_row(str(p), str(c)))
        return rows
    raise DataError(f"dataset: {source} has columns {', '.join(map(repr, cols)) or '(none)'}; "
                    f"expected {_expected_columns()}")


def _row_from_messages(messages: Any, i: int, source: str) -> dict:
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError:
            raise DataError(f"dataset: row {i} of {source}: 'messages' is not a JSON list of "
                            "{role, content} turns") from None
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise DataError(f"dataset: row {i} of {source}: 'messages' must be a list of {{role, content}} turns")
    last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise DataError(f"dataset: row {i} of {source}: 'messages' needs an assistant turn after "
                        "at least one other turn (the last assistant turn is the answer)")
    context = [{"role": m["role"], "content": str(m["content"])} for m in messages[:last]]
    users = [m["content"] for m in context if m["role"] == "user"]
    prompt = users[-1] if users else context[-1]["content"]
    return _row(prompt, str(messages[last]["content"]), context)


def _load_file(path: Path):
    import datasets

    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise DataError(f"dataset: {str(path)!r} has an unsupported type {suffix or '(no suffix)'}; "
                        f"use one of {', '.join(FILE_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"dataset: {str(path)!r} is empty; it needs {_expected_columns()}")
    try:
        with progress_bars_off("datasets"):  # no "Map: 100%" bars in notebook output
            return datasets.load_dataset(_LOADERS[suffix], data_files=str(path), split="train")
    except DataError:
        raise
    except Exception as exc:  # pyarrow / json / csv parse errors
        raise DataError(f"dataset: could not read {str(path)!r} as {suffix[1:]}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _hub_unreachable_reason() -> Optional[str]:
    """None when the Hugging Face Hub answers within 3 s, else why not."""
    import socket

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var) not in (None, "", "0"):
            return f"{var} is set"
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        return f"cannot reach {host}: {exc}"
    return None


def _load_hub(name: str):
    import datasets

    def fail(reason: str):
        unknown = f"unknown built-in task {name!r}{_did_you_mean(name)}; " if "/" not in name else ""
        return DataError(
            f"dataset: {unknown}could not download dataset {name!r} from the Hugging Face Hub "
            f"({reason}); use a built-in task ({', '.join(_TASKS)}) or a local file "
            f"({', '.join(FILE_SUFFIXES)}) with {_expected_columns()}")

    reason = _hub_unreachable_reason()
    if reason:
        raise fail(reason)
    try:
        with progress_bars_off("datasets"):  # no "Map: 100%" bars in notebook output
            return datasets.load_dataset(name, split="train")
    except Exception as exc:
        raise fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def load_rows(dataset: str) -> tuple[list[dict], Optional[TaskInfo], str]:
    """Resolve ``dataset`` to rows (user data) or a task: (rows, task, source description)."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError("dataset: must be a built-in task name, a local file or a hub dataset; got "
                        f"{dataset!r}")
    if dataset in _TASKS:
        return [], _TASKS[dataset], f"built-in task {dataset!r}"
    path = Path(dataset).expanduser()
    if path.is_dir():
        raise DataError(f"dataset: {dataset!r} is a directory; give one data file "
                        f"({', '.join(FILE_SUFFIXES)})")
    if path.exists():
        ds = _load_file(path)
        return _rows_from_dataset(ds, repr(str(path))), None, f"file {str(path)!r}"
    parent = path.parent
    looks_like_file = (path.suffix.lower() in FILE_SUFFIXES or dataset.startswith(("./", "../", "/", "~"))
                       or (str(parent) not in ("", ".") and parent.is_dir()))
    if looks_like_file:
        raise DataError(f"dataset: file {dataset!r} not found (built-in tasks: {', '.join(_TASKS)})")
    ds = _load_hub(dataset)
    return _rows_from_dataset(ds, f"hub dataset {dataset!r}"), None, f"hub dataset {dataset!r}"


# --- formatting and tokenization ---------------------------------------------------------------------

_SENTINEL = "\u2063LORAKIT_ANSWER\u2063"


def end_of_turn(tokenizer) -> str:
    """The text the chat template puts after an assistant answer (e.g. ``<|im_end|>``), else EOS."""
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
            tail = text.split(_SENTINEL, 1)[1].rstrip()
            if tail:
                return tail
        except Exception:
            pass
    return tokenizer.eos_token or ""


def prompt_text(tokenizer, messages: list) -> str:
    """The prompt exactly as training and generation see it: chat template + generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # e.g. a template that allows no system turn, or wants alternation
            roles = "/".join(m.get("role", "?") for m in messages)
            raise DataError(f"dataset: the model's chat template rejected a conversation with the turns "
                            f"{roles}: {exc}") from exc
    # A base model without a chat template: plain turns, the answer follows a blank line.
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def encode_example(tokenizer, messages: list, answer: str, seq_len: int, eot: Optional[str] = None) -> dict:
    """Token ids and answer-only labels for one example, truncated to ``seq_len``.

    Returns input_ids, attention_mask, labels, plus ``truncated`` (the example was longer than
    seq_len) and ``answer_tokens`` (answer tokens left after truncation; 0 means drop it).
    """
    eot = end_of_turn(tokenizer) if eot is None else eot
    p_ids = tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer + eot, add_special_tokens=False)["input_ids"]
    ids = p_ids + a_ids
    labels = [IGNORE_INDEX] * len(p_ids) + list(a_ids)
    truncated = len(ids) > seq_len
    ids, labels = ids[:seq_len], labels[:seq_len]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels,
            "truncated": truncated, "answer_tokens": sum(label != IGNORE_INDEX for label in labels)}


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

    @property
    def metric_name(self) -> Optional[str]:
        return self.task.metric if self.task else None


def build_data(cfg, tokenizer) -> DataBundle:
    """Load or generate ``cfg.dataset``, split it, format with the chat template and tokenize."""
    import datasets
    from transformers import DataCollatorForSeq2Seq

    rows, task, source = load_rows(cfg.dataset)
    if tokenizer.pad_token is None:  # the collator pads; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    notes = []
    if task is not None:
        train_rows, eval_rows = generate_examples(task.name, cfg.train_examples, cfg.eval_examples, cfg.seed)
    else:
        train_rows, eval_rows, note = _split_rows(rows, cfg.train_examples, cfg.eval_examples, cfg.seed)
        if note:
            notes.append(note)

    eot = end_of_turn(tokenizer)

    def encode(batch):
        out = {k: [] for k in ("input_ids", "attention_mask", "labels", "truncated", "answer_tokens")}
        for messages, answer in zip(batch["messages"], batch["answer"]):
            enc = encode_example(tokenizer, messages, answer, cfg.seq_len, eot)
            for k in out:
                out[k].append(enc[k])
        return out

    parts, counts = {}, {}
    with progress_bars_off("datasets"):  # no "Map: 100%" bars in notebook output
        for split, split_rows in (("train", train_rows), ("eval", eval_rows)):
            raw = datasets.Dataset.from_list([{"messages": r["messages"], "answer": r["answer"]} for r in split_rows])
            enc = raw.map(encode, batched=True, remove_columns=raw.column_names)
            truncated = sum(enc["truncated"])
            keep = [i for i, n in enumerate(enc["answer_tokens"]) if n > 0]
            dropped = len(enc) - len(keep)
            if dropped:
                enc = enc.select(keep)
            counts[split] = (truncated, dropped)
            parts[split] = enc.remove_columns(["truncated", "answer_tokens"])
    if len(parts["train"]) == 0:
        raise DataError(f"dataset: no training example fits in seq_len={cfg.seq_len} tokens (all "
                        f"{len(train_rows)} answers were truncated away); raise seq_len")
    train_lengths = [len(x) for x in parts["train"]["input_ids"]]
    stats = {
        "source": source,
        "n_train": len(parts["train"]),
        "n_eval": len(parts["eval"]),
        "truncated_train": counts["train"][0],
        "truncated_eval": counts["eval"][0],
        "dropped_train": counts["train"][1],
        "dropped_eval": counts["eval"][1],
        "train_tokens": sum(train_lengths),
        "loss_tokens": sum(sum(1 for t in lab if t != IGNORE_INDEX) for lab in parts["train"]["labels"]),
        "max_len": max(train_lengths),
        "mean_len": sum(train_lengths) / len(train_lengths),
        "seq_len": cfg.seq_len,
        "notes": notes,
    }
    if counts["train"][0] or counts["eval"][0]:
        notes.append(f"{counts['train'][0]} train and {counts['eval'][0]} eval examples were longer than "
                     f"seq_len={cfg.seq_len} and were truncated ({counts['train'][1]} + {counts['eval'][1]} "
                     "dropped: nothing of the answer was left)")
    eval_raw = [{"prompt": r["prompt"], "answer": r["answer"], "reference": r["answer"], "messages": r["messages"]}
                for r in eval_rows]
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX,
                                      pad_to_multiple_of=None)
    return DataBundle(parts["train"], parts["eval"], eval_raw, collator, task, stats, train_rows, source)


def _split_rows(rows: list, n_train: int, n_eval: int, seed: int) -> tuple[list, list, str]:
    """Deterministic train/eval split of user rows with ``Dataset.train_test_split``."""
    import datasets

    n = len(rows)
    if n < 2:
        raise DataError(f"dataset: needs at least 2 rows (one to train, one to evaluate); found {n}")
    note = ""
    test = min(n_eval, n // 2)
    if test < n_eval:
        note = f"eval_examples reduced to {test}: the dataset has only {n} rows"
    index = datasets.Dataset.from_dict({"i": list(range(n))})
    split = index.train_test_split(test_size=test, seed=seed, shuffle=True)
    train_idx = split["train"]["i"][:n_train]
    eval_idx = split["test"]["i"]
    return [rows[i] for i in train_idx], [rows[i] for i in eval_idx], note


# --- preview --------------------------------------------------------------------------------------

def preview(bundle_or_cfg, tokenizer, n: int = 3) -> list[list[tuple[str, bool]]]:
    """The first ``n`` training examples as (token text, carries loss) pairs."""
    bundle = bundle_or_cfg if isinstance(bundle_or_cfg, DataBundle) else build_data(
        bundle_or_cfg.replace(train_examples=min(n, bundle_or_cfg.train_examples)), tokenizer)
    out = []
    for ex in bundle.train.select(range(min(n, len(bundle.train)))):
        out.append([(tokenizer.decode([i]), label != IGNORE_INDEX)
                    for i, label in zip(ex["input_ids"], ex["labels"])])
    return out


def preview_html(bundle_or_cfg, tokenizer=None, n: int = 3) -> str:
    """HTML of the first ``n`` examples, loss tokens highlighted; also accepts ``preview()``'s output."""
    rows = bundle_or_cfg if isinstance(bundle_or_cfg, list) else preview(bundle_or_cfg, tokenizer, n)
    style = ("font-family:monospace;font-size:12px;line-height:1.9;white-space:pre-wrap;"
             "border:1px solid #ddd;border-radius:4px;padding:6px;margin:4px 0")
    parts = ['<div class="lorakit-preview">',
             '<div style="font-size:12px">Tokens with a <span style="background:#ffd54f">yellow</span> '
             'background carry loss (the answer and end-of-turn); grey ones are the prompt (label -100).</div>']
    for tokens in rows:
        n_loss = sum(flag for _, flag in tokens)
        spans = []
        for text, flag in tokens:
            shown = html.escape(text).replace("\n", "\u21b5\n")
            bg = "#ffd54f" if flag else "#f1f1f1"
            color = "#000" if flag else "#777"
            spans.append(f'<span style="background:{bg};color:{color};border-right:1px solid #fff">{shown}</span>')
        parts.append(f'<div style="{style}"><div style="font-size:11px;color:#555">{len(tokens)} tokens, '
                     f'{n_loss} with loss</div>{"".join(spans)}</div>')
    parts.append("</div>")
    return "".join(parts)
