"""A step's memory timeline: what is alive, by category, at each phase of a training step.

The five steady categories (``breakdown.CATEGORIES``) never all exist at once: the activations are freed
during backward as the gradients appear. A timeline is ``[(phase, {category: bytes})]`` in step order, the
categories (``TIMELINE_CATEGORIES``: the five plus ``transient``, what sits on top only at that moment)
adding up to the memory alive then; its tallest moment is the step's peak.

- **Planned** (``planning.peak``): the moments the peak is planned from, plus the end of the forward.
- **Measured**, sampled at each phase's maximum (``PhaseLevel``). The resident categories (base weights,
  adapters, optimizer state, gradients already allocated) are counted from the real tensors when recording
  starts; the rise above them is attributed by phase, which is as far as a trajectory of signed byte counts
  can honestly go (it has no addresses: a free is not matched to its allocation):

  - forward: all of the rise is ``activations`` (what the forward saved, plus its own buffers such as the logits);
  - logits-loss, backward: the rise held when the phase began is ``activations`` (the forward's, still alive),
    what the phase added on top of that is ``transient`` (in backward: gradients and working buffers, net of the
    activations it freed);
  - optimizer step: the rise held when it began is ``gradients`` (the activations are freed by then); on top,
    the optimizer state the step created (step 1) is ``optimizer``, the rest ``transient``.

  On CPU the levels come from the profiler's ``[memory]`` events summed in time order, each event's phase from
  the ops enclosing it (``step_peak.phase_of``); on CUDA from the allocator at the phase marks
  (``torch.cuda.memory_allocated`` when a phase begins, ``max_memory_allocated`` while it runs).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from lorakit.memory.breakdown import CATEGORIES

TIMELINE_CATEGORIES = CATEGORIES + ("transient",)

# the phase after which the rise held is activations, and what the phase adds on top of it
_ON_TOP = {"forward": "activations", "logits-loss": "transient", "backward": "transient",
           "optimizer step": "transient"}


@dataclass
class PhaseLevel:
    """One phase of a recorded step: bytes above the resident ones, when it began and at its most."""
    phase: str
    """forward, logits-loss, backward or optimizer step."""
    began: int
    """The rise above the resident bytes just before the phase's first allocation (or its mark, on CUDA)."""
    top: int
    """The rise at the phase's highest moment."""


def moment(**parts: int) -> dict:
    """A timeline moment: every category, 0 where not given."""
    return {c: int(parts.get(c, 0)) for c in TIMELINE_CATEGORIES}


def tallest(timeline: Optional[list]) -> Optional[tuple]:
    """(phase, bytes) of a timeline's highest moment (the first of equals); None for no timeline."""
    if not timeline:
        return None
    phase, parts = max(timeline, key=lambda m: sum(m[1].values()))
    return phase, sum(parts.values())


def measured_timeline(resident: dict, levels: list, new_state: int = 0) -> list:
    """The measured timeline from a step's ``PhaseLevel`` s (in the order the phases began). ``resident``:
    the categories alive when recording started; ``new_state``: optimizer-state bytes the step created."""
    out = []
    for lv in levels:
        below = max(0, min(lv.began, lv.top))
        parts = dict(resident)
        if lv.phase == "optimizer step":
            created = max(0, min(new_state, lv.top - below))
            parts["gradients"] = parts.get("gradients", 0) + below
            parts["optimizer"] = parts.get("optimizer", 0) + created
            parts["transient"] = lv.top - below - created
        else:
            parts["activations"] = parts.get("activations", 0) + below
            on_top = _ON_TOP.get(lv.phase, "transient")
            parts[on_top] = parts.get(on_top, 0) + lv.top - below
        out.append((lv.phase, moment(**parts)))
    return out


# --- CPU: the profiler's trajectory, each allocation with its phase -----------------------------------
def cpu_levels(prof) -> tuple[list, int, str]:
    """(``PhaseLevel`` s in the order the phases began, the largest rise, the phase of the allocation that
    made it) from a finished ``torch.profiler.profile(profile_memory=True)``; one pass over its events."""
    from lorakit.memory.step_peak import phase_of

    events = list(prof.profiler.kineto_results.events())
    phased = []  # (time, order, bytes, phase)
    mem_by_thread, ops_by_thread = defaultdict(list), defaultdict(list)
    for i, e in enumerate(events):
        if e.name() == "[memory]":
            mem_by_thread[e.start_thread_id()].append((e.start_ns(), i, e.nbytes()))
        else:
            ops_by_thread[e.start_thread_id()].append((e.start_ns(), -e.end_ns(), e.name()))
    cache: dict = {}
    for thread, mems in mem_by_thread.items():
        phased += _phase_each(sorted(mems), sorted(ops_by_thread.get(thread, ())), phase_of, cache)
    phased.sort()
    level = rise = 0
    at = ""
    began, top = {}, {}
    for _, _, nbytes, phase in phased:
        began.setdefault(phase, level)
        level += nbytes
        top[phase] = max(top.get(phase, level), level)
        if level > rise:
            rise, at = level, phase
    return [PhaseLevel(p, began[p], top[p]) for p in began], rise, at


def _phase_each(mems: list, ops: list, phase_of, cache: dict) -> list:
    """[(time, order, bytes, phase)] for one thread's memory events (sorted by time), each phase from the
    names of the ops enclosing it (``ops``: (start, -end, name) sorted), with a stack of open ops."""
    out, stack, j = [], [], 0
    for t, order, nbytes in mems:
        while j < len(ops) and ops[j][0] <= t:
            start, neg_end, name = ops[j]
            while stack and -stack[-1][1] < start:
                stack.pop()
            stack.append(ops[j])
            j += 1
        names = tuple(name for start, neg_end, name in stack if -neg_end >= t)
        if names not in cache:
            cache[names] = phase_of(list(names))
        out.append((t, order, nbytes, cache[names]))
    return out
