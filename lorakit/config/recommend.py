"""Recommended values: what a RunConfig field left unset becomes, per model family and method.

A newcomer who changes only the model should get a run that works and visibly learns. The values here
come from measurements (``benchmarks/recommended_defaults.py``, recorded in ``benchmarks/RESULTS.md``
under "Recommended defaults"), not from habit: a BERT classifier's fresh head needs a learning rate ten
times a decoder's adapters', and a classifier trained on a decoder's task has no labels at all.

A leaf module (plain data; imports only the ``families``, ``parts`` and ``registry`` leaves), so that ``RunConfig``
validation can ask it.
"""
from __future__ import annotations

from lorakit.config.families import family_of
from lorakit.config.parts import four_bit
from lorakit.config.registry import REGISTRY

# The built-in data tasks' kinds (the model task each is written for). ``lorakit.data.tasks`` owns the
# tasks; validation cannot import it (it would reach the data machinery), so its kinds are listed here
# and tests/lorakit/test_recommend.py holds the two lists equal.
TASK_KINDS = {
    "extract-json": "causal-lm", "sort-words": "causal-lm", "arithmetic": "causal-lm", "date-iso": "causal-lm",
    "topic": "classification", "headline": "seq2seq",
}

# The fields RunConfig fills from here when left unset (None, or '' for the dataset).
RECOMMENDED_FIELDS = ("dataset", "learning_rate", "max_steps", "batch_size")

# the run's task -> method kind ('lora', 'qlora', 'full') -> values, measured (RESULTS.md). On smollm2-135m,
# 30 steps of 4: full fine-tuning learns extract-json at 2e-4 (exact match 0 -> 0.66) where LoRA and QLoRA
# barely move (0.03); at 2e-3 they reach 0.62 / 0.50, and date-iso 0.91 / 0.84 (the adapters start at
# zero and are few: they need a rate ten times the whole model's). The classification ones are measured on
# minilm-l6 / topic (the fresh classifier head trains in full beside the adapters and needs a large rate).
_CAUSAL = {"dataset": "extract-json", "max_steps": 30, "batch_size": 4}
_CAUSAL_RATE = {"lora": 2e-3, "qlora": 2e-3, "full": 2e-4}
_CLASSIFY = {"dataset": "topic", "max_steps": 40, "batch_size": 8}
_CLASSIFY_RATE = {"lora": 3e-3, "qlora": 3e-3, "full": 1e-4}
RECOMMENDED = {
    "causal-lm": {kind: {**_CAUSAL, "learning_rate": lr} for kind, lr in _CAUSAL_RATE.items()},
    "classification": {kind: {**_CLASSIFY, "learning_rate": lr} for kind, lr in _CLASSIFY_RATE.items()},
    # a T5 also trains the decoders' prompt/answer tasks; its own kind first, as the Studio offers it.
    # Its rates are the decoders': the one built-in T5 is random, so no T5 measurement could choose them.
    "seq2seq": {kind: {**_CAUSAL, "dataset": "headline", "learning_rate": lr} for kind, lr in _CAUSAL_RATE.items()},
}


# Built-in tasks that no method learns in the default 30 steps (RESULTS, "Every built-in model at its
# recommended defaults"): on smollm2-135m at 30 steps, sort-words and arithmetic stay at 0.00-0.06 exact
# match with LoRA, QLoRA and full fine-tuning alike. A run on one of them with its steps unset gets these.
TASK_STEPS = {"sort-words": 100, "arithmetic": 100}
# Where a task's own 100-step runs learned at another rate than the family's (exact match on 32 prompts):
# QLoRA on sort-words 0.03 at 2e-3 (0.09 after 150 steps), 0.19 at 4e-3; full fine-tuning on arithmetic
# 0.00 at 2e-4 and at 5e-4, 0.09 at 1e-4.
TASK_RATES = {("sort-words", "qlora"): 4e-3, ("arithmetic", "full"): 1e-4}


def method_kind(method, quant) -> str:
    """'full', 'qlora' (LoRA on a 4-bit base) or 'lora' (also LoRA on an 8-bit base)."""
    if method == "full":
        return "full"
    return "qlora" if four_bit(quant) else "lora"


def run_task(model, task="") -> str:
    """The task a run trains for: ``task``, else a built-in model's own; a hub id or a local folder is
    known only once loaded, and is recommended a decoder's values until then."""
    if isinstance(task, str) and task in RECOMMENDED:
        return task
    info = REGISTRY.get(model) if isinstance(model, str) else None
    return info.task if info is not None else "causal-lm"


def recommended(model, method="lora", quant="none", task="", dataset="") -> dict:
    """The recommended value of each of ``RECOMMENDED_FIELDS`` for this model, task, method and quantization;
    the steps (and for some, the rate) also follow the data: ``dataset`` when given, else the recommended one."""
    kind = method_kind(method, quant)
    values = dict(RECOMMENDED[run_task(model, task)][kind])
    data = dataset or values["dataset"]
    if isinstance(data, str) and data in TASK_STEPS:
        values["max_steps"] = TASK_STEPS[data]
        values["learning_rate"] = TASK_RATES.get((data, kind), values["learning_rate"])
    return values


def data_kind_problem(dataset, model, task: str = "") -> str:
    """Why the built-in ``dataset`` cannot train this model for its task ("" when it can, or when the
    dataset is a file: its columns are checked when it is read)."""
    kind = TASK_KINDS.get(dataset) if isinstance(dataset, str) else None
    info = REGISTRY.get(model) if isinstance(model, str) else None
    if kind is None or info is None:
        return ""
    trains = run_task(model, task)
    if (kind == "classification") == (trains == "classification"):
        return ""
    fitting = [name for name, k in TASK_KINDS.items() if (k == "classification") == (trains == "classification")]
    columns = ("'text' and 'label'" if trains == "classification"
               else "'prompt' and 'completion', or 'messages'")
    return (f"dataset {dataset!r} is a {kind} task, but this run trains {model} (a {family_of(info.architecture)}) "
            f"for {trains}: use {', '.join(map(repr, fitting))} or a file with {columns} columns, "
            "or leave dataset unset for the recommended one")
