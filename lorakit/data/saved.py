"""A Hugging Face ``save_to_disk`` folder as data (an in-memory ``Dataset`` given as
``RunConfig.dataset`` becomes one: ``lorakit.config.dataset_object``)."""
from __future__ import annotations

from pathlib import Path

from lorakit.config.dataset_object import train_split
from lorakit.data.rows import DataError

# What Dataset.save_to_disk / DatasetDict.save_to_disk write at a folder's top.
_DATASET_FILES = ("state.json", "dataset_info.json")
_DICT_FILE = "dataset_dict.json"


def is_saved_dataset(path: Path) -> bool:
    """Whether the folder ``path`` is one ``save_to_disk`` wrote."""
    return (path / _DICT_FILE).is_file() or all((path / f).is_file() for f in _DATASET_FILES)


def load_saved(path: Path):
    """The Dataset in a ``save_to_disk`` folder; of a DatasetDict, its 'train' split."""
    import datasets

    src = repr(str(path))
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged folder: FileNotFoundError, ArrowInvalid, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"dataset: {src} could not be read with datasets.load_from_disk ({first})") from None
    split = train_split(data)
    if split is None:
        raise DataError(f"dataset: {src} holds the splits {', '.join(map(repr, data))} but no 'train' split; "
                        "save the split to train on (dataset_dict['name'].save_to_disk(...))")
    return split
