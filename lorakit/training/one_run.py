"""train(): transformers' Trainer plus the Trainer -> events bridge (``callback.py``).

The Trainer does the loop (optimizer, scheduler, seeding, data order, eval); lorakit adds:
- events to sinks (store, CLI bar, widgets) — training never touches a UI; the run's record is
  kept by one more sink (``_Run.observe``);
- the measured memory breakdown after the first optimizer step, next to the planner's prediction;
- real-token throughput, a stop request from another thread, non-finite-loss detection;
- a RunRecord that is always returned and stored, whether the run finished, stopped or failed.
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional

from lorakit.common.threads import warm
from lorakit.config.run_config import RunConfig
from lorakit.run.events import PhaseStarted, RunFinished, RunStarted, emit
from lorakit.run.record import RunRecord
from lorakit.training.trainer_events import StopRun, TrainerEvents

log = logging.getLogger("lorakit")

# 'adamw' is torch's fused kernel (transformers' own default since torch 2.8): the per-tensor loop the Trainer's
# 'adamw_torch' runs on CPU took 4.5x as long per step (benchmarks/adamw_cost.py) and allocates two temporaries
# the size of the largest parameter; the fused update works in place (planning/peak.py)
OPTIM_NAMES = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}
# peft's task type per lorakit task: SEQ_CLS puts a classifier's new head in modules_to_save (it trains in full)
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM"}
N_SAMPLES = 3  # prompts shown before/after training (the first eval examples, from the metric's own pass)


def train(config: RunConfig, sinks: Iterable[Callable] = (), store=None, stop: Optional[threading.Event] = None,
          device: Optional[str] = None, output_dir: Optional[str] = None, report: bool = True) -> RunRecord:
    """Run one fine-tuning job and return its RunRecord (never raises for a failed run).

    store: a RunStore, a path, None for the default store (``lorakit_runs.db`` in the working
    directory or ``$LORAKIT_STORE``), or False to keep nothing on disk.
    stop: a threading.Event; setting it ends the run after the current step (status 'stopped').
    report: send the run to ``config.report_to``'s trackers (a Ray trial's worker does not: its driver does).
    A run with a store saves checkpoints every ``config.checkpoint_every`` steps into its folder there;
    ``lorakit.resume(run_id)`` continues it.
    """
    return run_job(config, sinks, store, stop, device, output_dir, report)


def run_job(config: RunConfig, sinks: Iterable[Callable] = (), store=None, stop: Optional[threading.Event] = None,
            device: Optional[str] = None, output_dir: Optional[str] = None, report: bool = True,
            resume=None) -> RunRecord:
    """train()'s body; ``resume`` (a ``resume.Resumption``): continue that stored run from its checkpoint."""
    from lorakit.common.quiet import quiet_libraries
    from lorakit.models.loading import default_device
    from lorakit.store import StoreSink, open_store

    warm()
    quiet_libraries()
    store, opened_here = open_store(store)
    sinks = list(sinks)
    if report and config.report_to:
        from lorakit.training.trackers import tracker_sinks

        sinks += tracker_sinks([config])  # a ConfigError naming report_to when a library is missing
    stop = stop or threading.Event()
    from lorakit.models.compute_dtype import resolve_config

    config = resolve_config(config, device or default_device())  # dtype="auto": the record keeps what ran
    store_sink = None
    if store is not None:  # a write the store refuses (a full disk) ends the run after the current step
        store_sink = StoreSink(store, on_failure=lambda _why: stop.set())
        sinks.insert(0, store_sink)
    if resume is None:
        record = RunRecord(config=config, created_at=time.time(), device=device or default_device())
    else:  # the same run: its id, creation time, history up to the checkpoint, memory records
        record = resume.record
        record.config, record.device = config, device or record.device
    run = _Run(config, record, sinks, stop, store, output_dir, resume)
    run.store_sink = store_sink
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
        run.remove_temporary()
        if opened_here:  # opened for this run only
            store.close()
    return record


class _Run:
    """One run's moving parts; kept out of train() so each step reads as one short method."""

    def __init__(self, cfg, record, sinks, stop, store, output_dir, resume=None):
        self.cfg, self.record, self.sinks, self.stop, self.store = cfg, record, sinks, stop, store
        self.output_dir = output_dir
        self.resume = resume  # resume.Resumption when this continues a stored run
        self.prior_s = resume.prior_s if resume is not None else 0.0  # the run's seconds before this session
        self.t0 = time.perf_counter()
        self.model = self.tokenizer = self.bundle = self.trainer = self.events = self.run_plan = None
        self.ended = False
        self.before: list = []  # the base's per-example task details (see evaluate_before)
        self.before_pending = False  # the base's answers are due after training, through the adapter off
        self.eval_spans: list[tuple[float, float]] = []  # (start, end) of every eval-loss pass
        self.temporary: Optional[str] = None  # the Trainer's output folder when the caller gave none
        self.store_sink = None  # the StoreSink, whose failure (a full disk) is the reason a run ends

    # --- phases -----------------------------------------------------------------------------
    def execute(self) -> None:
        self.load()
        self.check_stop()
        self.build_trainer()
        self.check_stop()
        self.run_trainer()
        self.finish()

    def load(self) -> None:
        from transformers import set_seed

        from lorakit.adapters import lora as adapters
        from lorakit.data import build_data, data_labels
        from lorakit.memory.breakdown import head_parameters
        from lorakit.models.loading import check_device, load_base

        cfg = self.cfg
        check_device(self.record.device)  # a clear reason before the allocator is touched
        _reset_cuda_peak(self.record.device)
        task = cfg.resolved_task()  # '' : a hub or local model, whose config decides when it loads
        labels = data_labels(cfg) if task in ("", "classification") else None
        if task != "causal-lm":
            set_seed(cfg.seed)  # a classifier's new head is drawn while loading: same seed, same head
        loaded = load_base(cfg.base, self.record.device, labels)
        self.record.load_peak = _cuda_peak(self.record.device)  # the peak was reset just before loading
        self.record.load_s = loaded.load_s
        self.record.task, self.record.family = loaded.task, loaded.family
        self.tokenizer, self.model = loaded.tokenizer, loaded.model
        self.bundle = build_data(cfg, self.tokenizer, loaded.task)  # seeded by cfg.seed itself, not the global RNG
        self.run_plan = self.plan_run()
        if not cfg.measure_memory and self.run_plan is not None:  # nothing measured: the plan is what it shows
            self.record.planned_memory = self.run_plan.as_planned()
        self.record.metric = self.bundle.task.metric if self.bundle.task else (
            "accuracy (and macro-F1)" if loaded.task == "classification" else "")
        self.record.data_stats = dict(self.bundle.stats)
        # The base's answers: the store's, else computed now, before any adapter, or after training
        # through the switched-off adapter where that is exactly the base (not with PiSSA, OLoRA and
        # LoftQ, which move part of the weights into the adapter), so the first loss does not wait.
        self.evaluate_before(defer=self.adapter_off_is_base())
        self.check_stop()
        set_seed(cfg.seed)  # LoRA's A init and dropout draw from this
        if cfg.method == "lora":
            self.model = adapters.attach(loaded.model, cfg.adapter, cfg.shape.gradient_checkpointing,
                                         task_type=PEFT_TASK_TYPES[loaded.task])
        else:
            self.model = adapters.prepare_full(loaded.model, cfg.gradient_checkpointing)
        self.record.trainable_params, self.record.total_params = adapters.count_params(self.model)
        self.record.head_params = sum(p.numel() for p in head_parameters(self.model))
        emit(self.sinks, RunStarted(self.record.run_id, cfg, self.record.trainable_params,
                                    self.record.total_params,
                                    resumed_at=self.resume.step if self.resume is not None else 0))

    def plan_run(self):
        """The whole run's plan from the data just built: what ``lorakit.plan(cfg)`` showed before the run
        (None where the planner cannot read the model: the first steps' plan, or its failure, stands)."""
        from lorakit.memory.run_plan import data_of, plan_known

        try:
            return plan_known(self.cfg, data_of(self.bundle, self.cfg), self.record.device)
        except Exception:  # noqa: BLE001 - TrainerEvents names the planner's failure once
            log.debug("run plan failed", exc_info=True)
            return None

    def build_trainer(self) -> None:
        from transformers import PrinterCallback, TrainingArguments

        from lorakit.store import checkpoints

        cfg = self.cfg
        saving = self.checkpoint_folder()
        out = str(saving) if saving is not None else self.output_dir
        if not out:  # save_strategy="no": the Trainer writes nearly nothing here, but the folder must go too
            out = self.temporary = tempfile.mkdtemp(prefix="lorakit-")
        args = TrainingArguments(
            output_dir=out, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=max(cfg.batch_size, 8), learning_rate=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, lr_scheduler_type="linear",
            optim=OPTIM_NAMES[cfg.optimizer], bf16=cfg.bf16_autocast, seed=cfg.seed, data_seed=cfg.seed,
            logging_steps=1, logging_nan_inf_filter=False, report_to="none",
            **checkpoints.trainer_settings(cfg.checkpoint_every, cfg.checkpoint_keep, saving),
            disable_tqdm=True, eval_strategy="steps" if cfg.eval_every else "no",
            eval_steps=cfg.eval_every or None, include_num_input_tokens_seen="non_padding",
            use_cpu=self.record.device == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
            prediction_loss_only=True,  # eval reports the loss alone: no (B, T, V) logits gathered per batch
        )
        from lorakit.training.probe import ProbingTrainer

        # the record is kept by the first sink, so every other sink sees it up to date
        # a resumed run keeps the memory its first steps measured; elapsed_s goes on from the checkpoint's
        self.events = TrainerEvents([self.observe, *self.sinks], cfg, run_id=self.record.run_id, stop=self.stop,
                                    clock_start=self.t0 - self.prior_s,
                                    measure_memory=cfg.measure_memory and (self.resume is None
                                                                           or self.record.memory is None))
        self.events.run_plan = self.run_plan
        callbacks = [self.events] + ([checkpoints.save_on_stop(self.stop)] if saving is not None else [])
        optimizers = (None, None)  # the Trainer's own, from args.optim
        if cfg.loraplus_lr_ratio:  # LoRA+: same optimizer class, B in a param group at lr x ratio
            from lorakit.adapters.variants import loraplus_optimizer

            optimizers = (loraplus_optimizer(self.model, args, cfg.loraplus_lr_ratio), None)
        self.trainer = ProbingTrainer(
            model=self.model, args=args, optimizers=optimizers, train_dataset=self.bundle.train,
            eval_dataset=self.bundle.eval,
            data_collator=self.bundle.collator, processing_class=self.tokenizer,
            callbacks=callbacks,
            activation_probe=self.events.activations_recorded if self.events.measure_memory else None,
            labelled_head=cfg.labelled_head,
        )
        # with tqdm off, Trainer prints every log dict to stdout; lorakit's sinks report instead
        self.trainer.remove_callback(PrinterCallback)
        self.trainer.evaluate = self.timed_evaluate(self.trainer.evaluate)  # the loop calls it through self

    def timed_evaluate(self, evaluate: Callable) -> Callable:
        """``evaluate`` noting its (start, end): eval_s, and the loss passes taken out of train_s."""
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return evaluate(*args, **kwargs)
            finally:
                self.eval_spans.append((t0, time.perf_counter()))
        return timed

    def run_trainer(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*use_cache=True.*")
            # bitsandbytes warns when a paged optimizer creates its state on CPU; it falls back to
            # ordinary state, which is what the user gets and sees in the memory breakdown anyway.
            warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU",
                                    category=UserWarning)
            # the Trainer restores weights, optimizer, scheduler, RNG and data position from the checkpoint
            self.trainer.train(resume_from_checkpoint=str(self.resume.checkpoint) if self.resume else None)
        self.check_stop()

    def checkpoint_folder(self) -> Optional[Path]:
        """Where this run's checkpoints go: its folder in the store (None: no store, or checkpoint_every=0;
        a run kept nowhere cannot be resumed by id)."""
        from lorakit.store import checkpoints

        if self.store is None or not self.cfg.checkpoint_every:
            return None
        return checkpoints.folder_of(self.store.adapter_dir(self.record.run_id))

    def finish(self) -> None:
        step = self.trainer.state.global_step
        n = len(self.bundle.eval_raw)
        if not self.record.evals or self.record.evals[-1]["step"] != step:  # eval_every may have just run it
            self.phase("evaluating", f"evaluating: eval loss on {n} examples", n)
            self.trainer.evaluate()  # reported through the callback's on_evaluate
        self.phase("answering", answering_text(n, self.bundle.kind, self.before_pending), n)
        self.evaluate_task()
        self.end("finished", "")

    def phase(self, phase: str, text: str, count: int) -> None:
        """Tell the sinks what the run does while no step is logged."""
        emit(self.sinks, PhaseStarted(self.record.run_id, phase, text, count))

    # --- evaluation and samples -------------------------------------------------------------
    def evaluate_task(self) -> None:
        from lorakit.training.evaluation import evaluate_task, mean_token_f1

        rec = self.record
        t0 = time.perf_counter()
        after, details = evaluate_task(self.model, self.tokenizer, self.bundle, max_new_tokens=self.answer_budget())
        rec.task_eval_s = (rec.task_eval_s or 0.0) + time.perf_counter() - t0
        if self.before_pending:
            with self.model.disable_adapter():  # the trained adapter switched off: the untouched base
                self.evaluate_before(defer=False)
        rec.task_metric = after
        rec.macro_f1, rec.token_f1 = self.macro_f1(details), mean_token_f1(details)
        t0 = time.perf_counter()  # samples come from the two passes above: no generation of their own
        rec.samples = [{"prompt": b["prompt"], "reference": b["reference"], "before": b["prediction"],
                        "after": a["prediction"]}
                       for b, a in zip(self.before[:N_SAMPLES], details[:N_SAMPLES], strict=True)]
        rec.samples_s = time.perf_counter() - t0
        if rec.evals:
            rec.evals[-1]["task_metric"] = after

    def adapter_off_is_base(self) -> bool:
        """Whether the trained model with its adapter switched off computes exactly what the loaded base
        did: LoRA initialised without touching the base, and no up-cast of a 16-bit quantized base's other
        weights (peft's prepare_model_for_kbit_training makes them fp32)."""
        cfg = self.cfg
        return (cfg.method == "lora" and cfg.init in ("default", "gaussian")
                and (cfg.quant == "none" or cfg.dtype == "float32"))

    def evaluate_before(self, defer: bool = False) -> None:
        """The base's task metric and per-example answers (``self.model`` the bare base, or the trained
        model with its adapter off): the store's, when an earlier run computed them for the same base,
        prompts and generation settings; else, unless ``defer``, computed now and stored."""
        from lorakit.training.base_eval import before_training, cache_key, cached_before
        from lorakit.training.evaluation import evaluate_task, mean_token_f1

        rec, budget = self.record, self.answer_budget()
        key, description = cache_key(self.cfg, self.tokenizer, self.bundle.eval_raw, rec.device, budget,
                                     self.bundle.labels)
        self.before_pending = defer and cached_before(self.store, key) is None
        if self.before_pending:
            return
        first_session = rec.before_cached  # a resumed run reads back its own earlier result: not "cached" news
        rec.task_metric_before, self.before, rec.before_cached, seconds = before_training(
            self.store, key, description,
            lambda: evaluate_task(self.model, self.tokenizer, self.bundle, max_new_tokens=budget))
        if self.resume is not None and self.resume.had_before:
            rec.before_cached = first_session
        rec.task_eval_s = (rec.task_eval_s or 0.0) + seconds
        rec.macro_f1_before, rec.token_f1_before = self.macro_f1(self.before), mean_token_f1(self.before)

    def macro_f1(self, details: list):
        """Classification: the macro-F1 of a task pass's details (None for other tasks)."""
        from lorakit.training.evaluation import macro_f1

        return macro_f1(details, self.bundle.labels) if self.bundle.kind == "classification" else None

    def answer_budget(self) -> int:
        from lorakit.training.evaluation import answer_budget

        return answer_budget(self.tokenizer, self.bundle.eval_raw)

    # --- the record: one more sink of the bridge's events -----------------------------------------
    def observe(self, event) -> None:
        self.record.add(event)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRun("stopped", f"stopped by request after step {self.record.steps_done}")

    # --- the end ----------------------------------------------------------------------------
    def end(self, status: str, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self.events is not None:
            self.events.close()  # a run that raised out of the loop skipped on_train_end
        rec = self.record
        failure = self.store_sink.failure if self.store_sink is not None else ""
        if failure:  # the store's refusal is why the run ended, whatever the loop said after it
            status, reason = "failed", f"{failure}; stopped after step {rec.steps_done}"
        rec.status, rec.reason = status, reason
        rec.wall_s = time.perf_counter() - self.t0 + self.prior_s
        self.summarize()
        self.note_checkpoints()
        if not failure:  # a full disk: no adapter files on top of it
            self.save_adapter()
        emit(self.sinks, RunFinished(rec.run_id, status, rec, rec.reason))
        if failure and not self.store_sink.final_saved:
            rec.reason += ("; the store could not record this end either: it keeps the steps written before "
                           "and marks the run stopped when next opened")

    def summarize(self) -> None:
        rec = self.record
        losses = [h["loss"] for h in rec.history if math.isfinite(h["loss"])]
        rec.train_loss = sum(losses[-10:]) / len(losses[-10:]) if losses else None
        ev = self.events
        if self.trainer is not None and rec.history and ev.last_step_at:
            # every real (non-padding) token over the whole loop, probe and callbacks included
            tokens = self.trainer.state.num_input_tokens_seen - ev.tokens_at_start  # a resume's own tokens
            rec.tokens_per_s = tokens / (ev.last_step_at - ev.train_started_at)
            # the loop's time without the eval-loss passes it ran between steps
            in_loop = sum(b - a for a, b in self.eval_spans if ev.train_started_at <= a < ev.last_step_at)
            rec.train_s = ev.last_step_at - ev.train_started_at - in_loop + (self.resume.prior_train_s
                                                                               if self.resume else 0.0)
        if self.eval_spans:
            rec.eval_s = sum(b - a for a, b in self.eval_spans)

    def note_checkpoints(self) -> None:
        """The newest checkpoint's step and the disk the kept ones take (a full fine-tuning's can be large)."""
        from lorakit.store import checkpoints

        folder = self.checkpoint_folder()
        newest = checkpoints.latest(folder) if folder is not None else None
        self.record.checkpoint_step = checkpoints.step_of(newest) if newest is not None else None
        self.record.checkpoint_bytes = checkpoints.disk_bytes(folder) if newest is not None else None

    def save_adapter(self) -> None:
        from lorakit.adapters.base_record import AdapterError
        from lorakit.adapters.full_weights import save_full
        from lorakit.adapters.lora import save_adapter

        rec, full = self.record, self.cfg.method == "full"
        if self.model is None or not rec.history or (full and not self.cfg.keep_weights):
            return
        if self.store is not None:
            path = self.store.adapter_dir(rec.run_id)
        elif self.output_dir:
            path = Path(self.output_dir) / ("model" if full else "adapter")
        else:
            return
        try:
            if full:  # no adapter: the whole trained model is what merged/GGUF export takes home
                rec.weights_bytes = save_full(self.model, self.tokenizer, path)
            else:
                rec.adapter_bytes = save_adapter(self.model, path, run_id=rec.run_id, base=self.cfg.model)
            rec.adapter_path = str(path)
        except Exception as exc:  # noqa: BLE001 - keep the run even if the disk is full
            said = str(exc) if isinstance(exc, AdapterError) else f"adapter not saved: {exc}"
            rec.reason = (rec.reason + "; " if rec.reason else "") + said


    def remove_temporary(self) -> None:
        """Remove the output folder train() made for the Trainer (a caller's ``output_dir`` is theirs)."""
        if self.temporary:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


def _reset_cuda_peak(device: str) -> None:
    """Start the allocator's peak afresh, so ``record.memory.cuda['peak']`` is this run's own peak,
    not the largest allocation of anything the process ran before."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak(device: str) -> Optional[int]:
    """The allocator's peak since the last reset on a CUDA ``device`` (None on CPU: the profiler's cost over a
    whole load is not paid on every run; ``benchmarks/run_plan.py`` measures it)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated(device))
    return None


def answering_text(n: int, kind: str, with_base: bool) -> str:
    """The status of the task-metric pass: 'evaluating: generating 32 answers' (a classifier: classifying)."""
    base = " (and the base's, for the before-training score)" if with_base else ""
    if kind == "classification":
        return f"evaluating: classifying {n} examples{base}"
    return f"evaluating: generating {n} answers{base} and scoring them"
