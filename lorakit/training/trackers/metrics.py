"""What a tracker records of lorakit's events, the same for every tracker: names -> numbers, and the
run's parameters and tags. Memory figures are bytes."""
from __future__ import annotations

import json
import math

from lorakit.memory.breakdown import CATEGORIES


def params(cfg) -> dict:
    """Every RunConfig field as text (lists as JSON), the form trackers keep parameters in."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.to_dict().items()}


def tags(cfg, run_id: str) -> dict:
    from lorakit.config.run_config import variant_name

    return {"lorakit.run_id": run_id, "method": cfg.method, "quant": cfg.quant, "variant": variant_name(cfg),
            "model": cfg.model, "label": cfg.label}


def step(event) -> dict:
    return _finite({"train/loss": event.loss, "train/learning_rate": event.learning_rate,
                    "train/tokens_per_s": event.tokens_per_s, "train/grad_norm": event.grad_norm})


def evaluation(event) -> dict:
    return _finite({"eval/loss": event.eval_loss, "eval/perplexity": event.perplexity,
                    "eval/task_metric": event.task_metric})


def memory(event) -> dict:
    """The five categories, total and peak, measured and (when the planner could) planned."""
    out = {}
    for kind, mem in (("measured", event.measured), ("planned", event.planned)):
        if mem is None:
            continue
        out.update({f"memory/{kind}/{c}": getattr(mem, c) for c in CATEGORIES})
        out[f"memory/{kind}/total"] = mem.total
        out[f"memory/{kind}/peak"] = mem.peak
    return _finite(out)


def final(record) -> dict:
    """The run's summary figures: the task metric before and after, final losses, throughput, time."""
    names = ("train_loss", "eval_loss", "task_metric_before", "task_metric", "tokens_per_s", "wall_s")
    return _finite({f"final/{n}": getattr(record, n, None) for n in names})


def _finite(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out
