"""The training engine on tiny-llama: events, record, determinism, stop, NaN, failures, store."""
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import lorakit
from lorakit.run import events as ev
from lorakit.store import RunStore

TINY = dict(model="tiny-llama", max_steps=4, batch_size=2, train_examples=24, eval_examples=4,
            learning_rate=1e-3)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.db")


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


def test_a_finished_run_emits_events_and_returns_a_full_record(store):
    rec_sink = Recorder()
    rec = lorakit.train(lorakit.RunConfig(**TINY), sinks=[rec_sink], store=store)
    assert rec.status == "finished", rec.reason
    kinds = [type(e).__name__ for e in rec_sink.events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert [e.step for e in rec_sink.of(ev.StepLogged)] == [1, 2, 3, 4]
    # the breakdown after the first optimizer step, then again with the first two steps' peak
    # step 1's breakdown, then again with the peak of steps 1-2, and again once the step the run plan names as
    # its peak (a later one) was profiled
    measured = rec_sink.of(ev.MemoryMeasured)
    first, with_peak = measured[0], measured[-1]
    assert 2 <= len(measured) <= 3
    assert first.step == 1 and with_peak.measured.peak is not None and with_peak.planned.peak is not None
    assert rec.memory.peak == with_peak.measured.peak and len(rec_sink.of(ev.EvalDone)) == 1
    # the record
    assert [h["step"] for h in rec.history] == [1, 2, 3, 4]
    assert all(math.isfinite(h["loss"]) and h["tokens_per_s"] > 0 for h in rec.history)
    assert rec.trainable_params == 2 * 8 * ((64 + 64) + (64 + 32))  # r=8 on q (64->64) and v (64->32)
    assert rec.memory.adapters == 4 * rec.trainable_params
    assert rec.memory.optimizer >= 2 * 4 * rec.trainable_params and rec.memory.activations > 0
    assert rec.planned_memory is not None and rec.planned_memory.adapters == rec.memory.adapters
    assert rec.eval_loss is not None and rec.perplexity == pytest.approx(math.exp(rec.eval_loss))
    assert rec.task_metric is not None and rec.task_metric_before is not None
    assert len(rec.samples) == 3 and {"prompt", "reference", "before", "after"} <= set(rec.samples[0])
    assert rec.tokens_per_s > 0 and rec.time_to_first_loss_s > 0 and rec.wall_s >= rec.time_to_first_loss_s
    assert rec.data_stats["n_train"] == 24 and rec.data_stats["n_eval"] == 4
    # where the time went: each phase timed, together within the run's wall time
    assert rec.load_s > 0 and rec.train_s > 0 and rec.eval_s > 0 and rec.task_eval_s > 0 and rec.samples_s >= 0
    assert rec.load_s + rec.train_s + rec.eval_s + rec.task_eval_s + rec.samples_s < rec.wall_s
    assert rec.train_s < rec.history[-1]["elapsed_s"] and "train " in rec.timing_text()
    # adapter saved with peft (safetensors) in the store's adapter directory
    assert rec.adapter_path and rec.adapter_path.startswith(str(store.adapter_dir(rec.run_id)))
    assert rec.adapter_bytes > 4 * rec.trainable_params
    from lorakit.adapters.base_record import read_record  # ... with lorakit's record of the base it was trained on

    assert read_record(rec.adapter_path)["run_id"] == rec.run_id
    assert read_record(rec.adapter_path)["base"]["name"] == "tiny-llama"
    # and the store holds the same run
    stored = store.load(rec.run_id)
    assert (stored.train_s, stored.task_eval_s) == (rec.train_s, rec.task_eval_s)
    assert stored.status == "finished" and [h["loss"] for h in stored.history] == [h["loss"] for h in rec.history]


def test_same_config_and_seed_give_the_same_loss_curve():
    cfg = lorakit.RunConfig(**dict(TINY, max_steps=3, eval_examples=1))
    a = lorakit.train(cfg, store=False)
    b = lorakit.train(cfg, store=False)
    c = lorakit.train(cfg.replace(seed=1), store=False)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_measure_memory_off_trains_the_same_steps_without_any_measurement(monkeypatch):
    """``measure_memory=False``: no profiler, no activation count, no resident count; the same losses (the
    measurement never changes what trains), and the plan still made."""
    from lorakit.memory import breakdown, step_peak

    used = []
    monkeypatch.setattr(step_peak.StepPeak, "start", lambda self, *a, **k: used.append("profiler"))
    monkeypatch.setattr(breakdown.ActivationRecorder, "__enter__", lambda self: used.append("activations"))
    monkeypatch.setattr(breakdown, "measure", lambda *a, **k: used.append("resident"))
    cfg = lorakit.RunConfig(**dict(TINY, max_steps=3, eval_examples=1))
    off = lorakit.train(cfg.replace(measure_memory=False), store=False)
    assert off.status == "finished", off.reason
    assert used == [] and off.memory is None and off.planned_memory is not None
    monkeypatch.undo()
    on = lorakit.train(cfg, store=False)
    assert on.memory is not None and on.memory.assumes["steps"] == [1, 2]
    assert [h["loss"] for h in on.history] == [h["loss"] for h in off.history]


def test_stop_from_another_thread_ends_the_run_after_the_current_step(store):
    stop = threading.Event()

    def stopper(event):
        if isinstance(event, ev.StepLogged) and event.step == 2:
            threading.Thread(target=stop.set).start()  # another thread, as the Studio's Stop button

    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, max_steps=50)), sinks=[stopper], store=store, stop=stop)
    assert rec.status == "stopped" and "stopped by request" in rec.reason
    assert 2 <= len(rec.history) <= 3
    stored = store.load(rec.run_id)
    assert stored.status == "stopped" and len(stored.history) == len(rec.history)


def test_a_non_finite_loss_fails_the_run_with_the_step(store, monkeypatch):
    from lorakit.training.probe import (
        ProbingTrainer as Trainer,  # its compute_loss (the labelled-only head) is the run's
    )

    real = Trainer.compute_loss

    def poisoned(self, model, inputs, *a, **kw):
        loss = real(self, model, inputs, *a, **kw)
        if self.state.global_step >= 2:  # the third step's loss becomes NaN
            loss = loss * float("nan")
        return loss

    monkeypatch.setattr(Trainer, "compute_loss", poisoned)
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, max_steps=10)), store=store)
    assert rec.status == "failed"
    assert rec.reason == "non-finite loss (nan) at step 3"
    assert len(rec.history) == 3 and math.isnan(rec.history[-1]["loss"])
    assert store.load(rec.run_id).status == "failed"


def test_an_exception_inside_training_is_recorded_not_lost(store, monkeypatch):
    from transformers import Trainer

    def boom(self, *a, **kw):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(Trainer, "training_step", boom)
    rec = lorakit.train(lorakit.RunConfig(**TINY), store=store)
    assert rec.status == "failed" and rec.reason == "RuntimeError: kernel exploded"
    assert store.load(rec.run_id).reason == "RuntimeError: kernel exploded"


def test_a_missing_model_is_a_failed_run_with_the_reason(store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, model="nobody/nothing")), store=store)
    assert rec.status == "failed" and "no access to the hub" in rec.reason
    assert [r.run_id for r in store.records()] == [rec.run_id]


def test_a_missing_local_directory_is_a_failed_run_saying_no_such_directory(store):
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, model="./no/such/dir")), store=store)
    assert rec.status == "failed" and rec.reason.startswith("ModelUnavailable:"), rec.reason
    assert "no such directory" in rec.reason


def test_cuda_asked_on_a_machine_without_cuda_is_a_failed_run_naming_the_device(store, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rec = lorakit.train(lorakit.RunConfig(**TINY), store=store, device="cuda")
    assert rec.status == "failed" and "device 'cuda'" in rec.reason and "CUDA is not available" in rec.reason


def test_a_planner_failure_is_one_warning_line_and_the_reason_reaches_the_sinks(caplog, capfd, monkeypatch):
    """In a notebook (no logging handler) a traceback would be printed into the cell: the warning is
    one line, the traceback goes to DEBUG, and MemoryMeasured carries the reason for the UI."""
    import logging

    from lorakit.memory import planner

    def broken(*a, **kw):
        raise ValueError("cannot read this config\nsecond line")

    monkeypatch.setattr(planner, "planning", broken)  # what plan_for_batch and plan_for_steps call
    caplog.set_level(logging.DEBUG, logger="lorakit")
    sink = Recorder()
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, max_steps=1, eval_examples=1)), sinks=[sink], store=False)
    assert rec.status == "finished", rec.reason
    events = sink.of(ev.MemoryMeasured)  # after the step, and again with its measured peak
    assert len(events) == 2 and events[-1].measured.peak is not None
    for event in events:
        assert event.planned is None and event.plan_error == "ValueError: cannot read this config"
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING and "planner" in r.getMessage()]
    assert len(warnings_) == 1 and warnings_[0].exc_info is None
    assert "cannot read this config" in warnings_[0].getMessage()
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)  # the traceback, kept
    assert "Traceback" not in capfd.readouterr().err


def test_paged_adamw_8bit_on_cpu_prints_no_warning(recwarn):
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, optimizer="paged_adamw_8bit", max_steps=1, eval_examples=1)),
                        store=False, device="cpu")
    assert rec.status == "finished", rec.reason
    assert rec.memory.optimizer > 0  # the optimizer did make its state
    assert not [w for w in recwarn if "Paged optimizers" in str(w.message)]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_figures_are_filled_and_the_peak_is_this_runs_own():
    import torch

    big = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # 1 GiB before the run...
    del big  # ...freed: the run's peak must not include it
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, max_steps=1, eval_examples=1)), store=False, device="cuda")
    assert rec.status == "finished", rec.reason
    cuda = rec.memory.cuda
    assert set(cuda) == {"allocated", "reserved", "peak"}
    assert cuda["peak"] >= cuda["allocated"] > 0 and cuda["reserved"] >= cuda["allocated"]
    assert cuda["peak"] < 1 << 30


def test_full_finetuning_and_8bit_optimizer(store):
    full = lorakit.train(lorakit.RunConfig(**dict(TINY, method="full", max_steps=2)), store=store)
    assert full.status == "finished", full.reason
    assert full.trainable_params == full.total_params == 172_352
    assert full.memory.adapters == 0 and full.memory.gradients == 4 * 172_352
    assert full.adapter_bytes is None and full.weights_bytes > 4 * 172_352  # the kept fp32 model, not an adapter
    assert not (Path(full.adapter_path) / "adapter_config.json").exists()
    q8 = lorakit.train(lorakit.RunConfig(**dict(TINY, quant="nf4", optimizer="adamw_8bit", max_steps=2,
                                                target_modules="all-linear")), store=store)
    assert q8.status == "finished", q8.reason
    assert q8.memory.base_weights < full.memory.base_weights


def test_sweep_records_a_failing_trial_and_goes_on(store, monkeypatch):
    from lorakit.adapters import lora as adapters

    real = adapters.attach  # what train() calls, with the run's adapter part

    def flaky(model, adapter, *a, **kw):
        if adapter.rank == 2:
            raise RuntimeError("rank 2 is cursed")
        return real(model, adapter, *a, **kw)

    monkeypatch.setattr(adapters, "attach", flaky)
    table = lorakit.sweep(lorakit.RunConfig(**dict(TINY, max_steps=2, eval_examples=1)), store=store,
                          rank=[2, 4], method=["lora", "full"], quant=["none", "nf4"])
    # full+nf4 is invalid and skipped; rank does not matter for full, but each combination runs
    assert sorted(table["status"]) == ["failed", "failed", "finished", "finished", "finished", "finished"]
    assert len(store.records()) == 6


def test_runs_survive_a_new_process(store):
    rec = lorakit.train(lorakit.RunConfig(**dict(TINY, max_steps=2, eval_examples=1)), store=store)
    code = (f"import lorakit; from lorakit.store import RunStore\n"
            f"t = lorakit.compare(store=RunStore({str(store.path)!r}))\n"
            f"print(t.loc[0, 'run_id'], t.loc[0, 'status'], len(t))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == [rec.run_id, "finished", "1"], out.stderr


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_memory_probe_measures_the_first_real_step_and_agrees_with_the_plan(quant, monkeypatch):
    """Activations are counted during the Trainer's own first forward (no replay forward), and the
    planner is asked about that very batch: every category agrees, activations up to the Trainer's
    one-element loss normaliser (``loss / num_items_in_batch`` saves the divisor)."""
    from lorakit.memory import breakdown as memory

    replays = []
    real = memory.measure_activations
    monkeypatch.setattr(memory, "measure_activations", lambda *a, **k: replays.append(1) or real(*a, **k))
    rec = lorakit.train(lorakit.RunConfig(**{**TINY, "max_steps": 2, "quant": quant}), store=False)
    assert rec.status == "finished", rec.reason
    assert not replays, "the probe ran an extra forward instead of measuring the real step"
    m, p = rec.memory, rec.planned_memory
    assert (m.base_weights, m.adapters, m.gradients, m.optimizer) == \
        (p.base_weights, p.adapters, p.gradients, p.optimizer)
    assert 0 <= m.activations - p.activations <= 8


@pytest.mark.e2e
def test_default_model_lora_and_qlora_runs_show_in_compare_from_a_fresh_process(tmp_path):
    """On the real model: both runs land in the store, and a new
    Python process (as after a kernel restart) sees them in lorakit.compare()."""
    db = tmp_path / "runs.db"
    common = dict(model="smollm2-135m", max_steps=2, batch_size=2, seq_len=128, train_examples=8,
                  eval_examples=2)
    for quant in ("none", "nf4"):
        rec = lorakit.train(lorakit.RunConfig(quant=quant, **common), store=RunStore(db))
        assert rec.status == "finished", rec.reason
    code = ("import lorakit, sys\nt = lorakit.compare(store=sys.argv[1])\n"
            "print(t[['quant', 'status', 'mem_base_weights', 'trainable_params']].to_json(orient='records'))")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["quant"] for r in rows] == ["none", "nf4"] and {r["status"] for r in rows} == {"finished"}
    assert rows[0]["trainable_params"] == rows[1]["trainable_params"] == 460_800
    assert rows[1]["mem_base_weights"] < 0.4 * rows[0]["mem_base_weights"]  # NF4: ~161 vs 513 MiB
