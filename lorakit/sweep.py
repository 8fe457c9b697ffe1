"""sweep(): run a grid of configurations in order; a failing trial is recorded and the rest go on."""
from __future__ import annotations

import itertools
import logging
from dataclasses import fields

from .config import ConfigError, RunConfig

log = logging.getLogger("lorakit")


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


def sweep(base: RunConfig, store=None, sinks=(), stop=None, **axes):
    """Train every combination of ``axes`` (e.g. rank=[4, 16], quant=['none', 'nf4']) and return the table.

    Invalid combinations (e.g. method='full' with quant='nf4') are skipped with a warning; failed
    runs are recorded as 'failed' by train() and the sweep goes on. Returns compare() of the trials.
    """
    from .store import open_store
    from .table import compare
    from .training import train

    store, opened_here = open_store(store)  # one store for every trial
    records = []
    try:
        for item in grid(base, **axes):
            if isinstance(item, tuple):
                changes, exc = item
                log.warning("sweep: skipping %s: %s", changes, "; ".join(exc.problems.values()))
                continue
            if stop is not None and stop.is_set():
                break
            records.append(train(item, sinks=sinks, store=store if store is not None else False, stop=stop))
    finally:
        if opened_here:
            store.close()
    return compare(records)
