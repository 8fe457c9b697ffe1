"""headline: a generated news sentence -> its headline (who did what), a text-to-text task.

Each sentence states one fact, a subject, a verb and an object ("the city council approved a new bike
lane"), wrapped in filler: an opening, an adverb, a time, a place and a closing remark, some before the
fact and some after it. The headline is the fact's own words in their order, without the filler and
without the articles a/an/the ("city council approved new bike lane"): the answer is copied from the
input, so even a small, randomly initialised encoder-decoder moves on it, while an exact match needs
the model to tell the fact from the filler. Built for encoder-decoders (T5's "headline: ..." prefix
style); a decoder can train it as well, as a prompt and an answer.
"""
from __future__ import annotations

import random
import re

_SUBJECTS = (
    "city council", "school board", "local bakery", "football club", "hospital", "train company", "museum",
    "mayor", "university", "fire brigade", "library", "farmers market", "police", "zoo", "airport",
    "water utility", "theatre group", "chess club", "tech startup", "orchestra", "town hall", "bus company",
    "health ministry", "port authority",
)
_VERBS = ("approved", "opened", "cancelled", "announced", "delayed", "launched", "closed", "expanded",
          "postponed", "unveiled", "rejected", "funded")
_OBJECTS = (
    "a new bike lane", "the summer festival", "a free bus pass", "its night service", "a bigger car park",
    "the annual marathon", "a recycling scheme", "a new website", "the old bridge", "a reading program",
    "the winter market", "a solar roof", "its weekend hours", "a training center", "the river cleanup",
    "a youth league",
)
_ADVERBS = ("", "", "quietly", "finally", "suddenly", "officially", "once again", "unexpectedly")
_TIMES = ("on Monday", "on Friday", "last week", "this morning", "late on Tuesday", "yesterday", "earlier today",
          "over the weekend", "in March", "after a long debate", "at short notice", "for the third time")
_PLACES = ("in Lisbon", "in Oslo", "downtown", "in the north", "near the harbour", "in Leeds", "across the region",
           "in the old town", "in Porto", "on the east side")
_OPENERS = ("", "", "According to local news,", "In a short statement,", "To the surprise of many,", "As expected,",
            "Officials confirmed that", "Residents heard that")
_TAILS = (".", ".", ", officials said.", ", according to a spokesperson.", " after months of talks.",
          ", residents reported.", ", the newsletter says.", " despite the rain.")
PREFIX = "headline: "
_ARTICLES = {"a", "an", "the"}


def _sentence(rng: random.Random, fact: str) -> str:
    """The fact in one of three shapes: filler first, filler after, or a place leading the sentence."""
    time, place, opener, tail = rng.choice(_TIMES), rng.choice(_PLACES), rng.choice(_OPENERS), rng.choice(_TAILS)
    shape = rng.randrange(3)
    if shape == 0:
        text = f"{opener} {time}, {fact} {place}"
    elif shape == 1:
        text = f"{opener} {fact} {time} {place}"
    else:
        text = f"{opener} {place}, {time}, {fact}"
    text = " ".join(text.split()) + tail
    return text[0].upper() + text[1:]


def make(rng: random.Random) -> tuple[str, str]:
    """(``headline: <sentence>``, headline): 24 subjects x 12 verbs x 16 objects, 8 adverbs, 12 times,
    10 places, 8 openings, 8 endings, 3 shapes (over 10**9 sentences, of 4,608 headlines)."""
    subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
    adverb = rng.choice(_ADVERBS)
    fact = " ".join(w for w in ("the", subject, adverb, verb, obj) if w)
    headline = " ".join(w for w in f"{subject} {verb} {obj}".split() if w not in _ARTICLES)
    return PREFIX + _sentence(rng, fact), headline


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation: what a headline is compared on."""
    return re.findall(r"[a-z0-9']+", text.lower())


def check(prediction: str, reference: str) -> dict:
    """The same words in the same order (case and punctuation ignored); ``missing``: reference words the
    prediction lacks, ``extra``: prediction words the reference lacks (each counted once per occurrence)."""
    pred, ref = words(prediction), words(reference)
    missing, extra = list(ref), []
    for w in pred:
        if w in missing:
            missing.remove(w)
        else:
            extra.append(w)
    return {"correct": pred == ref, "missing": missing, "extra": extra}
