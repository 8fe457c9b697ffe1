"""Run labels that tell runs apart: the model, the run's kind, and what differs from the runs beside it.

A run's own label (``RunConfig.label``: ``lora-r16``, ``qlora-nf4-r8-dora``, or the name a user gave) says
nothing of the model, and a sweep's trials share it. In a table the label is therefore built from the
rows it sits among: ``tiny-llama · lora-r16`` for an unnamed run, the user's name as given otherwise, and
where several rows share that, the settings that differ between them, as a sweep's changed axes:
``smollm2-135m · lora-r16 · lr 0.0001`` beside ``smollm2-135m · lora-r16 · lr 0.0002``. Runs that still
share a label are told apart by their run ids where they are drawn (``table.unique_names``).

Plain functions of a ``compare()`` frame's columns, so a table of thousands of rows is labelled at once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SEP = " · "
# The frame's columns that can tell runs of one label apart, in the order they are named, with the word a
# label uses for each. method / quant / rank / variant are already in an unnamed run's own label.
AXES: tuple[tuple[str, str], ...] = (
    ("model", ""), ("method", ""), ("variant", ""), ("quant", ""), ("rank", "r"), ("alpha", "alpha"),
    ("target_modules", "targets"), ("learning_rate", "lr"), ("max_steps", "steps"), ("batch_size", "batch"),
    ("seq_len", "seq"), ("optimizer", "optim"), ("dataset", "data"), ("double_quant", "double quant"),
)


def model_word(model: Any) -> str:
    """A model as a label names it: a built-in name as it is, a hub id or a local path by its last part."""
    text = str(model or "?").rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or text


def own_label(name: str, model: Any, kind: str) -> str:
    """One run's label before it meets the others: the user's ``name``, else ``<model> · <kind>`` (``kind``:
    ``RunConfig.label``, e.g. ``lora-r16``)."""
    return name if name else f"{model_word(model)}{SEP}{kind}"


def tell_apart(df: "pd.DataFrame") -> "pd.Series":
    """The frame's ``label`` column with, where rows share a label, the settings (AXES) that differ
    between those rows appended, e.g. ``tiny-llama · lora-r8 · lr 0.0001``."""
    import pandas as pd

    labels = df["label"].astype(object)
    shared = labels.duplicated(keep=False)
    if not shared.any():
        return labels
    rows, group = df[shared], labels[shared]
    axes = [(c, word) for c, word in AXES if c in df.columns]
    shown = pd.DataFrame({c: _texts(rows[c]) for c, _ in axes}, index=rows.index)
    varying = shown.groupby(group.values).transform("nunique")  # distinct values among the rows of a label
    part = group.copy()
    for c, word in axes:
        differs = varying[c] > 1
        if differs.any():
            part = part.where(~differs, part + SEP + (f"{word} " if word else "") + shown[c])
    out = labels.copy()
    out[shared] = part
    return out


def _texts(column: "pd.Series") -> list:
    """Each value as a label writes it, each distinct value written once (thousands of rows, few values)."""
    import pandas as pd

    codes, values = pd.factorize(column.astype(object), use_na_sentinel=False)
    texts = [_value_text(v) for v in values]
    return [texts[i] for i in codes]


def _value_text(v: Any) -> str:
    import numpy as np
    import pandas as pd

    if isinstance(v, (bool, np.bool_)):
        return "on" if v else "off"
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return format(float(v), "g")
    return str(v)
