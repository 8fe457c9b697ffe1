"""lorakit: LoRA and QLoRA fine-tuning you can see, from a notebook or the command line.

The API below is the whole public face; each name lives in one room (``lorakit.<room>``, see
docs/ENGINEERING.md) and is imported when first used, so ``import lorakit`` is quick, never imports
torch or the notebook widgets, and ``dir(lorakit)`` lists the API rather than the package's files.
"""
from lorakit.common.public import lazy_names
from lorakit.common.quiet import quiet_kernel_lookup

__version__ = "0.1.0"

_NAMES = {  # public name -> the module that defines it
    "RunConfig": "config.run_config", "ConfigError": "common.errors",
    "MemoryBreakdown": "memory.breakdown", "plan_memory": "memory.planner",
    "plan": "memory.run_plan", "RunPlan": "memory.run_plan", "fits": "memory.fit", "Fit": "memory.fit",
    "plan_time": "memory.timing", "TimePlan": "memory.timing",
    "RunRecord": "run.record", "RunStarted": "run.events", "StepLogged": "run.events", "EvalDone": "run.events",
    "MemoryMeasured": "run.events", "PhaseStarted": "run.events", "RunFinished": "run.events",
    "load_model": "models.loading", "list_models": "models.loading", "ModelUnavailable": "models.loading",
    "list_tasks": "data", "RunStore": "store",
    "train": "training.one_run", "resume": "training.resuming", "ResumeError": "training.resuming",
    "sweep": "sweeps.grids",
    "compare": "comparison.table", "styled": "comparison.table", "SHORT_COLUMNS": "comparison.table",
    "loss_figure": "comparison.figures",
    "memory_figure": "comparison.figures", "pareto_figure": "comparison.figures",
    "timeline_figure": "comparison.timeline_figure",
    "pareto_front": "comparison.figures", "export_csv": "comparison.report", "export_html": "comparison.report",
    "export": "exports.writer", "ExportError": "exports.writer", "GGUF_TYPES": "exports.gguf",
    "generate": "playground.session", "stream": "playground.session",
}
_RENAMED = {"EXPORT_FORMATS": ("exports.writer", "FORMATS")}

__all__ = [*_NAMES, *_RENAMED]
_getattr, _dir = lazy_names(__name__, _NAMES)
quiet_kernel_lookup()  # before peft or transformers import bitsandbytes (see common.quiet)


def __getattr__(name: str):
    if name in _RENAMED:
        import importlib

        module, original = _RENAMED[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), original)
    return _getattr(name)


def __dir__() -> list[str]:
    return sorted([*_dir(), *_RENAMED, "__version__"])
