"""Post-training evaluation time as a share of training time (issue 11, goal: under 20 %).

Times one run from its events, so the same script measures any lorakit commit: training is from
``RunStarted`` to the last ``StepLogged``; post-training is from the last step to ``RunFinished``
(the eval loss, the task metric after and before, the sample generations, the adapter save).

    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/eval_share.py --store /tmp/old.db  # an old checkout
    .venv/bin/python benchmarks/eval_share.py --store /tmp/new.db --warm  # the base's result cached first

Defaults: ``RunConfig()`` (LoRA r8 on smollm2-135m at its recommended values; ``--set quant=nf4``: QLoRA); ``--demo``:
the LoRA run of ``lorakit demo`` (40 steps, 24 eval examples, learning rate 5e-4), the issue's yardstick.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lorakit
from lorakit.config.run_config import RunConfig
from lorakit.run.events import RunFinished, RunStarted, StepLogged


class Clock:
    """A sink noting when the run started training, last stepped and finished."""

    def __init__(self):
        self.started = self.last_step = self.finished = None

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, RunStarted):
            self.started = now
        elif isinstance(event, StepLogged):
            self.last_step = now
        elif isinstance(event, RunFinished):
            self.finished = now


def measure(cfg: RunConfig, store: str) -> dict:
    clock = Clock()
    rec = lorakit.train(cfg, sinks=[clock], store=store)
    train_s = clock.last_step - clock.started
    post_s = clock.finished - clock.last_step
    out = dict(status=rec.status, train_s=round(train_s, 1), post_s=round(post_s, 1),
               share=round(post_s / train_s, 3), task_metric=rec.task_metric,
               task_metric_before=rec.task_metric_before, wall_s=round(rec.wall_s, 1))
    for k in ("load_s", "train_s", "eval_s", "task_eval_s", "samples_s"):  # the record's own, where it has them
        if hasattr(rec, k):
            out[f"record_{k}"] = None if getattr(rec, k) is None else round(getattr(rec, k), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="run store file (a fresh one measures a cold cache)")
    p.add_argument("--runs", type=int, default=1, help="identical runs in a row")
    p.add_argument("--max-steps", type=int, default=None, help=f"default {RunConfig.max_steps}; --demo: 40")
    p.add_argument("--demo", action="store_true", help="the demo's LoRA run instead of RunConfig()'s")
    p.add_argument("--set", nargs="*", default=[], help="other RunConfig fields, e.g. quant=nf4 eval_examples=32")
    p.add_argument("--warm", action="store_true",
                   help="first a 1-step run, so the measured runs find the base's result in the store")
    ns = p.parse_args()
    cfg = RunConfig(max_steps=40, eval_examples=24, learning_rate=5e-4) if ns.demo else RunConfig()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when run through at_checkout.py
    from recommended_defaults import field_values

    extra = field_values(ns.set)
    if extra:
        cfg = cfg.replace(**extra)
    if ns.max_steps is not None:
        cfg = cfg.replace(max_steps=ns.max_steps)
    if ns.warm:
        print(json.dumps(dict(run="warm-up", **measure(cfg.replace(max_steps=1), ns.store))), flush=True)
    for i in range(ns.runs):
        print(json.dumps(dict(run=i + 1, **measure(cfg, ns.store))), flush=True)


if __name__ == "__main__":
    main()
