"""Measured memory breakdown: base weights, adapters, gradients, optimizer state, activations.

Everything is counted from real tensors (each storage once), so the same anatomy is shown on a
CPU laptop and on a GPU. On CUDA the allocator's own figures are added alongside in ``cuda``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

CATEGORIES = ("base_weights", "adapters", "gradients", "optimizer", "activations")


@dataclass
class MemoryBreakdown:
    """Bytes per category, measured or planned."""
    base_weights: int = 0
    adapters: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    cuda: Optional[dict] = None  # allocator figures (allocated, reserved, peak) when measured on CUDA

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in CATEGORIES)

    def as_dict(self) -> dict:
        d = {c: int(getattr(self, c)) for c in CATEGORIES}
        d["total"] = self.total
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryBreakdown":
        return cls(**{c: int(d.get(c, 0)) for c in CATEGORIES}, cuda=d.get("cuda"))
