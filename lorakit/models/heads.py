"""The head a model is loaded with for its task: which task (the one asked, else the model's own), the
transformers auto class, and a classifier's labels.

``models.load_model`` asks these once it has read the model's ``config.json``; a leaf besides
``families`` and ``errors``, so the rules can be tested without loading anything.
"""
from __future__ import annotations

from typing import Optional, Sequence

from lorakit.common.errors import ConfigError
from lorakit.config import families


def check_task(task: str, model_type: str) -> str:
    """``task``, or the model's default when empty; a ConfigError naming ``task`` when it does not fit."""
    task = task or families.default_task(model_type)
    if problem := families.task_problem(task, model_type):
        raise ConfigError({"task": problem})
    return task


def head_kwargs(task: str, labels: Optional[Sequence[str]]) -> dict:
    """``from_pretrained`` arguments for the head: a classifier's labels (``num_labels``, id2label,
    label2id); nothing for the other tasks."""
    if task != "classification":
        return {}
    labels = [str(x) for x in (labels or ())]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError({"task": "classification needs at least 2 distinct labels from the dataset (a "
                                   "classification task such as 'topic', or a file with 'text' and 'label' "
                                   f"columns); got {labels}"})
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={x: i for i, x in enumerate(labels)})


def auto_class(task: str):
    """The transformers auto class that builds a model with ``task``'s head (``families.AUTO_CLASS``)."""
    import importlib

    return getattr(importlib.import_module("transformers"), families.AUTO_CLASS[task])
