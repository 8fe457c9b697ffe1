"""What the fuzz tests share: a fixed, seeded budget, junk values, and the rule every entry point keeps.

The rule: any input either works or raises one of lorakit's own errors whose message names the
argument; never a library's raw ValueError, KeyError, TypeError, RuntimeError or UnicodeDecodeError.
(A TypeError that lorakit raises itself for a value of the wrong kind, naming the argument, is
Python's convention and is allowed; one from inside a library is not.)
"""
from __future__ import annotations

import traceback
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lorakit.adapters.base_record import AdapterError
from lorakit.config.run_config import ConfigError
from lorakit.data import DataError
from lorakit.models.loading import ModelUnavailable
from lorakit.models.quantization import QuantizationUnavailable
from lorakit.store import StoreError

LORAKIT_ERRORS = (ConfigError, DataError, ModelUnavailable, QuantizationUnavailable, AdapterError, StoreError)
LORAKIT_DIR = str(Path(__import__("lorakit").__file__).parent)


def budget(n: int):
    """A fixed number of examples, derandomized (the same inputs every run), no deadline: CI stays
    deterministic and its time bounded."""
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


# values a user might pass by mistake: wrong kinds, edge numbers, odd text
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(10 ** 12), 10 ** 12), st.sampled_from([0, -1, 1, 2 ** 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", " ", "none", "NF4", "cuda", "cpu", "auto", "1e-3", "ø", "\x00", "../", "all-linear"]),
    st.binary(max_size=6), st.lists(st.integers(-3, 300), max_size=3), st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2), st.just(object()),
)


def names_argument(exc: BaseException, names) -> bool:
    text = str(exc)
    problems = getattr(exc, "problems", None)
    if isinstance(problems, dict) and problems:
        return all(k in text for k in problems) and any(k in names for k in problems)
    return any(n in text for n in names)


def outcome(fn, *args, names=(), **kwargs):
    """``fn(*args, **kwargs)``, or the lorakit error it raised after checking that its message names one
    of ``names``; any other exception fails the test, with the library's traceback."""
    try:
        return fn(*args, **kwargs)
    except LORAKIT_ERRORS as exc:
        assert names_argument(exc, names), f"{type(exc).__name__} names none of {list(names)}: {exc}"
        return exc
    except TypeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        raised_by_lorakit = bool(frames) and frames[-1].filename.startswith(LORAKIT_DIR)
        if not (raised_by_lorakit and names_argument(exc, names)):
            raise
        return exc
