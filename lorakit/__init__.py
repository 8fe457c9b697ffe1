"""lorakit: LoRA and QLoRA fine-tuning you can see, from a notebook or the command line.

Heavy libraries (torch, transformers, peft) are imported when first needed, so ``import lorakit``
is quick and never imports the notebook widgets.
"""
# Bind the submodule sweep.py now (it is light), so that the function defined below stays lorakit.sweep:
# Python sets a package attribute to a submodule only when the submodule is first imported, which would
# otherwise replace the function after its first call.
from . import export as _export_module  # noqa: F401  (the same: lorakit.export stays the function)
from . import sweep as _sweep_module  # noqa: F401
from .config import ConfigError, RunConfig
from .events import EvalDone, MemoryMeasured, PhaseStarted, RunFinished, RunStarted, StepLogged
from .export import FORMATS as EXPORT_FORMATS
from .export import ExportError
from .figures import loss_figure, memory_figure, pareto_figure, pareto_front
from .fit import Fit, fits
from .gguf_export import GGUF_TYPES
from .logging_setup import quiet_kernel_lookup
from .memory import MemoryBreakdown
from .models import ModelUnavailable, list_models, load_model
from .record import RunRecord
from .report import export_csv, export_html
from .table import compare, styled

__version__ = "0.1.0"

__all__ = [
    "RunConfig", "ConfigError", "MemoryBreakdown", "RunRecord", "ModelUnavailable",
    "RunStarted", "StepLogged", "EvalDone", "MemoryMeasured", "PhaseStarted", "RunFinished",
    "train", "sweep", "compare", "plan_memory", "fits", "Fit", "list_models", "load_model", "list_tasks", "RunStore",
    "export", "ExportError", "EXPORT_FORMATS", "GGUF_TYPES",
    "styled", "loss_figure", "memory_figure", "pareto_figure", "pareto_front", "export_csv", "export_html",
    "generate", "stream",
]

quiet_kernel_lookup()  # before peft or transformers import bitsandbytes: see logging_setup


def train(config, sinks=(), store=None, stop=None, device=None, output_dir=None):
    """Train one run (blocking) and return its RunRecord; see lorakit.training.train."""
    from .training import train as _train

    return _train(config, sinks=sinks, store=store, stop=stop, device=device, output_dir=output_dir)


def sweep(base, store=None, sinks=(), stop=None, executor="local", address=None, resources_per_trial=None, **axes):
    """Train a grid of configs, here or on Ray (executor="ray"); see lorakit.sweep.sweep."""
    from .sweep import sweep as _sweep

    return _sweep(base, store=store, sinks=sinks, stop=stop, executor=executor, address=address,
                  resources_per_trial=resources_per_trial, **axes)


def export(run, path, format="peft", *, store=None, overwrite=False, gguf_type="f16", model=None):
    """Write a run as a peft adapter, a merged transformers model or a GGUF (+ Ollama Modelfile), each with a
    model card; returns the written folder (the .gguf file for format='gguf'). See lorakit.export.export."""
    from .export import export as _export

    return _export(run, path, format=format, store=store, overwrite=overwrite, gguf_type=gguf_type, model=model)


def generate(prompts, runs=(), base=True, store=None, **settings):
    """Answers of the base and stored runs' adapters, a row per prompt and a column per model (a DataFrame);
    see lorakit.playground.generate."""
    from .playground import generate as _generate

    return _generate(prompts, runs=runs, base=base, store=store, **settings)


def stream(prompt, run=None, store=None, **settings):
    """One model's answer as text pieces while it is generated (the base when run is None);
    see lorakit.playground.stream."""
    from .playground import stream as _stream

    return _stream(prompt, run=run, store=store, **settings)


def plan_memory(model, **kwargs):
    """Predicted MemoryBreakdown without loading weights; see lorakit.planner.plan_memory."""
    from .planner import plan_memory as _plan

    return _plan(model, **kwargs)


def list_tasks(kind: str = ""):
    """The built-in data tasks, each with its kind ('causal-lm' or 'classification'); with ``kind``, those of it."""
    from .data import list_tasks as _list

    return _list(kind)


def __getattr__(name):
    if name == "RunStore":
        from .store import RunStore

        return RunStore
    raise AttributeError(f"module 'lorakit' has no attribute {name!r}")
