"""What the run-store tests share: a realistic run record, and Python run in a process of its own."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.run.record import RunRecord

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent  # for a subprocess: sys.path.insert(0, HERE); from store_support import ...


def make_record(run_id="run-lora-r8", status="finished", steps=12, created_at=1_760_000_000.0, **over) -> RunRecord:
    """A realistic finished LoRA run on SmolLM2-135M (r=8 on q,v: 460,800 trainable parameters)."""
    cfg = over.pop("config", RunConfig(model="smollm2-135m", rank=8, alpha=16, max_steps=max(steps, 1)))
    history = [
        {"step": s, "loss": 2.6 * 0.93 ** s, "learning_rate": 2e-4 * (1 - (s - 1) / steps),
         "tokens_per_s": 410.0 + s, "elapsed_s": 0.62 * s, "grad_norm": 1.8 / s}
        for s in range(1, steps + 1)
    ]
    rec = RunRecord(
        config=cfg, run_id=run_id, status=status, created_at=created_at, device="cpu", history=history,
        evals=[{"step": steps // 2, "eval_loss": 1.91, "perplexity": math.exp(1.91), "task_metric": 0.25},
               {"step": steps, "eval_loss": 1.52, "perplexity": math.exp(1.52), "task_metric": 0.5}],
        memory=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 61_865_984),
        planned_memory=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256),
        trainable_params=460_800, total_params=134_975_808, train_loss=1.47, eval_loss=1.52,
        perplexity=math.exp(1.52), task_metric=0.5, task_metric_before=0.0, tokens_per_s=415.2, wall_s=7.9,
        load_s=1.3, train_s=5.1, eval_s=0.4, task_eval_s=1.0, samples_s=0.0,
        time_to_first_loss_s=2.1, adapter_path=None, adapter_bytes=1_846_432,
        samples=[{"prompt": 'Extract JSON: "Ann, 31, Oslo"', "reference": '{"name": "Ann"}',
                  "before": "Sure! Here", "after": '{"name": "Ann"}'}],
        data_stats={"n_train": 512, "n_eval": 32, "truncated": 0},
    )
    for k, v in over.items():
        setattr(rec, k, v)
    return rec


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) in a fresh Python process from the repo root."""
    e = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          cwd=str(REPO), timeout=120)
