"""sweep(): train a grid of configurations, here one after another or as Ray tasks (``sweep_ray``); a failing
trial is recorded and the rest go on."""
from __future__ import annotations

import itertools
import logging
from dataclasses import fields
from typing import Optional

from lorakit.config.run_config import ConfigError, RunConfig

log = logging.getLogger("lorakit")

EXECUTORS = ("local", "ray")
INTERRUPTED = "interrupted (KeyboardInterrupt)"  # train()'s reason for a run ended by Ctrl-C


def grid(base: RunConfig, **axes) -> list:
    """Every combination of ``axes`` applied to ``base``: RunConfigs, or (changes, ConfigError) when invalid."""
    if not isinstance(base, RunConfig):
        raise ConfigError({"base": f"base must be a RunConfig, got {type(base).__name__}: {base!r}"})
    unknown = [n for n in axes if n not in {f.name for f in fields(RunConfig)}]
    if unknown:
        raise ConfigError({n: f"{n} is not a RunConfig field, so it cannot be a sweep axis" for n in unknown})
    names = list(axes)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in axes.values()]
    out = []
    for combo in itertools.product(*values):
        changes = dict(zip(names, combo, strict=True))
        try:
            out.append(base.replace(**changes))
        except ConfigError as exc:
            out.append((changes, exc))
    return out


def sweep(base: RunConfig, store=None, sinks=(), stop=None, executor: str = "local", address: Optional[str] = None,
          resources_per_trial: Optional[dict] = None, **axes):
    """Train every combination of ``axes`` (e.g. rank=[4, 16], quant=['none', 'nf4']) and return the table.

    Invalid combinations (e.g. method='full' with quant='nf4') are skipped with a warning; failed
    runs are recorded as 'failed' and the sweep goes on. Returns compare() of the trials.

    executor: "local" trains the trials one after another in this process; "ray" runs each as a Ray
    task (``pip install "lorakit[ray]"``), on a local Ray started here (``address=None``) or a cluster
    (``address="auto"``, ``"host:6379"``, ``"ray://host:10001"``), each asking ``resources_per_trial``
    (e.g. ``{"cpu": 1, "gpu": 0.5}``; default one CPU, one GPU when the cluster has GPUs). Either
    way the events reach ``sinks`` and ``store`` in this process, which alone writes the store.
    """
    from lorakit.comparison.table import compare
    from lorakit.store import open_store

    if executor not in EXECUTORS:
        raise ConfigError({"executor": f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"})
    if executor == "local" and (address is not None or resources_per_trial):
        raise ConfigError({"address": 'address and resources_per_trial need executor="ray"'})
    configs = []
    for item in grid(base, **axes):
        if isinstance(item, tuple):
            changes, exc = item
            log.warning("sweep: skipping %s: %s", changes, "; ".join(exc.problems.values()))
        else:
            configs.append(item)
    if executor == "ray":
        from lorakit.sweeps.ray_trials import require_ray

        require_ray()  # the install command before anything runs
    store, opened_here = open_store(store)  # one store for every trial
    try:
        if executor == "ray":
            from lorakit.sweeps.ray_trials import run

            records = run(configs, store, sinks, stop, address=address, resources=resources_per_trial)
        else:
            records = _run_here(configs, store, sinks, stop)
    finally:
        if opened_here:
            store.close()
    return compare(records)


def _run_here(configs: list, store, sinks, stop) -> list:
    """The trials one after another in this process; Ctrl-C ends the one running and the sweep."""
    from lorakit.training.one_run import train

    records = []
    for config in configs:
        if stop is not None and stop.is_set():
            break
        records.append(train(config, sinks=sinks, store=store if store is not None else False, stop=stop))
        if records[-1].reason == INTERRUPTED:
            break
    return records
