"""A run's checkpoints: the transformers Trainer's own (``save_steps``, ``save_total_limit``,
``resume_from_checkpoint``), kept in the run's folder of the store, ``<run folder>/checkpoints/checkpoint-N``.

The Trainer writes each checkpoint's model part with ``save_pretrained`` (for a peft model: the adapter
alone; for full fine-tuning: every weight), then the optimizer, scheduler and RNG states, and
``trainer_state.json`` last; so a checkpoint without a readable ``trainer_state.json`` was cut short (a
kill mid-save) and is never resumed from. The Trainer deletes older checkpoints beyond ``checkpoint_keep``.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Optional

FOLDER = "checkpoints"  # inside a run's folder (the store's adapter_dir(run_id))
_NAME = re.compile(r"^checkpoint-(\d+)$")  # the Trainer's PREFIX_CHECKPOINT_DIR-<global step>
_STATE = "trainer_state.json"


def folder_of(run_folder: Path) -> Path:
    """Where a run's checkpoints go, inside its folder."""
    return Path(run_folder) / FOLDER


def step_of(checkpoint: Path) -> int:
    """The optimizer step a checkpoint folder was saved at (-1: not a checkpoint's name)."""
    m = _NAME.match(Path(checkpoint).name)
    return int(m.group(1)) if m else -1


def complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing it (its trainer_state.json, written last, reads back)."""
    try:
        json.loads((Path(checkpoint) / _STATE).read_text())
        return True
    except (OSError, ValueError):
        return False


def _all(folder: Path) -> list[Path]:
    if not Path(folder).is_dir():
        return []
    return sorted((p for p in Path(folder).iterdir() if p.is_dir() and step_of(p) >= 0), key=step_of)


def latest(folder: Path) -> Optional[Path]:
    """The newest complete checkpoint in ``folder`` (None when there is none)."""
    done = [p for p in _all(folder) if complete(p)]
    return done[-1] if done else None


def incomplete(folder: Path) -> list[Path]:
    """Checkpoints a kill cut short while being written (safe to delete)."""
    return [p for p in _all(folder) if not complete(p)]


def disk_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` (a checkpoint, or a run's whole checkpoint folder)."""
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


def trainer_settings(every: int, keep: int, folder: Optional[Path]) -> dict:
    """TrainingArguments for checkpoints every ``every`` steps into ``folder`` (none: every=0 or no folder)."""
    if not every or folder is None:
        return {"save_strategy": "no"}
    # save_only_model=False: optimizer, scheduler, RNG and data position are what makes a resume exact
    return {"save_strategy": "steps", "save_steps": every, "save_total_limit": keep, "save_only_model": False}


def save_on_stop(stop: threading.Event):
    """A TrainerCallback that saves a checkpoint at the step a stop request ends the run on, so a
    Resume continues from exactly there (the regular ones may be up to ``checkpoint_every`` steps back)."""
    from transformers import TrainerCallback

    class SaveOnStop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop.is_set():
                control.should_save = True

    return SaveOnStop()
