"""sort-words: 3-6 words -> the same words in alphabetical order."""
from __future__ import annotations

import random

_WORDS = (
    "apple", "river", "candle", "mango", "tiger", "planet", "violin", "anchor", "bridge", "cloud",
    "desert", "engine", "forest", "garden", "harbor", "island", "jacket", "kettle", "lemon", "marble",
    "needle", "orange", "pepper", "quartz", "rabbit", "saddle", "timber", "umbrella", "valley",
    "walnut", "yogurt", "zebra", "basket", "copper", "dolphin", "falcon", "ginger", "hammer", "iron",
    "jungle", "kitten", "ladder", "meadow", "nickel", "oyster", "pillow", "rocket", "silver",
    "tunnel", "velvet", "window", "bamboo", "cactus", "dragon", "feather", "glacier", "honey",
    "lantern", "mirror", "napkin", "olive", "parrot", "ribbon", "spider", "tomato", "wagon", "cherry",
    "button", "carpet", "puzzle", "castle", "salmon", "pencil", "butter", "cotton", "banana",
    "breeze", "cable", "circle", "coffee", "crystal", "donkey", "gravel", "helmet", "mushroom",
)


def make(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer): distinct words from the list; the answer separates them by spaces."""
    words = rng.sample(_WORDS, rng.randint(3, 6))
    prompt = "Sort these words alphabetically. Answer with the sorted words separated by spaces.\n\n" + " ".join(words)
    return prompt, " ".join(sorted(words))


def check(prediction: str, reference: str) -> dict:
    """The same words in the same order; commas and a final full stop are tolerated."""
    pred = prediction.replace(",", " ").strip().rstrip(".").split()
    return {"correct": pred == reference.split()}
