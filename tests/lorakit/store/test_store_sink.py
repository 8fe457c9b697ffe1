"""StoreSink: a run recorded while it trains, from its events; a sink that never raises."""
from __future__ import annotations

import math

from store_support import make_record

from lorakit.config.run_config import RunConfig
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.run.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged
from lorakit.store import RunNotFound, StoreSink


def test_store_sink_records_a_run_as_it_happens(store):
    sink = StoreSink(store, flush_every=5)
    cfg = RunConfig(model="smollm2-135m", max_steps=7)
    planned = MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256)
    sink(RunStarted("live1", cfg, trainable_params=460_800, total_params=134_975_808, planned_memory=planned))
    r = store.load("live1")
    assert r.status == "running" and r.trainable_params == 460_800 and r.planned_memory == planned

    def step(s):
        return StepLogged("live1", s, 7, loss=2.5 - 0.1 * s, learning_rate=2e-4, tokens_per_s=400.0,
                          elapsed_s=0.6 * s, grad_norm=1.0)

    for s in range(1, 5):
        sink(step(s))
    assert store.load("live1").history == []  # buffered
    sink(step(5))
    assert [h["step"] for h in store.load("live1").history] == [1, 2, 3, 4, 5]
    sink(step(6))
    sink(MemoryMeasured("live1", 1, measured=MemoryBreakdown(1, 2, 3, 4, 5), planned=planned))
    assert store.load("live1").memory.total == 15
    sink(EvalDone("live1", 6, eval_loss=1.9, perplexity=math.exp(1.9), task_metric=0.25))
    r = store.load("live1")
    assert [h["step"] for h in r.history] == [1, 2, 3, 4, 5, 6]  # flushed before the eval
    assert r.evals[0]["eval_loss"] == 1.9
    sink(step(7))  # the last step flushes at once
    assert len(store.load("live1").history) == 7

    final = make_record("live1", steps=7, config=cfg)
    sink(RunFinished("live1", "finished", final))
    assert store.load("live1").to_dict() == final.to_dict()
    assert sink.errors == []


def test_store_sink_finished_without_record_and_never_raises(store):
    sink = StoreSink(store, flush_every=100)
    sink(RunStarted("r2", RunConfig(model="smollm2-135m"), trainable_params=1, total_params=2))
    sink(StepLogged("r2", 1, 30, 2.0, 2e-4, 400.0, 0.6))
    sink(RunFinished("r2", "failed", None, reason="loss became NaN at step 2"))
    r = store.load("r2")
    assert (r.status, r.reason, len(r.history)) == ("failed", "loss became NaN at step 2", 1)
    sink(StepLogged("never-started", 1, 1, 2.0, 2e-4, 400.0, 0.6))  # flushes at once, to a missing run
    assert len(sink.errors) == 1 and isinstance(sink.errors[0], RunNotFound)
