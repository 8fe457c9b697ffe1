"""arithmetic: add or subtract two numbers from 10 to 999 (a difference is never negative)."""
from __future__ import annotations

import random


def make(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer): a sum or a difference, asked for as a bare number."""
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    if rng.random() < 0.5:
        return f"What is {a} + {b}? Answer with the number only.", str(a + b)
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}? Answer with the number only.", str(a - b)


def check(prediction: str, reference: str) -> dict:
    """The number, exactly; thousands separators and a final full stop are tolerated."""
    return {"correct": prediction.strip().rstrip(".").replace(",", "") == reference.strip()}
