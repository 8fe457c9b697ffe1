"""lorakit: LoRA and QLoRA fine-tuning you can see, from a notebook or the command line.

Heavy libraries (torch, transformers, peft) are imported when first needed, so ``import lorakit``
is quick and never imports the notebook widgets.
"""
# Bind the submodule sweep.py now (it is light), so that the function defined below stays lorakit.sweep:
# Python sets a package attribute to a submodule only when the submodule is first imported, which would
# otherwise replace the function after its first call.
from lorakit.comparison.figures import loss_figure, memory_figure, pareto_figure, pareto_front
from lorakit.comparison.report import export_csv, export_html
from lorakit.comparison.table import SHORT_COLUMNS, compare, styled
from lorakit.config.run_config import ConfigError, RunConfig
from lorakit.exports import writer as _export_module  # noqa: F401  (the same: lorakit.export stays the function)
from lorakit.exports.gguf import GGUF_TYPES
from lorakit.exports.writer import FORMATS as EXPORT_FORMATS
from lorakit.exports.writer import ExportError
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.fit import Fit, fits
from lorakit.models.loading import ModelUnavailable, list_models, load_model
from lorakit.run.events import EvalDone, MemoryMeasured, RunFinished, RunStarted, StepLogged
from lorakit.run.record import RunRecord
from lorakit.sweeps import grids as _sweep_module  # noqa: F401
from lorakit.training.resuming import ResumeError

__version__ = "0.1.0"

__all__ = [
    "RunConfig", "ConfigError", "MemoryBreakdown", "RunRecord", "ModelUnavailable",
    "RunStarted", "StepLogged", "EvalDone", "MemoryMeasured", "RunFinished",
    "train", "resume", "ResumeError",
    "sweep", "compare", "plan_memory", "fits", "Fit", "list_models", "load_model", "list_tasks", "RunStore",
    "export", "ExportError", "EXPORT_FORMATS", "GGUF_TYPES",
    "styled", "SHORT_COLUMNS", "loss_figure", "memory_figure", "pareto_figure", "pareto_front", "export_csv",
    "export_html",
    "generate", "stream",
]


def train(config, sinks=(), store=None, stop=None, device=None, output_dir=None):
    """Train one run (blocking) and return its RunRecord; see lorakit.training.one_run.train."""
    from lorakit.training.one_run import train as _train

    return _train(config, sinks=sinks, store=store, stop=stop, device=device, output_dir=output_dir)


def resume(run_id, max_steps=None, store=None, sinks=(), stop=None, device=None):
    """Continue a stopped, failed or killed run from its newest checkpoint, as the same run (blocking);
    returns its RunRecord. See lorakit.training.resuming.resume."""
    from lorakit.training.resuming import resume as _resume

    return _resume(run_id, max_steps=max_steps, store=store, sinks=sinks, stop=stop, device=device)


def sweep(base, store=None, sinks=(), stop=None, executor="local", address=None, resources_per_trial=None, **axes):
    """Train a grid of configs, here or on Ray (executor="ray"); see lorakit.sweeps.grids.sweep."""
    from lorakit.sweeps.grids import sweep as _sweep

    return _sweep(base, store=store, sinks=sinks, stop=stop, executor=executor, address=address,
                  resources_per_trial=resources_per_trial, **axes)


def export(run, path, format="peft", *, store=None, overwrite=False, gguf_type="f16", model=None):
    """Write a run as a peft adapter, a merged transformers model or a GGUF (+ Ollama Modelfile), each with a
    model card; returns the written folder (the .gguf file for format='gguf'). See lorakit.exports.writer.export."""
    from lorakit.exports.writer import export as _export

    return _export(run, path, format=format, store=store, overwrite=overwrite, gguf_type=gguf_type, model=model)


def generate(prompts, runs=(), base=True, store=None, **settings):
    """Answers of the base and stored runs' adapters, a row per prompt and a column per model (a DataFrame);
    see lorakit.playground.session.generate."""
    from lorakit.playground.session import generate as _generate

    return _generate(prompts, runs=runs, base=base, store=store, **settings)


def stream(prompt, run=None, store=None, **settings):
    """One model's answer as text pieces while it is generated (the base when run is None);
    see lorakit.playground.session.stream."""
    from lorakit.playground.session import stream as _stream

    return _stream(prompt, run=run, store=store, **settings)


def plan_memory(model, **kwargs):
    """Predicted MemoryBreakdown without loading weights; see lorakit.memory.planner.plan_memory."""
    from lorakit.memory.planner import plan_memory as _plan

    return _plan(model, **kwargs)


def list_tasks(kind: str = ""):
    """The built-in data tasks, each with its kind ('causal-lm' or 'classification'); with ``kind``, those of it."""
    from lorakit.data import list_tasks as _list

    return _list(kind)


def __getattr__(name):
    if name == "RunStore":
        from lorakit.store import RunStore

        return RunStore
    raise AttributeError(f"module 'lorakit' has no attribute {name!r}")
