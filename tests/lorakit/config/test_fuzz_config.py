"""Fuzzed: RunConfig (construction, from_dict, replace), sweep's axes and compare's arguments. Any
input works or raises a lorakit error naming the field or argument (fuzz_support.outcome)."""
import dataclasses
from unittest import mock

import pytest
from fuzz_support import JUNK, budget, outcome
from hypothesis import given
from hypothesis import strategies as st

import lorakit
from lorakit.config.run_config import DTYPES, METHODS, ON_BAD_ROWS, OPTIMIZERS, QUANTS, ConfigError, RunConfig
from lorakit.store import RunStore

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
CHOICES = {"method": METHODS, "quant": QUANTS, "dtype": DTYPES, "optimizer": OPTIMIZERS, "on_bad_rows": ON_BAD_ROWS,
           "model": ("tiny-llama", "smollm2-135m", "llama-7b", "no-such-model"),
           "target_modules": ("qv", "all-linear", ("q_proj",), ("up_proj", "nope")),
           "data_encoding": ("utf-8", "cp1252", "latin-1", "rot13", "klingon"),
           "dataset": ("extract-json", "sort-words", "no/such-dataset", "missing.jsonl")}


def value(name: str):
    """A field's value: one of its valid choices, a number near its bounds, or junk."""
    valid = st.sampled_from(CHOICES[name]) if name in CHOICES else st.one_of(
        st.integers(-2, 5), st.floats(-1, 2), st.booleans())
    return st.one_of(valid, valid, JUNK)


CONFIGS = st.fixed_dictionaries({}, optional={name: value(name) for name in FIELDS})


@budget(300)
@given(CONFIGS)
def test_run_config_accepts_or_names_every_bad_field(kwargs):
    result = outcome(RunConfig, names=kwargs, **kwargs)
    if isinstance(result, ConfigError):
        assert set(result.problems) <= set(kwargs) | {"method", "target_modules"}  # method: full with quant
    else:
        assert result.problems() == {} and RunConfig.from_dict(result.to_dict()) == result


@budget(100)
@given(st.one_of(CONFIGS, st.dictionaries(st.text(max_size=6), JUNK, max_size=3), JUNK))
def test_from_dict_takes_only_mappings_and_known_fields(d):
    outcome(RunConfig.from_dict, d, names=("config", *(d if isinstance(d, dict) else ())))


@budget(100)
@given(CONFIGS)
def test_replace_validates_like_construction(changes):
    outcome(RunConfig(model="tiny-llama").replace, names=changes, **changes)


class _Trained(Exception):
    """A stand-in for training: a sweep that got this far accepted its arguments."""


def _no_training(*args, **kwargs):
    raise _Trained


@budget(60)
@given(base=st.one_of(st.just(RunConfig(model="tiny-llama")), JUNK),
       axes=st.dictionaries(st.sampled_from([*FIELDS, "rnak", "steps"]),
                            st.one_of(st.lists(value("rank"), max_size=3), value("quant"), JUNK), max_size=3))
def test_sweep_arguments(base, axes):
    with mock.patch("lorakit.training.one_run.train", _no_training):
        try:
            outcome(lorakit.sweep, base, store=False, names=("base", *axes), **axes)
        except _Trained:
            pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("fuzz") / "runs.db")


@budget(60)
@given(runs=st.one_of(st.none(), st.text(max_size=12), st.lists(st.one_of(st.text(max_size=8), JUNK), max_size=3),
                      JUNK),
       store_kind=st.sampled_from(["store", "path", "directory", "not-sqlite", "junk"]),
       junk=JUNK.filter(lambda v: not isinstance(v, str)))  # a text store is a path: no files in the cwd
def test_compare_arguments(store, tmp_path_factory, runs, store_kind, junk):
    where = tmp_path_factory.getbasetemp()
    arg = {"store": store, "path": str(store.path), "directory": str(where), "junk": junk,
           "not-sqlite": str(where / "not-sqlite.db")}[store_kind]
    (where / "not-sqlite.db").write_text("not a database")
    outcome(lorakit.compare, runs, store=arg, names=("runs", "store", "run"))
