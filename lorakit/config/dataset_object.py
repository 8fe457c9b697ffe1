"""An in-memory Hugging Face ``Dataset`` given as ``RunConfig.dataset``, saved once so that the run
record names data on disk.

A config is stored as JSON with every run, so it holds a path, never an object: ``persist`` writes the
Dataset with ``save_to_disk`` under ``<LORAKIT_HOME>/datasets/<fingerprint>`` (the hash ``datasets``
gives its content and transforms, so the same data is written once) and the config keeps that folder,
which ``lorakit.data`` reads back like any ``save_to_disk`` folder. A leaf module: RunConfig's
validation reaches it.
"""
from __future__ import annotations

import shutil

from lorakit.common.errors import ConfigError
from lorakit.common.home import cache_home


def is_hf_dataset(value) -> bool:
    """Whether ``value`` is a ``datasets.Dataset`` or ``DatasetDict`` (checked without importing datasets)."""
    return type(value).__module__.startswith("datasets.") and type(value).__name__ in ("Dataset", "DatasetDict")


def train_split(data):
    """``data`` itself, or of a DatasetDict its 'train' split; None when it has none."""
    if type(data).__name__ != "DatasetDict":
        return data
    return data["train"] if "train" in data else None


def persist(data) -> str:
    """The folder holding the Dataset (or a DatasetDict's 'train' split) ``data``, saved there once."""
    split = train_split(data)
    if split is None:
        raise ConfigError({"dataset": f"dataset: the DatasetDict holds the splits {', '.join(map(repr, data))} but "
                                      "no 'train' split; pass the split to train on (dataset_dict['name'])"})
    folder = cache_home() / "datasets" / split._fingerprint  # datasets' own content-and-history hash
    if not (folder / "state.json").is_file():
        partial = folder.with_name(folder.name + ".partial")  # renamed when whole: never half-written
        shutil.rmtree(partial, ignore_errors=True)  # what an interrupted save left
        split.save_to_disk(str(partial))
        partial.replace(folder)
    return str(folder)
