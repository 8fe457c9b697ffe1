"""``TensorBoardSink``: lorakit runs as TensorBoard event files, one folder per run under
``RunConfig.tensorboard_dir`` (default ``./tensorboard``), named ``<label>-<run id>``.

Scalars by name (``train/loss``, ``memory/measured/peak``, ...) at their step; the RunConfig fields
and the tags as the HParams plugin's session (TensorBoard's HPARAMS tab), and as one text summary.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.training.trackers import metrics
from lorakit.training.trackers.base import TrackerSink

DEFAULT_DIR = "tensorboard"


def log_dir(cfg, run_id: str) -> Path:
    root = Path(getattr(cfg, "tensorboard_dir", "") or DEFAULT_DIR).expanduser()
    return root / f"{cfg.label}-{run_id}"


@dataclass
class _Run:
    writer: Any  # torch's SummaryWriter
    hparams_end: Any  # the HParams session's end summary, written when the run ends


class TensorBoardSink(TrackerSink):
    name = "tensorboard"

    def __init__(self):
        super().__init__()
        self.dirs: dict = {}  # lorakit run id -> its event folder

    def open(self, run_id: str, cfg, resumed_at: int = 0):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = log_dir(cfg, run_id)
        # a resumed run writes into its own folder again; purge_step makes TensorBoard drop what the stopped part
        # logged after the checkpoint, so each step has one value
        writer = SummaryWriter(log_dir=str(folder), purge_step=resumed_at + 1 if resumed_at else None)
        values = {**metrics.params(cfg), **{f"tag.{k}": v for k, v in metrics.tags(cfg, run_id).items()}}
        experiment, start, end = hparams(values, {"final/eval_loss": None, "final/task_metric": None})
        if not resumed_at:  # the HParams session began with the run; its end is written when the run ends
            for summary in (experiment, start):
                writer.file_writer.add_summary(summary)
            writer.add_text("config", "```\n" + json.dumps(values, indent=1) + "\n```")
        else:
            writer.add_text("resumed", f"resumed from the checkpoint at step {resumed_at}", resumed_at + 1)
        self.dirs[run_id] = folder
        return _Run(writer, end)

    def log(self, handle: _Run, values: dict, step: int) -> None:
        for name, value in values.items():
            handle.writer.add_scalar(name, value, step)

    def close(self, handle: _Run, record, status: str) -> None:
        reason = getattr(record, "reason", "")
        handle.writer.add_text("status", status + (f": {reason}" if reason else ""))
        handle.writer.file_writer.add_summary(handle.hparams_end)
        handle.writer.close()
