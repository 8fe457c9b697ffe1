"""Will it fit? The planned step peak (plus the device overhead on a GPU) against a device's memory.

``fits`` plans a run for each device and answers: does it fit, and the largest ``batch_size`` (at the
plan's ``seq_len``) and the largest ``seq_len`` (at its ``batch_size``) that do. The devices are the
common accelerators of ``accelerators.json`` (data: edit it, nothing is hard-coded here), this
machine's free RAM (``"this machine"``, planned as a CPU run), or sizes in GiB.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

from lorakit.common.devices import free_ram
from lorakit.common.errors import ConfigError

GIB = 2**30
THIS_MACHINE = "this machine"
_LIMIT = 1 << 20  # search ceiling for batch_size and seq_len


@dataclass
class Fit:
    """One device's verdict for a planned run (bytes)."""
    device: str
    capacity: int
    """Bytes the device offers: its memory (a GPU) or the free RAM (this machine)."""
    need: int
    """Planned peak plus device overhead for the plan's batch_size x seq_len."""
    fits: bool
    max_batch_size: int
    """Largest batch_size that fits at the plan's seq_len (0: not even one sequence)."""
    max_seq_len: int
    """Largest seq_len that fits at the plan's batch_size (0: not even one token)."""
    target: str
    """'cuda' or 'cpu': what the plan assumed for this device."""
    step_s: Optional[float] = None
    """An estimate of seconds per step on the row's named card (``speeds``), at ``efficiency`` of its peak."""
    efficiency: Optional[float] = None
    """The share of the card's published bf16 throughput and bandwidth ``step_s`` assumes."""
    card: str = ""
    """The card ``step_s`` is for (the row's first example); '' without one."""
    run_s: Optional[float] = None
    """``step_s`` times the run's steps."""
    cost: Optional[float] = None
    """The run's price at ``price_per_hour`` (None without one)."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@lru_cache(maxsize=1)
def accelerators() -> dict[str, int]:
    """Name -> bytes of the common accelerators (``lorakit/memory/accelerators.json``)."""
    data = json.loads((Path(__file__).with_name("accelerators.json")).read_text())
    return {name: int(gib * GIB) for name, gib in data["devices"].items()}


@lru_cache(maxsize=1)
def speeds() -> dict:
    """Name -> ``{"card", "bf16_tflops", "bandwidth_gbs", "source"}``: the published speeds of a card of each
    row of ``accelerators.json`` (rows without one are left out)."""
    data = json.loads((Path(__file__).with_name("accelerators.json")).read_text())
    return dict(data.get("speeds", {}))





def _devices(devices) -> list[tuple[str, int, str]]:
    """(name, capacity bytes, plan target) for each requested device; a ConfigError names bad ones."""
    table = accelerators()
    if devices is None:
        devices = [*table, THIS_MACHINE]
    elif isinstance(devices, (str, int, float)):
        devices = [devices]
    out, bad = [], []
    for d in devices:
        if isinstance(d, bool):
            bad.append(repr(d))
        elif isinstance(d, (int, float)):
            (out.append((f"{d:g} GiB", int(d * GIB), "cuda")) if 0 < d < math.inf else bad.append(repr(d)))
        elif d == THIS_MACHINE:
            out.append((THIS_MACHINE, free_ram(), "cpu"))
        elif isinstance(d, str) and (match := _match(d, table)):
            out.append((match, table[match], "cuda"))
        else:
            bad.append(repr(d))
    if bad:
        raise ConfigError({"devices": (
            f"unknown device or size {', '.join(bad)}: give sizes in GiB (> 0), {THIS_MACHINE!r}, or names "
            f"from lorakit/memory/accelerators.json: {', '.join(map(repr, table))} "
            "(a unique prefix such as '24GB' works)")})
    return out


def _match(name: str, table: dict) -> Optional[str]:
    if name in table:
        return name
    hits = [k for k in table if k.lower().startswith(name.lower())]
    return hits[0] if len(hits) == 1 else None


def _run_fits(cfg, devices, price_per_hour=None, efficiency=None) -> list[Fit]:
    """``fits`` for a RunConfig: the run's own plan per device kind, its data built once. The largest batch_size
    regroups the same examples in the same order; the largest seq_len is searched with full-length batches (the
    data at another length is not built): a lower bound. Time per step as ``fits``' (full-length batches: an upper
    bound), for the run's ``max_steps``."""
    from lorakit.memory.planner import config_settings, planning
    from lorakit.memory.run_plan import plan_known, run_data

    targets = _devices(devices)
    data = run_data(cfg)
    needs: dict = {}  # (target, batch_size) -> the run's need: the devices of one kind share their searches

    def run_need(target: str, batch_size: int) -> int:
        if (target, batch_size) not in needs:
            needs[(target, batch_size)] = plan_known(cfg, data, target, batch_size).device_total
        return needs[(target, batch_size)]

    # a batch larger than the training set is the whole set: the search ends there
    most = len(data.lengths) if data.lengths is not None else _LIMIT
    out = []
    for name, capacity, target in targets:
        need = run_need(target, cfg.batch_size)
        full = planning(config_settings(cfg, data.num_labels), device=target)
        fit = Fit(device=name, capacity=capacity, need=need, fits=need <= capacity,
                  max_batch_size=_search(lambda b, t=target: run_need(t, b), capacity, most),
                  max_seq_len=_largest(full, capacity, "seq_len"), target=target)
        out.append(_timed(fit, full, speeds().get(name), price_per_hour, cfg.max_steps, efficiency))
    return out


def _largest(planning, capacity: int, field: str) -> int:
    """Largest value of ``field`` (batch_size or seq_len) whose need fits ``capacity``."""
    return _search(lambda value: planning.plan(**{field: value}).device_total, capacity)


def _search(need, capacity: int, limit: int = _LIMIT) -> int:
    """Largest value up to ``limit`` whose ``need(value)`` fits ``capacity``; the need grows with the value, so
    doubling then bisecting finds it in O(log n) plans."""
    if need(1) > capacity:
        return 0
    lo, hi = 1, 2
    while hi <= limit and need(hi) <= capacity:
        lo, hi = hi, hi * 2
    if hi > limit:
        hi = limit + 1  # bisect below the limit, the limit itself included
        if need(limit) <= capacity:
            return limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if need(mid) <= capacity else (lo, mid)
    return lo


def fits(model="smollm2-135m", devices: Union[None, str, float, Sequence] = None, *,
         price_per_hour: Optional[float] = None, steps: int = 30, efficiency: Optional[float] = None,
         **plan_kwargs) -> list[Fit]:
    """Does a run fit on each device, and the largest batch_size / seq_len that do.

    ``model`` and ``plan_kwargs``: as for ``lorakit.plan_memory`` (method, quant, rank, batch_size,
    seq_len, gradient_checkpointing, dtype, ...; ``labelled_head=True``: lorakit.train's labelled-only head;
    ``device`` is set per device); or ``model`` a run's parts (``RunConfig.settings``,
    ``planner.config_settings(cfg)``) with only ``padded``, ``device_overhead`` or ``labelled_tokens``.
    ``model`` a ``RunConfig`` (``fits(cfg, devices)``): the run ``lorakit.train(cfg)`` trains, planned from its
    own data (``lorakit.plan``): ``need`` is that run's peak (loading included) plus the device overhead.
    ``devices``: names from ``lorakit/memory/accelerators.json`` (or a unique prefix, e.g. ``"24GB"``),
    ``"this machine"`` (free RAM, a CPU plan) or sizes in GiB; default: every accelerator of the table and
    this machine. GPUs are planned as CUDA runs (bf16 unless ``dtype`` is given) with the CUDA device overhead.
    Time (an estimate): for each row of the table with a named card (``speeds()``), ``step_s`` prices the step's
    FLOPs and bytes (``memory.timing.gpu_step_seconds``) at ``efficiency`` (default ``timing.GPU_EFFICIENCY``) of
    its published bf16 throughput and bandwidth; ``run_s`` for ``steps`` steps and, with ``price_per_hour``
    (any currency), the run's ``cost``.
    Raises ``ConfigError`` naming ``devices`` or the plan's fields.
    """
    from lorakit.config.parts import Settings
    from lorakit.memory.planner import planning, settings_of

    if "device" in plan_kwargs:
        raise ConfigError({"device": "fits() plans each device itself: pass devices=..., not device="})
    from lorakit.config.run_config import RunConfig

    if isinstance(model, RunConfig):
        if plan_kwargs:
            raise TypeError(f"fits(cfg, ...) takes no {', '.join(sorted(plan_kwargs))}: they are in the RunConfig")
        return _run_fits(model, devices, price_per_hour, efficiency)
    step = {k: plan_kwargs.pop(k) for k in ("padded", "device_overhead", "labelled_tokens") if k in plan_kwargs}
    if step.get("labelled_tokens") is not None:
        plan_kwargs.setdefault("labelled_head", True)  # as plan_memory: a count given is the labelled-only head
    if isinstance(model, Settings) and plan_kwargs:
        raise TypeError(f"fits(settings, ...) takes no {', '.join(sorted(plan_kwargs))}: they are in the parts")
    targets = _devices(devices)
    settings = model if isinstance(model, Settings) else settings_of(model, **plan_kwargs)
    # validated and resolved once per target; the searches only re-plan the step
    plannings = {t: planning(settings, **step, device=t) for t in {t for _, _, t in targets}}
    if price_per_hour is not None and (isinstance(price_per_hour, bool) or not isinstance(price_per_hour, (int, float))
                                       or not 0 <= price_per_hour < math.inf):
        raise ConfigError({"price_per_hour": f"price_per_hour must be a number >= 0, got {price_per_hour!r}"})
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError({"steps": f"steps must be an integer >= 1, got {steps!r}"})
    out = []
    for name, capacity, target in targets:
        p = plannings[target]
        need = p.plan().device_total
        fit = Fit(device=name, capacity=capacity, need=need, fits=need <= capacity,
                  max_batch_size=_largest(p, capacity, "batch_size"),
                  max_seq_len=_largest(p, capacity, "seq_len"), target=target)
        out.append(_timed(fit, p, speeds().get(name), price_per_hour, steps, efficiency))
    return out


def _timed(fit: Fit, planning, speed: Optional[dict], price_per_hour, steps: int, efficiency) -> Fit:
    """``fit`` with its card's estimated time per step, the run's seconds and cost (where the row names a card)."""
    from lorakit.memory.timing import GPU_EFFICIENCY, Card, gpu_step_seconds

    if speed is None or fit.target != "cuda":
        return fit
    eff = GPU_EFFICIENCY if efficiency is None else efficiency
    fit.step_s = gpu_step_seconds(planning, Card(speed["bf16_tflops"], speed["bandwidth_gbs"]), efficiency=eff)
    fit.efficiency, fit.card, fit.run_s = eff, speed["card"], fit.step_s * steps
    if price_per_hour is not None:
        fit.cost = price_per_hour * fit.run_s / 3600
    return fit
