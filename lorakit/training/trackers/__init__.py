"""Experiment trackers as sinks: a run's lorakit events also go to MLflow and TensorBoard.

``RunConfig.report_to`` names them ('mlflow', 'tensorboard'); ``tracker_sinks(configs)`` builds one sink
per tracker that any of ``configs`` asks for (``training.train`` for a run, the Ray driver for a sweep's
trials, so a cluster's trials land in the driver's tracker). A sink serves several runs at once (a Ray
sweep's events interleave), acting only on the runs whose config names it. What is sent (``metrics``):
every RunConfig field as a parameter; per-step loss, learning rate, tokens/s; eval loss and the task
metric before and after; the five memory categories and the peak, measured and planned; tags for
method, quant and variant; MLflow also keeps the adapter and the HTML report as artifacts.

The libraries are optional (``pip install "lorakit[track]"``) and imported only when a run asks.
"""
from __future__ import annotations

import importlib.util

from lorakit.common.errors import ConfigError
from lorakit.config.run_config import TRACKERS

__all__ = ["TRACKERS", "INSTALL", "missing", "tracker_sinks"]
_NEEDS = {"mlflow": ("mlflow", "sqlalchemy"), "tensorboard": ("tensorboard",)}
INSTALL = 'pip install "lorakit[track]"'


def missing(name: str) -> list:
    """The packages tracker ``name`` needs that are not installed here."""
    return [m for m in _NEEDS[name] if importlib.util.find_spec(m) is None]


def tracker_sinks(configs) -> list:
    """One sink per tracker the ``configs`` ask for; a ConfigError naming ``report_to`` when its library
    is not installed (before anything trains)."""
    wanted = []
    for cfg in configs:
        wanted += [n for n in cfg.report_to if n not in wanted]
    problems = {n: missing(n) for n in wanted if missing(n)}
    if problems:
        said = "; ".join(f"{n!r} needs {', '.join(p)}" for n, p in problems.items())
        raise ConfigError({"report_to": f"report_to: {said}, not installed here: {INSTALL}"})
    sinks = []
    for name in wanted:
        if name == "mlflow":
            from lorakit.training.trackers.mlflow_sink import MlflowSink

            sinks.append(MlflowSink())
        else:
            from lorakit.training.trackers.tensorboard_sink import TensorBoardSink

            sinks.append(TensorBoardSink())
    return sinks
