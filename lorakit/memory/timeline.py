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
# phase_of's precedence, lowest first: an allocation inside any op of a later phase belongs to that phase
_PRECEDENCE = ("forward", "backward", "logits-loss", "optimizer step")


def cpu_levels(prof) -> tuple[list, int, str]:
    """(``PhaseLevel`` s in the order the phases began, the largest rise, the phase of the allocation that
    made it) from a finished ``torch.profiler.profile(profile_memory=True)``; one pass over its events.

    A recorded SmolLM2 step has ~40,000 events and is read while the run waits: only the ops that raise the phase
    above ``forward`` (backward nodes, the loss, the optimizer) are kept with their times, each name classified
    once (``step_peak.phase_of`` is the highest phase any enclosing op names, so it is decided op by op)."""
    from lorakit.memory.step_peak import phase_of

    rank_of: dict = {}  # op name -> its index in _PRECEDENCE
    mems, ops = defaultdict(list), defaultdict(list)  # by thread: (time, order, bytes); (start, -end, rank)
    for i, e in enumerate(prof.profiler.kineto_results.events()):
        name = e.name()
        if name == "[memory]":
            mems[e.start_thread_id()].append((e.start_ns(), i, e.nbytes()))
            continue
        rank = rank_of.get(name)
        if rank is None:
            rank = rank_of[name] = _PRECEDENCE.index(phase_of([name]))
        if rank:
            ops[e.start_thread_id()].append((e.start_ns(), -e.end_ns(), rank))
    phased = []  # (time, order, bytes, phase)
    for thread, events in mems.items():
        phased += _phase_each(sorted(events), sorted(ops.get(thread, ())))
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


def _phase_each(mems: list, ops: list) -> list:
    """[(time, order, bytes, phase)] for one thread's memory events (sorted by time), each phase the highest rank
    of the kept ops enclosing it (``ops``: (start, -end, rank) sorted). The ops of one thread nest, so a stack of
    (end, highest rank so far) holds a chain of ops, each inside the one below it."""
    out, stack, j = [], [], 0
    for t, order, nbytes in mems:
        while j < len(ops) and ops[j][0] <= t:
            start, neg_end, rank = ops[j]
            while stack and stack[-1][0] < -neg_end:  # not inside the top (it ended first): not its parent
                stack.pop()
            stack.append((-neg_end, max(rank, stack[-1][1]) if stack else rank))
            j += 1
        while stack and stack[-1][0] < t:  # ended before this allocation
            stack.pop()
        out.append((t, order, nbytes, _PRECEDENCE[stack[-1][1] if stack else 0]))
    return out
