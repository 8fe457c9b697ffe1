"""What the comparison tests (table, figures, report) share: hand-built run records of SmolLM2-135M."""
from __future__ import annotations

import math

from lorakit.common.display import MiB
from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.run.record import RunRecord

REQUIRED = [
    "run_id", "label", "method", "quant", "rank", "alpha", "target_modules", "trainable_params", "trainable_pct",
    "mem_base_weights", "mem_adapters", "mem_gradients", "mem_optimizer", "mem_activations", "mem_total",
    "tokens_per_s", "train_loss", "eval_loss", "task_metric", "wall_s", "status", "double_quant", "optimizer",
    "dataset", "max_steps", "perplexity", "task_metric_before", "adapter_bytes", "created_at",
]
SMOL_TOTAL = 134_515_008
# step peaks: measured for LoRA (with a planned one) and QLoRA; full fine-tuning has none (a run stored before peaks)
LORA_PEAK, LORA_PEAK_PLANNED, QLORA_PEAK = 640_000_000, 630_000_000, 240_000_000


def run(run_id, cfg, *, trainable, mem, planned=None, task=None, losses=(2.6, 2.1, 1.8, 1.6), evals=(),
        created=1_760_000_000.0, status="finished", samples=()):
    history = [{"step": i + 1, "loss": loss, "learning_rate": 2e-4, "tokens_per_s": 400.0, "elapsed_s": 0.6 * (i + 1),
                "grad_norm": 1.0} for i, loss in enumerate(losses)]
    return RunRecord(
        config=cfg, run_id=run_id, status=status, created_at=created, history=history,
        evals=[{"step": s, "eval_loss": v, "perplexity": math.exp(v), "task_metric": task} for s, v in evals],
        memory=mem, planned_memory=planned, trainable_params=trainable,
        total_params=SMOL_TOTAL + (trainable if cfg.method == "lora" else 0),
        train_loss=losses[-1] if losses else None, eval_loss=evals[-1][1] if evals else None,
        perplexity=math.exp(evals[-1][1]) if evals else None, task_metric=task, task_metric_before=0.0,
        tokens_per_s=400.0, wall_s=12.5, adapter_bytes=1_846_432 if cfg.method == "lora" else None,
        samples=list(samples),
    )


def sample_records() -> list:
    """LoRA r8, QLoRA NF4 r16 (all-linear) and full fine-tuning of SmolLM2-135M, oldest first."""
    lora = run("lora8", RunConfig(model="smollm2-135m", rank=8, alpha=16), trainable=460_800,
               mem=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 61_865_984,
                                   peak=LORA_PEAK, peak_at="logits-loss"),
               planned=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256,
                                       peak=LORA_PEAK_PLANNED, peak_at="logits-loss",
                                       transient={"cross-entropy gradients": 25_165_824}), task=0.50,
               evals=[(2, 2.0), (4, 1.7)], created=100.0,
               samples=[{"prompt": "Extract: <Ann & Bob>", "reference": '{"n": 2}', "before": "Sure!",
                         "after": '{"n": 2}'}])
    qlora = run("qlora16", RunConfig(model="smollm2-135m", quant="nf4", rank=16, alpha=32,
                                     target_modules="all-linear", optimizer="paged_adamw_8bit"),
                trainable=4_884_480, mem=MemoryBreakdown(92_000_000, 19_537_920, 19_537_920, 9_900_000, 70_000_000,
                                                         peak=QLORA_PEAK, peak_at="backward"),
                task=0.55, losses=(2.7, 2.2, 1.9, 1.7), created=200.0)
    full = run("full", RunConfig(model="smollm2-135m", method="full"), trainable=SMOL_TOTAL,
               mem=MemoryBreakdown(538_060_032, 0, 538_060_032, 1_076_120_064, 80_000_000), task=0.60,
               losses=(2.6, 1.9, 1.5, 1.3), created=300.0)
    return [lora, qlora, full]




def point(run_id, mem_mib, metric):
    """A run with only a total memory (all base weights) and a task metric: a point of a Pareto chart."""
    return run(run_id, RunConfig(model="smollm2-135m", name=run_id), trainable=1,
               mem=MemoryBreakdown(int(mem_mib * MiB), 0, 0, 0, 0), task=metric)
