"""The ``lorakit`` command: train, sweep, compare, plan, models, demo.

Flags of ``train`` and ``sweep`` are generated from RunConfig's fields (help text = the field's
docstring), so the CLI can never drift from the config.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import time
from typing import Optional

from lorakit.cli.playground import add_parsers as add_playground_parsers
from lorakit.cli.playground import cmd_chat, cmd_generate
from lorakit.common.display import GiB, MiB
from lorakit.config import recommend, targets
from lorakit.config.run_config import ConfigError, RunConfig, field_docs
from lorakit.memory import plan_text
from lorakit.memory.breakdown import CATEGORIES
from lorakit.memory.fit import THIS_MACHINE


class ProgressBar:
    """A sink: a tqdm bar with the live loss, and one line per eval / memory probe / end."""

    def __init__(self, file=None):
        self.bar = None
        self.file = file or sys.stderr

    def __call__(self, event) -> None:
        from tqdm.auto import tqdm

        from lorakit.run.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged

        if isinstance(event, RunStarted):
            cfg = event.config
            self.bar = tqdm(total=cfg.max_steps, desc=cfg.label, unit="step", file=self.file, leave=True,
                            initial=event.resumed_at)  # a resumed run's bar starts at its checkpoint
        elif isinstance(event, StepLogged) and self.bar is not None:
            self.bar.set_postfix(loss=f"{event.loss:.3f}", tok_s=f"{event.tokens_per_s:.0f}", refresh=False)
            self.bar.update(event.step - self.bar.n)
        elif isinstance(event, EvalDone):
            ppl = "" if event.perplexity is None else f", perplexity {event.perplexity:.1f}"
            self._write(f"  eval @ step {event.step}: loss {event.eval_loss:.3f}{ppl}")
        elif isinstance(event, MemoryMeasured):
            self._write(_memory_line(event))
        elif isinstance(event, RunFinished):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            rec = event.record
            extra = f" ({event.reason})" if event.reason else ""
            metric = "" if rec.task_metric is None else f", task metric {rec.task_metric:.2f}"
            self._write(f"  {event.status}{extra}: train loss {_fmt(rec.train_loss)}, eval loss "
                        f"{_fmt(rec.eval_loss)}{metric}, {_fmt(rec.tokens_per_s, '.0f')} tok/s, "
                        f"{_fmt(rec.wall_s, '.1f')} s")
            if rec.timing_text():
                self._write(f"  time: {rec.timing_text(', ')}")

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.file)
        else:
            print(text, file=self.file)


def _memory_line(event) -> str:
    """The first MemoryMeasured: the breakdown; the second (the first steps' peak): measured vs planned peak."""
    m, p = event.measured, event.planned
    if m.peak is None:
        parts = ", ".join(f"{k} {getattr(m, k) / MiB:.1f}" for k in (*CATEGORIES, "total"))
        return f"  memory (MiB): {parts}"
    planned = f", planned {p.peak / MiB:.1f} at {p.peak_at}" if p is not None and p.peak is not None else ""
    return f"  step peak (MiB): measured {m.peak / MiB:.1f} at {m.peak_at or '?'}{planned}"


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


# --- argument parsing from RunConfig ----------------------------------------------------------

def _add_config_flags(p: argparse.ArgumentParser, multi: bool = False) -> None:
    """One flag per RunConfig field; ``multi``: accept several values (a sweep axis)."""
    docs = field_docs()
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.name in recommend.RECOMMENDED_FIELDS:  # unset: chosen for the model (lorakit/config/recommend.py)
            default = recommend.recommended("smollm2-135m")[f.name]
            help_ = docs.get(f.name, "") + f" (default: recommended for the model and method, {default!r} for " \
                "smollm2-135m; a classifier such as minilm-l6 gets its own)"
        else:
            help_ = docs.get(f.name, "") + f" (default: {default!r})"
        if f.name in ("target_modules", "report_to"):
            p.add_argument(flag, nargs="+", action="append" if multi else "store", default=None, help=help_)
        elif isinstance(default, bool):
            if multi:
                p.add_argument(flag, nargs="+", type=_bool, default=None, help=help_)
            else:
                p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            kind = type(default) if default is not None else str
            p.add_argument(flag, nargs="+" if multi else None, type=kind, default=None, help=help_)


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _config_kwargs(ns: argparse.Namespace) -> dict:
    out = {}
    for f in dataclasses.fields(RunConfig):
        v = getattr(ns, f.name, None)
        if v is None:
            continue
        if f.name == "target_modules":  # a sweep's flag gives one list of words per value
            v = [targets.from_cli(x) for x in v] if isinstance(v[0], list) else targets.from_cli(v)
        out[f.name] = v
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lorakit", description="LoRA and QLoRA fine-tuning you can see.")
    p.add_argument("--store", default=None, help="run store (SQLite file); default $LORAKIT_STORE or ./lorakit_runs.db")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run and record it in the store")
    _add_config_flags(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue this stopped or failed run from its newest checkpoint (same run id; only "
                        "--max-steps may change)")

    s = sub.add_parser("sweep", help="train a grid: give several values to any flag, e.g. --rank 4 16 --quant none nf4")
    _add_config_flags(s, multi=True)
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help='local: one trial after another here; ray: each trial a Ray task (pip install "lorakit[ray]")')
    s.add_argument("--address", default=None, help="with --executor ray: a Ray cluster ('auto', 'host:6379', "
                                                   "'ray://host:10001'); default: start a local Ray")
    s.add_argument("--trial-cpus", type=float, default=None, help="with --executor ray: CPUs per trial (default 1)")
    s.add_argument("--trial-gpus", type=float, default=None,
                   help="with --executor ray: GPUs per trial, fractions allowed (default 1 when the cluster has GPUs)")

    c = sub.add_parser("compare", help="print the run table; optionally export CSV / HTML")
    c.add_argument("--csv", help="write the table as CSV")
    c.add_argument("--html", help="write a self-contained HTML report with charts of the runs printed "
                                  "(the newest --limit, or every run with --all)")
    c.add_argument("--delete", nargs="+", metavar="RUN_ID", help="delete these runs (and their adapters)")
    c.add_argument("--columns", default="short", metavar="SET",
                   help="short (default: label, model, method, quant, rank, memory, peak, eval loss, task metric, "
                        "time, with status and run id), all, or column names separated by commas")
    shown = c.add_mutually_exclusive_group()
    shown.add_argument("--limit", type=_positive, default=COMPARE_LIMIT, metavar="N",
                       help=f"print the newest N runs (default {COMPARE_LIMIT}); a line says how many are left out")
    shown.add_argument("--all", action="store_true", help="print every run (CSV and HTML always hold every run)")

    from lorakit.cli.store import add_parser as add_store_parser  # lorakit store check / repair / merge / export

    add_store_parser(sub)

    pl = sub.add_parser("plan", help="the memory of the run `lorakit train` with the same flags would train, from "
                                     "its own data, without loading weights; and what it fits on")
    pl.add_argument("model_arg", nargs="?", default=None, metavar="MODEL",
                    help="the model (as --model): built-in name (lorakit models) or local model dir")
    _add_config_flags(pl)
    pl.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="plan a run on this device (default: cuda when this machine has one)")
    pl.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                    help="what fits on these: names from lorakit/memory/accelerators.json or a unique prefix ('24GB'), "
                         "'this-machine' (free RAM, as a CPU run), or sizes in GiB (default: all of them)")
    pl.add_argument("--data", action=argparse.BooleanOptionalAction, default=True,
                    help="plan the run's own batches from its data (default); --no-data: full-length batches, "
                         "an upper bound")

    sub.add_parser("models", help="list the built-in models")

    d = sub.add_parser("demo", help="LoRA vs QLoRA (NF4) vs full fine-tuning on the built-in model; "
                                    "table + HTML report")
    demo = {k: v.default for k, v in inspect.signature(demo_configs).parameters.items()}  # one place for them
    d.add_argument("--steps", type=int, default=demo["steps"])
    d.add_argument("--model", default=demo["model"])
    d.add_argument("--seq-len", type=int, default=demo["seq_len"], help="tokens per example")
    d.add_argument("--eval-examples", type=int, default=demo["eval_examples"],
                   help="held-out examples the task metric is scored on")
    d.add_argument("--html", default="lorakit_report.html")
    _add_export_parser(sub)
    add_playground_parsers(sub)
    return p


def _add_export_parser(sub) -> None:
    from lorakit.exports.gguf import GGUF_TYPES
    from lorakit.exports.writer import FORMATS

    e = sub.add_parser("export", help="write a run as a peft adapter, a merged transformers model or a GGUF "
                                      "(+ Ollama Modelfile), each with a model card")
    e.add_argument("run", help="the run id (lorakit compare lists them)")
    e.add_argument("--format", default="peft", help=f"one of {', '.join(FORMATS)} (default peft)")
    e.add_argument("--out", default=None, help="destination folder (default ./RUN-FORMAT)")
    e.add_argument("--gguf-type", default="f16", help=f"with --format gguf: one of {', '.join(GGUF_TYPES)}")
    e.add_argument("--overwrite", action="store_true", help="replace an existing destination")


def cmd_export(ns) -> int:
    """Export one stored run; the written path is printed."""
    from lorakit.exports.writer import export

    out = ns.out or f"{ns.run}-{ns.format}"
    written = export(ns.run, out, format=ns.format, store=ns.store, overwrite=ns.overwrite, gguf_type=ns.gguf_type)
    folder = written.parent if written.is_file() else written
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"wrote {written} ({size / MiB:.1f} MiB in {folder})")
    return 0


# --- commands -----------------------------------------------------------------------------------

def cmd_train(ns) -> int:
    from lorakit.training.one_run import train

    sinks = [] if ns.quiet else [ProgressBar()]
    if ns.resume:
        rec = _resume(ns, sinks)
        cfg = rec.config
    else:
        cfg = RunConfig(**_config_kwargs(ns))
        rec = train(cfg, sinks=sinks, store=ns.store)
    print(f"run {rec.run_id}: {rec.status}" + (f" ({rec.reason})" if rec.reason else ""))
    print(f"compute dtype: {rec.config.dtype}" + (" (auto)" if cfg.dtype == "auto" else ""))
    if rec.adapter_path:
        what, size = ("weights", rec.weights_bytes) if rec.config.method == "full" else ("adapter", rec.adapter_bytes)
        print(f"{what}: {rec.adapter_path} ({(size or 0) / MiB:.2f} MiB)")
    return 0 if rec.status == "finished" else 1


def _resume(ns, sinks):
    """``train --resume RUN``: the stored run's own settings; a settings flag other than --max-steps is refused."""
    from lorakit.training.resuming import ResumeError, resume

    others = sorted(k for k in _config_kwargs(ns) if k != "max_steps")
    if others:
        flags = ", ".join("--" + k.replace("_", "-") for k in others)
        raise ResumeError(f"--resume continues the run with its own settings; only --max-steps may change "
                          f"(remove {flags})")
    return resume(ns.resume, max_steps=ns.max_steps, store=ns.store, sinks=sinks)


def cmd_sweep(ns) -> int:
    from lorakit.sweeps.grids import sweep

    kwargs = _config_kwargs(ns)
    axes = {k: v for k, v in kwargs.items() if isinstance(v, list) and len(v) > 1}
    base = RunConfig(**{k: (v[0] if isinstance(v, list) else v) for k, v in kwargs.items()})
    resources = {k: v for k, v in (("cpu", ns.trial_cpus), ("gpu", ns.trial_gpus)) if v is not None}
    table = sweep(base, store=ns.store, sinks=[ProgressBar()], executor=ns.executor, address=ns.address,
                  resources_per_trial=resources or None, **axes)
    _print_table(table, _trained_columns())
    return 0 if (table["status"] == "finished").all() else 1


def cmd_compare(ns) -> int:
    import warnings

    from lorakit.cli.store import print_damaged
    from lorakit.comparison.report import export_csv, export_html
    from lorakit.comparison.table import column_names, compare
    from lorakit.store import DamagedRunsWarning, RunStore

    try:
        columns = _print_columns(ns.columns, column_names)
    except ValueError as e:
        print(f"lorakit compare: {e}", file=sys.stderr)
        return 2
    store = RunStore(ns.store, read_only=None if not ns.delete else False)
    for run_id in ns.delete or []:
        store.delete(run_id)
        print(f"deleted {run_id}")
    with warnings.catch_warnings():  # named on stderr below, one line a run
        warnings.simplefilter("ignore", DamagedRunsWarning)
        wanted = "all" if ns.csv else columns  # the CSV holds every column
        if wanted != "all" and "run_id" not in wanted:  # the report's runs are found by it
            wanted = (*wanted, "run_id")
        table = compare(store=store, columns=wanted)  # the store's one-query read: no histories
    print_damaged(store)
    if not len(table):
        print(f"no runs in {store.path}")
        return 0
    _print_table(table, columns, limit=None if ns.all else ns.limit)
    if ns.csv:
        export_csv(table, ns.csv)
        print(f"wrote {ns.csv}")
    if ns.html:  # the runs printed above (their histories read now), or every run with --all
        shown = table if ns.all else table.iloc[-ns.limit:]
        export_html(list(shown["run_id"]), ns.html, store=store)
        print(f"wrote {ns.html} ({len(shown):,} of {len(table):,} runs)")
    return 0


COMPARE_LIMIT = 20  # runs lorakit compare prints unless told --limit N or --all: a semester's store holds thousands


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--limit must be a whole number of runs, 1 or more; got {text!r}")
    return n


def _print_columns(spec: str, column_names) -> tuple:
    """--columns as column names: 'short' adds the status and run id (what `export` and `--delete` take)."""
    if spec == "short":
        return (*column_names("short"), "status", "run_id")
    return column_names(spec if spec == "all" else [c.strip() for c in spec.split(",") if c.strip()])


def cmd_plan(ns) -> int:
    from lorakit.memory.fit import fits
    from lorakit.memory.run_plan import plan as plan_run

    if ns.model_arg and ns.model is None:  # `lorakit plan MODEL --flags`, as before train's --model existed here
        ns.model = ns.model_arg
    cfg = RunConfig(**_config_kwargs(ns))  # the run `lorakit train` with these flags would train
    run = plan_run(cfg, device=ns.device, data=ns.data)
    plan = run.as_planned()
    verdicts = fits(cfg, devices=_devices(ns.devices))
    print(f"planned memory for {cfg.model} ({cfg.method}, quant={cfg.quant}, rank={cfg.rank}, "
          f"batch {cfg.batch_size} x up to {cfg.seq_len} tokens, {cfg.max_steps} steps):")
    for name in (*CATEGORIES, "total"):
        print(_bytes_row(name, plan.total if name == "total" else getattr(plan, name)))
    print(_bytes_row("peak", plan.peak) + f"  in {run.text}")
    print(_bytes_row("step_peak", run.step_peak) + "  " + plan_text.transient_text(run.breakdown))
    print(_bytes_row("load_peak", run.load_peak) + "  loading the base (the weights as loaded + one tensor in flight)")
    if plan.device_overhead is not None:
        print(_bytes_row("device_overhead", plan.device_overhead) + "  CUDA context, libraries, allocator caching")
        print(_bytes_row("device_total", plan.device_total) + "  peak + device overhead")
    print(f"assumes: {plan_text.assumes_text(run.breakdown.assumes)}")
    _print_time(cfg, None if run.upper_bound else run.batches, run.breakdown.assumes.get("device", ns.device),
                verdicts)
    print("\nwhat fits (the run's planned peak, plus the device overhead on a GPU, against each device's memory):")
    rows = [plan_text.FIT_HEADER, *(plan_text.fit_row(f) for f in verdicts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(plan_text.FIT_HEADER))]
    for r in rows:
        print("  " + r[0].ljust(widths[0]) + "".join(f"  {v:>{w}}" for v, w in zip(r[1:], widths[1:], strict=True)))
    return 0


def _print_time(cfg, batches, device, verdicts) -> None:
    """How long: on this machine (a CPU plan: calibrated here, measured once; ``batches``: the run plan's, None:
    full-length) and per step on each GPU (an estimate from its published speeds), before the fits table."""
    from lorakit.memory import about
    from lorakit.memory.timing import plan_time

    if device != "cuda":
        t = plan_time(cfg, batches, steps=cfg.max_steps)  # past the batches listed: their mean
        c = t.calibration
        print(f"\ntime on this machine: {t.text}: load ~{t.load_s:.0f} s, {t.steps} steps x {t.step_s:.2f} s = "
              f"{about(t.train_s).removeprefix('about ')}, evaluation {about(t.eval_s).removeprefix('about ')} "
              f"({t.step_gflop:.1f} GFLOP a "
              f"step; calibrated {c['dtype']}: {c['train_gflops']} GFLOP/s matmul, {c['dequant_gbs']} GB/s 4-bit "
              "dequantization)")
    timed = [f for f in verdicts if f.step_s is not None]
    if timed:
        print(f"time per step on GPUs (an estimate at {timed[0].efficiency:.0%} of each card's published bf16 "
              "throughput and memory bandwidth):")
        for f in timed:
            print(f"  {plan_text.device_label(f)}  {f.card}: {f.step_s * 1e3:,.1f} ms a step")


def _bytes_row(name: str, nbytes: int) -> str:
    return f"  {name:<15} {nbytes / MiB:>12,.1f} MiB {nbytes / GiB:>8.2f} GiB"


def _devices(words: Optional[list]) -> Optional[list]:
    """``--devices`` words for ``fits``: numbers are GiB, 'this-machine' is this machine, the rest names."""
    if words is None:
        return None
    out: list = []
    for w in words:
        try:
            out.append(float(w))
        except ValueError:
            out.append(THIS_MACHINE if w.lower().replace("-", " ").replace("_", " ") == THIS_MACHINE else w)
    return out


def cmd_models(ns) -> int:
    from lorakit.models.loading import list_models

    print(f"{'name':<14} {'params':>10}  {'arch':<8} source")
    for m in list_models():
        print(f"{m.name:<14} {m.params / 1e6:>9.1f}M  {m.architecture:<8} {m.source}")
    return 0


# Each method at a learning rate suited to it (issue 11): adapters on every linear layer (QLoRA's recipe) at 20x
# full fine-tuning's rate, each the best of those tried over 3 seeds (benchmarks/demo_quality.py, RESULTS.md).
# The first demo's adapters on q/v only at 10x left QLoRA at a third of full fine-tuning's score after 40 steps.
DEMO_LEARNING_RATES = {"lora": 2e-3, "full": 1e-4}


def demo_configs(model: str = "smollm2-135m", steps: int = 20, seq_len: int = 128, eval_examples: int = 24,
                 seed: int = 0) -> list:
    """The demo's three runs: LoRA, QLoRA (NF4) and full fine-tuning, each at its own learning rate."""
    from lorakit.models.loading import default_device

    # QLoRA computes in bf16 on a GPU (the paper's recipe); a CPU without bf16 units runs bf16 2.6x
    # slower than fp32 (benchmarks/RESULTS.md, Throughput), and the NF4 storage is the same either way.
    qdtype, qshort = ("bfloat16", "bf16") if default_device() == "cuda" else ("float32", "fp32")
    common = dict(model=model, max_steps=steps, batch_size=4, seq_len=seq_len, eval_examples=eval_examples, seed=seed)
    # No LoRA dropout: in a run that sees each example once it regularises nothing, and peft draws a mask per
    # adapted layer (7 per block here), 15 % of an all-linear step on a 2-core CPU; same task metric over 3 seeds.
    adapters = dict(common, method="lora", target_modules="all-linear", dropout=0.0,
                    learning_rate=DEMO_LEARNING_RATES["lora"])
    return [
        RunConfig(name="LoRA r8 all-linear (fp32 base)", quant="none", **adapters),
        RunConfig(name=f"QLoRA r8 all-linear (NF4 base, {qshort} compute)", quant="nf4", dtype=qdtype, **adapters),
        RunConfig(name="full fine-tuning", method="full", quant="none", learning_rate=DEMO_LEARNING_RATES["full"],
                  **common),
    ]


def demo_verdict(records: list) -> str:
    """One line under the demo's table: each adapter run's memory and task metric against full fine-tuning's."""
    full = next((r for r in records if r.config.method == "full" and r.status == "finished"), None)
    if full is None or full.memory is None:
        return "full fine-tuning did not finish: nothing to compare against."
    parts = []
    for r in records:
        if r is full or r.status != "finished" or r.memory is None:
            continue
        mine, theirs = _peak(r.memory), _peak(full.memory)
        part = f"{r.config.name.split()[0]} needs {mine / theirs:.0%} of full fine-tuning's memory " \
               f"({mine / MiB:,.0f} vs {theirs / MiB:,.0f} MiB at the step's peak)"
        if r.task_metric is not None and full.task_metric:
            part += f" and scores {r.task_metric / full.task_metric:.0%} of its task metric " \
                    f"({r.task_metric:.2f} vs {full.task_metric:.2f})"
        parts.append(part)
    return "; ".join(parts) + "." if parts else "no adapter run finished."


def _peak(memory) -> int:
    return memory.peak or memory.total


def cmd_demo(ns) -> int:
    """The README's main job: the three methods on the same task, compared."""
    from lorakit.comparison.report import export_html
    from lorakit.comparison.table import compare
    from lorakit.store import RunStore
    from lorakit.training.one_run import train

    store = RunStore(ns.store)
    t0 = time.perf_counter()
    records = []
    for cfg in demo_configs(ns.model, ns.steps, ns.seq_len, ns.eval_examples):
        print(f"== {cfg.name}, learning rate {cfg.learning_rate:g}", flush=True)
        records.append(train(cfg, sinks=[ProgressBar()], store=store))
    _print_table(compare(records), _trained_columns())
    print(f"\n{demo_verdict(records)}")
    export_html(records, ns.html, title="lorakit demo: LoRA vs QLoRA vs full fine-tuning")
    print(f"\nwrote {os.path.abspath(ns.html)}; runs stored in {store.path}; {time.perf_counter() - t0:.0f} s in all")
    return 0 if all(r.status == "finished" for r in records) else 1


def _trained_columns() -> tuple:
    """What the runs a command just trained are printed with: the short set and where their time went."""
    from lorakit.comparison.table import SHORT_COLUMNS
    from lorakit.run.record import TIMINGS

    return (*SHORT_COLUMNS, "tokens_per_s", *(field for _, field in TIMINGS), "status", "run_id")


def _print_table(table, columns=None, limit=None) -> None:
    """The run table as text: ``columns`` (default: the short set, status and run id), the newest ``limit``
    rows (None: all), bytes in MiB (one unit for the table: ``_MiB`` in the header)."""
    import pandas as pd

    from lorakit.comparison.table import BYTE_COLUMNS, column_names

    cols = [c for c in (columns or _print_columns("short", column_names)) if c in table]
    view = table[cols]
    left_out = 0
    if limit is not None and len(view) > limit:
        left_out, view = len(view) - limit, view.iloc[-limit:]
    view = view.copy()
    in_bytes = [c for c in cols if c in BYTE_COLUMNS]
    for c in in_bytes:
        view[c] = (view[c] / MiB).round(1)
    view = view.rename(columns={**{c: c.replace("mem_", "").replace("_bytes", "") + "_MiB" for c in in_bytes},
                                "mem_peak_at": "peak_at"})
    with pd.option_context("display.width", 250, "display.max_columns", 80, "display.float_format", "{:.3g}".format):
        print(view.to_string(index=False))
    if left_out:
        print(f"... {left_out:,} older run(s) not shown: the newest {limit} of {len(table):,}; "
              "--all prints every run, --limit N the newest N")


COMMANDS = dict(train=cmd_train, sweep=cmd_sweep, compare=cmd_compare, plan=cmd_plan, models=cmd_models, demo=cmd_demo)
COMMANDS["export"] = cmd_export


def cmd_store(ns) -> int:
    """lorakit store check / repair / merge / export (lorakit.cli.store)."""
    from lorakit.cli.store import cmd_store as _cmd_store

    return _cmd_store(ns)


COMMANDS["store"] = cmd_store
COMMANDS.update(generate=cmd_generate, chat=cmd_chat)


# Commands that read the store and print or export tables: quieting torch, transformers and datasets would
# import them, seconds of a `lorakit compare` that never loads a model.
TABLE_COMMANDS = ("compare", "store")


def main(argv: Optional[list] = None) -> int:
    from lorakit.common.quiet import quiet_libraries

    ns = build_parser().parse_args(argv)
    if ns.command not in TABLE_COMMANDS:
        quiet_libraries()
    try:
        return COMMANDS[ns.command](ns)
    except ConfigError as exc:
        print(f"lorakit: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a CLI prints a message, not a traceback
        from lorakit.models.loading import ModelUnavailable
        from lorakit.store import StoreError

        if isinstance(exc, (ModelUnavailable, StoreError, FileNotFoundError, ValueError)):
            print(f"lorakit: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
