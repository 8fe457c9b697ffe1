"""How lorakit shows numbers to people: binary units and ``fmt_bytes()``, the memory categories' names and
colours, and ``finite()`` (a number worth drawing, or None). Shared by the table, the figures, the CLI and
the widgets, so a category is called and coloured the same everywhere."""
from __future__ import annotations

import math
from typing import Any, Optional

MiB = 1024 ** 2  # every memory figure on a chart or in a table is in MiB (2**20 bytes)
GiB = 1024 ** 3

# keyed by lorakit.memory.breakdown.CATEGORIES
CATEGORY_NAMES = {
    "base_weights": "base weights", "adapters": "adapters", "gradients": "gradients",
    "optimizer": "optimizer state", "activations": "activations",
}
CATEGORY_COLORS = {
    "base_weights": "#8c96a6", "adapters": "#e45756", "gradients": "#f2a93b",
    "optimizer": "#4c78a8", "activations": "#54a24b",
}
# a step's timeline (memory.timeline): the five, and what sits on top only at one moment
TIMELINE_NAMES = dict(CATEGORY_NAMES, transient="on top (transient)")
TIMELINE_COLORS = dict(CATEGORY_COLORS, transient="#b279a2")
# the step peak's marker over a memory bar, measured or planned (predicted)
PEAK_COLORS = {"measured": "#111111", "planned": "#7b3294"}


def finite(x: Any) -> Optional[float]:
    """``x`` as a float, or None when it is missing, not a number, NaN or infinite (a gap in a chart)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_bytes(n: Any) -> str:
    """Bytes for people: B, KiB, MiB or GiB with the precision each deserves; "—" for None."""
    if n is None:
        return "—"
    n = float(n)
    if n >= GiB:
        return f"{n / GiB:,.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:,.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"
