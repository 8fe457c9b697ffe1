"""Fuzzed: the ``lorakit`` command's flags (train, sweep, plan, compare, models) with odd values.
argparse refuses what it can parse no further (exit 2, naming the flag); everything else runs or
raises a lorakit error naming the flag's field (fuzz_support.outcome), and ``main`` never shows a
traceback. Training itself is replaced by a stand-in: only the arguments are under test."""
import dataclasses
from unittest import mock

import pytest
from fuzz_support import budget, outcome
from hypothesis import given
from hypothesis import strategies as st

from lorakit.cli import commands as cli
from lorakit.config.run_config import RunConfig

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
WORDS = st.one_of(st.sampled_from(["0", "-1", "1", "8", "1e-3", "nan", "inf", "true", "no", "none", "nf4", "lora",
                                   "full", "qv", "all-linear", "q_proj", "tiny-llama", "llama-7b", "extract-json",
                                   "missing.jsonl", "cp1252", "skip", "", "--", "-"]),
                  st.text(st.characters(blacklist_categories=["Cs"]), max_size=8))
PLAN_FLAGS = ["--method", "--quant", "--optimizer", "--dtype", "--rank", "--batch-size", "--seq-len",
              "--target-modules", "--double-quant", "--no-double-quant", "--gradient-checkpointing"]


class _Trained(Exception):
    """A stand-in for training: the command got this far with valid arguments."""


def _no_training(*args, **kwargs):
    raise _Trained


def flags(names):
    """A few ``--flag value...`` groups from ``names``."""
    group = st.tuples(st.sampled_from(names), st.lists(WORDS, max_size=2))
    return st.lists(group, max_size=4).map(lambda gs: [w for f, vs in gs for w in (f, *vs)])


COMMANDS = st.one_of(
    st.tuples(st.sampled_from(["train", "sweep"]), flags(["--" + f.replace("_", "-") for f in FIELDS])),
    st.tuples(st.just("plan"), st.tuples(WORDS, flags(PLAN_FLAGS)).map(lambda t: [t[0], *t[1]])),
    st.tuples(st.just("compare"), flags(["--delete"])),
    st.tuples(st.just("models"), st.just([])),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cli") / "runs.db")


@budget(120)
@given(command=COMMANDS)
def test_cli_flags(store, command, capsys):
    name, rest = command
    argv = ["--store", store, name, *rest]
    names = [w.lstrip("-").replace("-", "_") for w in rest if w.startswith("--")] + ["model", "run", "store"]
    with mock.patch("lorakit.training.one_run.train", _no_training):
        try:
            ns = cli.build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: "lorakit train: error: argument --rank: invalid int value"
            assert exc.code == 2 and "error: " in capsys.readouterr().err
            return
        try:
            outcome(cli.COMMANDS[name], ns, names=names)
        except _Trained:
            pass
        try:  # the whole command: a return code and a message, never a traceback
            assert cli.main(argv) in (0, 1, 2)
        except _Trained:
            pass
    err = capsys.readouterr().err
    assert "Traceback" not in err
