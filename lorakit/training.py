"""train(): transformers' Trainer plus one callback that turns what happens into events.

The Trainer does the loop (optimizer, scheduler, seeding, data order, eval); lorakit adds:
- events to sinks (store, CLI bar, widgets) — training never touches a UI;
- the measured memory breakdown after the first optimizer step, next to the planner's prediction;
- real-token throughput, a stop request from another thread, non-finite-loss detection;
- a RunRecord that is always returned and stored, whether the run finished, stopped or failed.
"""
from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional

from .config import RunConfig
from .events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged, emit, error_line
from .record import RunRecord

log = logging.getLogger("lorakit")

OPTIM_NAMES = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}
N_SAMPLES = 3  # prompts shown before/after training


class StopRun(Exception):
    """Raised inside the loop to end a run with a given status."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def train(config: RunConfig, sinks: Iterable[Callable] = (), store=None, stop: Optional[threading.Event] = None,
          device: Optional[str] = None, output_dir: Optional[str] = None) -> RunRecord:
    """Run one fine-tuning job and return its RunRecord (never raises for a failed run).

    store: a RunStore, a path, None for the default store (``lorakit_runs.db`` in the working
    directory or ``$LORAKIT_STORE``), or False to keep nothing on disk.
    stop: a threading.Event; setting it ends the run after the current step (status 'stopped').
    """
    from .logging_setup import quiet_libraries
    from .models import default_device
    from .store import StoreSink, open_store

    quiet_libraries()
    store, opened_here = open_store(store)
    sinks = list(sinks)
    if store is not None:
        sinks.insert(0, StoreSink(store))
    stop = stop or threading.Event()
    record = RunRecord(config=config, created_at=time.time(), device=device or default_device())
    run = _Run(config, record, sinks, stop, store, output_dir)
    try:
        run.execute()
    except StopRun as s:
        run.end(s.status, s.reason)
    except KeyboardInterrupt:
        run.end("stopped", "interrupted (KeyboardInterrupt)")
    except Exception as exc:  # noqa: BLE001 - a failed run is data, never lost
        log.debug("run %s failed", record.run_id, exc_info=True)
        run.end("failed", f"{type(exc).__name__}: {exc}")
    finally:
        if opened_here:  # opened for this run only
            store.close()
    return record


class _Run:
    """One run's moving parts; kept out of train() so each step reads as one short method."""

    def __init__(self, cfg, record, sinks, stop, store, output_dir):
        self.cfg, self.record, self.sinks, self.stop, self.store = cfg, record, sinks, stop, store
        self.output_dir = output_dir
        self.t0 = time.perf_counter()
        self.model = self.tokenizer = self.bundle = self.trainer = self.last_batch = None
        self.activations = self.probed_batch = None  # bytes saved for backward by the first forward, its batch
        self.train_t0 = None  # when the Trainer's loop began
        self.train_t1 = None  # when the last step ended
        self.ended = False

    # --- phases -----------------------------------------------------------------------------
    def execute(self) -> None:
        self.load()
        self.check_stop()
        self.build_trainer()
        self.check_stop()
        self.fit()
        self.finish()

    def load(self) -> None:
        from transformers import set_seed

        from . import adapters
        from .data import build_data
        from .models import check_device, load_model

        cfg = self.cfg
        check_device(self.record.device)  # a clear reason before the allocator is touched
        _reset_cuda_peak(self.record.device)
        loaded = load_model(cfg.model, quant=cfg.quant, double_quant=cfg.double_quant, dtype=cfg.dtype,
                            device=self.record.device)
        self.record.load_s = loaded.load_s
        self.tokenizer = loaded.tokenizer
        set_seed(cfg.seed)  # LoRA's A init and dropout draw from this
        if cfg.method == "lora":
            self.model = adapters.attach_lora(loaded.model, cfg.rank, cfg.alpha, cfg.dropout,
                                              cfg.target_modules, cfg.gradient_checkpointing)
        else:
            self.model = adapters.prepare_full(loaded.model, cfg.gradient_checkpointing)
        self.record.trainable_params, self.record.total_params = adapters.count_params(self.model)
        self.bundle = build_data(cfg, self.tokenizer)
        self.record.data_stats = dict(self.bundle.stats)
        if cfg.method == "full":  # the base is about to change: sample it now
            self.record.samples = self.generate_samples("before")
        emit(self.sinks, RunStarted(self.record.run_id, cfg, self.record.trainable_params,
                                    self.record.total_params))

    def build_trainer(self) -> None:
        from transformers import PrinterCallback, TrainingArguments

        cfg = self.cfg
        out = self.output_dir or tempfile.mkdtemp(prefix="lorakit-")
        args = TrainingArguments(
            output_dir=out, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=max(cfg.batch_size, 8), learning_rate=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, lr_scheduler_type="linear",
            optim=OPTIM_NAMES[cfg.optimizer], bf16=cfg.bf16_autocast, seed=cfg.seed, data_seed=cfg.seed,
            logging_steps=1, logging_nan_inf_filter=False, save_strategy="no", report_to="none",
            disable_tqdm=True, eval_strategy="steps" if cfg.eval_every else "no",
            eval_steps=cfg.eval_every or None, include_num_input_tokens_seen="non_padding",
            use_cpu=self.record.device == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
        )
        self.trainer = _make_trainer_class()(
            model=self.model, args=args, train_dataset=self.bundle.train, eval_dataset=self.bundle.eval,
            data_collator=self.collate, processing_class=self.tokenizer,
            callbacks=[_EventCallback(self)], activation_probe=self.on_activations,
        )
        # with tqdm off, Trainer prints every log dict to stdout; lorakit's sinks report instead
        self.trainer.remove_callback(PrinterCallback)

    def collate(self, features):
        """The bundle's collator (dynamic padding); remembers the batch (the planner predicts for its shape)."""
        batch = self.bundle.collator(features)
        self.last_batch = batch
        return batch

    def fit(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*use_cache=True.*")
            # bitsandbytes warns when a paged optimizer creates its state on CPU; it falls back to
            # ordinary state, which is what the user gets and sees in the memory breakdown anyway.
            warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU",
                                    category=UserWarning)
            self.trainer.train()
        self.check_stop()

    def finish(self) -> None:
        step = self.trainer.state.global_step
        if not self.record.evals or self.record.evals[-1]["step"] != step:  # eval_every may have just run it
            self.trainer.evaluate()  # reported through the callback's on_evaluate
        self.evaluate_task()
        self.end("finished", "")

    # --- evaluation and samples -------------------------------------------------------------
    def evaluate_task(self) -> None:
        from .evaluation import evaluate_task

        after, _ = evaluate_task(self.model, self.tokenizer, self.bundle)
        self.record.task_metric = after
        if self.cfg.method == "lora":  # the base is the same model with the adapter switched off
            with self.model.disable_adapter():
                before, _ = evaluate_task(self.model, self.tokenizer, self.bundle)
                before_samples = self.generate_samples("before")
            self.record.samples = before_samples
        else:
            before = self.record.task_metric_before
        self.record.task_metric_before = before
        for sample, text in zip(self.record.samples, self.generate_texts()):
            sample["after"] = text
        if self.record.evals:
            self.record.evals[-1]["task_metric"] = after

    def generate_texts(self) -> list[str]:
        from .evaluation import generate

        prompts = [ex["messages"] for ex in self.bundle.eval_raw[:N_SAMPLES]]
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=64)

    def generate_samples(self, key: str) -> list[dict]:
        texts = self.generate_texts()
        return [{"prompt": ex["prompt"], "reference": ex["reference"], key: t}
                for ex, t in zip(self.bundle.eval_raw[:N_SAMPLES], texts)]

    # --- callbacks from the Trainer ----------------------------------------------------------
    def on_step(self, step: int, logs: dict, step_tokens: int, step_s: float) -> None:
        loss = float(logs["loss"])
        entry = dict(step=step, loss=loss, learning_rate=float(logs.get("learning_rate", 0.0)),
                     tokens_per_s=step_tokens / step_s if step_s > 0 else 0.0,
                     elapsed_s=time.perf_counter() - self.t0, grad_norm=_maybe_float(logs.get("grad_norm")))
        self.record.history.append(entry)
        if self.record.time_to_first_loss_s is None:
            self.record.time_to_first_loss_s = entry["elapsed_s"]
        emit(self.sinks, StepLogged(self.record.run_id, step, self.cfg.max_steps, loss, entry["learning_rate"],
                                    entry["tokens_per_s"], entry["elapsed_s"], entry["grad_norm"]))
        if not math.isfinite(loss):
            raise StopRun("failed", f"non-finite loss ({loss}) at step {step}")

    def on_eval(self, step: int, metrics: dict) -> None:
        loss = float(metrics["eval_loss"])
        ppl = math.exp(loss) if loss < 50 else float("inf")
        self.record.evals.append(dict(step=step, eval_loss=loss, perplexity=ppl, task_metric=None))
        self.record.eval_loss, self.record.perplexity = loss, ppl
        emit(self.sinks, EvalDone(self.record.run_id, step, loss, ppl))

    def on_activations(self, nbytes: int, batch: dict) -> None:
        self.activations, self.probed_batch = nbytes, batch

    def on_memory(self, optimizer, batch) -> None:
        from .memory import measure
        from .planner import plan_for_batch

        # Activations come from the first real forward (then the planner predicts for that batch: the
        # data loader has already fetched the next one); a replay of the latest batch only if missed.
        batch = self.probed_batch if self.activations is not None else batch
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        measured = measure(self.model, optimizer, batch, activations=self.activations)
        plan_error = ""
        try:  # the prediction for this very batch; a model the planner cannot read is no reason to fail
            planned = plan_for_batch(self.cfg, batch)
        except Exception as exc:  # noqa: BLE001
            # one line: with no logging handler (a notebook) a traceback would land in the cell's output
            plan_error = error_line(exc)
            log.warning("memory planner failed for %s: %s", self.cfg.model, plan_error)
            log.debug("memory planner traceback", exc_info=True)
            planned = None
        self.record.memory, self.record.planned_memory = measured, planned
        emit(self.sinks, MemoryMeasured(self.record.run_id, 1, measured, planned, plan_error))

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRun("stopped", f"stopped by request after step {self.record.steps_done}")

    # --- the end ----------------------------------------------------------------------------
    def end(self, status: str, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        rec = self.record
        rec.status, rec.reason = status, reason
        rec.wall_s = time.perf_counter() - self.t0
        self.summarize()
        self.save_adapter()
        emit(self.sinks, RunFinished(rec.run_id, status, rec, reason))

    def summarize(self) -> None:
        rec = self.record
        losses = [h["loss"] for h in rec.history if math.isfinite(h["loss"])]
        rec.train_loss = sum(losses[-10:]) / len(losses[-10:]) if losses else None
        if self.trainer is not None and rec.history and self.train_t1:
            # every real (non-padding) token over the whole loop, probe and callbacks included
            rec.tokens_per_s = self.trainer.state.num_input_tokens_seen / (self.train_t1 - self.train_t0)

    def save_adapter(self) -> None:
        from .adapters import save_adapter

        rec = self.record
        if self.model is None or self.cfg.method != "lora" or not rec.history:
            return
        if self.store is not None:
            path = self.store.adapter_dir(rec.run_id)
        elif self.output_dir:
            path = Path(self.output_dir) / "adapter"
        else:
            return
        try:
            rec.adapter_bytes = save_adapter(self.model, path)
            rec.adapter_path = str(path)
        except Exception as exc:  # noqa: BLE001 - keep the run even if the disk is full
            rec.reason = (rec.reason + "; " if rec.reason else "") + f"adapter not saved: {exc}"


def _reset_cuda_peak(device: str) -> None:
    """Start the allocator's peak afresh, so ``record.memory.cuda['peak']`` is this run's own peak,
    not the largest allocation of anything the process ran before."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def _maybe_float(x):
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _make_callback_class():
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Bridges the Trainer's hooks to the run: step timing, memory probe, stop, events."""

        def __init__(self, run: _Run):
            self.run = run
            self.last_end = time.perf_counter()
            self.step_s = 0.0
            self.tokens_before = 0
            self.probed = False

        def on_train_begin(self, args, state, control, **kw):
            self.run.train_t0 = self.last_end = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self.tokens_before = state.num_input_tokens_seen

        def on_optimizer_step(self, args, state, control, optimizer=None, **kw):
            # Gradients and optimizer state both exist only here, between step() and zero_grad().
            if not self.probed:
                self.probed = True
                self.run.on_memory(optimizer or self.run.trainer.optimizer, self.run.last_batch)

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            # wall time since the previous step ended: data loading and callbacks included
            self.step_s, self.last_end = now - self.last_end, now
            self.run.train_t1 = now
            if self.run.stop.is_set():
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                tokens = state.num_input_tokens_seen - self.tokens_before
                self.run.on_step(state.global_step, logs, tokens, self.step_s)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if metrics and "eval_loss" in metrics:
                self.run.on_eval(state.global_step, metrics)

    return EventCallback


def _make_trainer_class():
    from transformers import Trainer

    from .memory import ActivationRecorder

    class ProbingTrainer(Trainer):
        """A Trainer whose first training forward also counts the bytes autograd saves for backward,
        so the memory probe measures the real step instead of running an extra forward."""

        def __init__(self, *args, activation_probe=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.activation_probe = activation_probe  # called once: (bytes, the batch)

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            if self.activation_probe is None or not model.training:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
            probe, self.activation_probe = self.activation_probe, None
            with ActivationRecorder(model, inputs) as recorder:
                loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
            recorder.add_outputs(outputs)
            probe(recorder.nbytes, inputs)
            return (loss, outputs) if return_outputs else loss

    return ProbingTrainer


def _EventCallback(run: _Run):
    cls = _make_callback_class()
    return cls(run)
