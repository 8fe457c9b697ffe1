"""Fuzzed: the Studio's fields, set as a user sets them (``widget.value``: numbers in the number boxes, any
text in the file, model and export fields) or from code (``controller.set``, for fields whose widgets only
offer some values: the rank slider, the toggles, the dropdowns, the target checkboxes), then Preview, Load,
Train or Export pressed. Any value works or shows a message naming the field (under it, or the status line
after Train); never an exception out of a widget callback (the panels' guard would report it as
``Panel: SomeError: ...`` in ``controller.errors``: none may appear), and every other field keeps its value.

One Studio (tiny-llama, no run store) serves every example; each example puts the form back and checks
that the Studio is as it was. Train runs a fake engine (as in test_controller.py): no training here.
"""
from __future__ import annotations

import json
import math
import re
from unittest import mock

# the Python API's fuzz helpers (tests/support): the same fixed, seeded budget and the same junk values
import fuzz_support  # noqa: E402
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

import lorakit
from lorakit.config.run_config import DTYPES, METHODS, OPTIMIZERS, QUANTS
from lorakit.run.events import RunFinished, RunStarted, StepLogged
from lorakit.run.record import RunRecord

JUNK = fuzz_support.JUNK


def budget(n: int):
    """fuzz_support's budget, without shrinking: each example drives a whole Studio, and a failure is
    reported as found (shrinking it would take minutes)."""
    return settings(fuzz_support.budget(n), phases=[Phase.explicit, Phase.generate])


WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on
# few and short examples: every field change re-checks the data and re-plans in the background
BASE = dict(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2, train_examples=16,
            eval_examples=4, max_steps=6, learning_rate=1e-3)
NUMBER_BOXES = {"max_steps": "train_panel", "batch_size": "train_panel", "seq_len": "train_panel",
                "learning_rate": "train_panel", "train_examples": "data_panel", "eval_examples": "data_panel",
                "alpha": "adapter_panel", "dropout": "adapter_panel"}
# which panel shows each field's message
PANELS = {**NUMBER_BOXES, "model": "model_panel", "dataset": "data_panel", "rank": "adapter_panel",
          "method": "adapter_panel", "target_modules": "adapter_panel", "quant": "quant_panel",
          "double_quant": "quant_panel", "dtype": "quant_panel", "optimizer": "quant_panel"}
# ints the number boxes take: around the bounds, and far past them (10**7 and more: also more examples than a
# built-in task generates, refused at once; the valid counts above 300 would only make each example slow)
INTS = st.one_of(st.integers(-1000, 300), st.integers(10 ** 7, 10 ** 40),
                 st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, -(2 ** 63)]))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@pytest.fixture(scope="module")
def studio():
    from lorakit.widgets import Studio

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # a name that looks like a hub id fails at once, without a probe
        s = Studio(store=False, **BASE)
        assert s.wait(WAIT), "model load did not finish"
        assert s.controller.problems == {} and not s.controller.errors
        yield _Studio(s, s.controller.config())
        s.wait(WAIT)


class _Studio:
    """The Studio, with ``base``: the valid form every example starts from and returns to; and a short repr
    (hypothesis prints each failing example's arguments)."""

    def __init__(self, studio, base):
        self._studio, self.base = studio, base

    def __getattr__(self, name):
        return getattr(self._studio, name)

    def __repr__(self) -> str:
        return f"Studio({self.base.model})"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data files a user might point the file field at: good, broken, not UTF-8, odd."""
    d = tmp_path_factory.mktemp("fuzz_fields")
    good = "\n".join(json.dumps({"prompt": f"What is {i} + 1?", "completion": str(i + 1)}) for i in range(30))
    (d / "good.jsonl").write_text(good + "\n")
    (d / "latin1.jsonl").write_bytes('{"prompt": "café?", "completion": "oui"}\n'.encode("latin-1"))
    (d / "broken.jsonl").write_text(good.replace("}", "", 1) + "\n")  # line 1 lost its brace
    (d / "columns.csv").write_text("question,reply\n2+2,4\n")
    (d / "empty.jsonl").write_text("")
    (d / "junk.parquet").write_bytes(b"PAR1\x00\xff not parquet")
    (d / "notes.txt").write_text("prompt: hi\n")
    (d / "folder").mkdir()
    (d / "folder" / "config.json").write_bytes(b"\xff\xfe{not json")  # a "model" folder that is not one
    return d


# --- what every example checks ------------------------------------------------------------------------

def _named(c, field: str) -> bool:
    """A problem names ``field``: its own, or one whose text says it (``seq_len=16`` under dataset)."""
    return field in c.problems or any(field in str(m) for m in c.problems.values())


def _shown(s, field: str) -> None:
    """Each problem about ``field`` is the message under its field, or under the dataset's."""
    c = s.controller
    for key, text in c.problems.items():
        if key == field or field in text:
            panel = getattr(s, PANELS.get(key, "data_panel"))
            assert panel.message(key), f"{key}'s problem is not shown: {text}"


def _settled(s, errors_before: int) -> None:
    """Background work done and nothing raised in a callback, a job or a redraw."""
    c = s.controller
    assert s.wait(WAIT)
    assert c.errors[errors_before:] == [], c.errors[errors_before:]
    assert "form" not in c.problems, c.problems  # a problem no field shows
    raw = [m for m in c.problems.values() if re.match(r"[A-Z]\w*(Error|Exception): ", str(m))]
    assert not raw, raw  # a library's exception passed on as it came ("RuntimeError: ...")
    assert s.adapter_panel.fields["target_modules"].widget.value == ""  # only its message line shows


def _others_kept(s, field: str) -> None:
    base = s.base.to_dict()
    kept = {k: v for k, v in s.controller.values.items() if k != field}
    assert kept == {k: base[k] if not isinstance(base[k], list) else tuple(base[k]) for k in kept}


def _back_to_base(s) -> None:
    """Nothing was lost: the form is valid again and is exactly the config the example started from."""
    c = s.controller
    errors = len(c.errors)
    _settled(s, errors)
    assert c.problems == {}, c.problems
    assert c.config() == s.base


class _Engine:
    """``lorakit.train`` replaced: a run of one step that finishes at once, its config kept."""

    def __init__(self):
        self.calls: list = []

    def __call__(self, cfg, sinks=(), store=None, stop=None):
        self.calls.append(cfg)
        sinks[0](RunStarted("fuzz", cfg, 10, 100))
        sinks[0](StepLogged("fuzz", 1, cfg.max_steps, 2.5, 1e-3, 100.0, 0.1))
        sinks[0](RunFinished("fuzz", "finished", None))


def _press(s, action: str, field: str) -> None:
    """Press ``action``'s button; what it says must name ``field`` when the field is the trouble."""
    c = s.controller
    if action == "preview":
        s.data_panel.preview_button.click()
        assert s.wait(WAIT)
        assert c.data_stats is not None or c.data_hint or c.problems
        if c.problems:
            assert _named(c, field) or "model" in c.problems, (c.problems, c.data_hint)
    elif action == "train":
        engine = _Engine()
        with mock.patch.object(lorakit, "train", engine):
            s.train_panel.click_train()
            assert s.wait(WAIT)
        if engine.calls:  # the form was valid: it trained with the value as given
            assert c.problems == {} and c.live.status == "finished"
            assert engine.calls[0] == c.config()
        else:
            assert c.status[0] == "error" and s.train_panel.status_text.startswith("Cannot train: fix")
            assert _named(c, field) and any(k in c.status[1] for k in c.problems), c.status
    elif action == "load":
        s.model_panel.load_button.click()
        assert s.wait(WAIT)


# --- the number boxes, typed into --------------------------------------------------------------------------

@budget(60)
@example(field="learning_rate", value=float("nan"), action="train")
@example(field="dropout", value=float("inf"), action="preview")
@example(field="train_examples", value=10 ** 9, action="train")
@example(field="eval_examples", value=10 ** 9, action="preview")
@example(field="seq_len", value=10 ** 40, action="train")
@example(field="batch_size", value=2 ** 63, action="train")
@example(field="max_steps", value=-(2 ** 63), action="train")
@example(field="seq_len", value=8, action="train")
@given(field=st.sampled_from(sorted(NUMBER_BOXES)), value=st.one_of(INTS, FLOATS),
       action=st.sampled_from(["none", "preview", "train"]))
def test_number_boxes(studio, field, value, action):
    s, c = studio, studio.controller
    widget = getattr(s, NUMBER_BOXES[field]).fields[field].widget
    if isinstance(value, float) and type(widget.value) is int:
        value = int(value) if math.isfinite(value) else 0  # an int box sends ints
    errors = len(c.errors)
    widget.value = value
    _settled(s, errors)
    typed = widget.value  # a float box holds an int as a float
    assert c.values[field] == typed or typed != typed  # what was typed is kept (NaN is not equal to itself)
    _others_kept(s, field)
    if c.problems:
        assert _named(c, field), c.problems
        _shown(s, field)
    _press(s, action, field)
    _settled(s, errors)
    widget.value = getattr(s.base, field)
    _back_to_base(s)


# --- the data file field: any text, files that do not exist, folders, files that are not data ----------------

@budget(30)
@example(name="latin1.jsonl", action="preview")
@example(name="broken.jsonl", action="train")
@example(name="good.jsonl", action="train")
@example(name="folder", action="preview")
@example(name="missing.jsonl", action="train")
@example(name="junk.parquet", action="none")
@example(name="columns.csv", action="preview")
@given(name=st.one_of(st.sampled_from(["good.jsonl", "latin1.jsonl", "broken.jsonl", "columns.csv", "empty.jsonl",
                                       "junk.parquet", "notes.txt", "folder", "missing.jsonl"]),
                      st.text(max_size=16).map(lambda t: "//" + t)),  # "//": as typed, not under files
       action=st.sampled_from(["none", "preview", "train"]))
def test_the_data_file_field(studio, files, name, action):
    s, c = studio, studio.controller
    text = name[2:] if name.startswith("//") else str(files / name)
    errors = len(c.errors)
    s.data_panel.path.value = text
    _settled(s, errors)
    _others_kept(s, "dataset")
    assert s.data_panel.task.value == s.base.dataset  # the task picked before is still there
    if c.problems:
        assert set(c.problems) == {"dataset"} and s.data_panel.message("dataset").startswith("dataset"), c.problems
    _press(s, action, "dataset")
    _settled(s, errors)
    s.data_panel.path.value = ""
    s.data_panel.task.value = s.base.dataset  # typing a task's name picks it in the dropdown
    _back_to_base(s)


# --- the model field: a hub id or a local directory, then Load -------------------------------------------------

MODEL_NAMES = {m.name for m in lorakit.list_models()} - {"tiny-llama"}


@budget(20)
@example(name="folder", action="load")
@example(name="missing", action="preview")
@example(name="//org/no-such-model", action="train")
@example(name="good.jsonl", action="load")
@given(name=st.one_of(st.sampled_from(["folder", "missing", "good.jsonl"]),
                      st.text(max_size=16).filter(lambda t: t.strip() not in MODEL_NAMES).map(lambda t: "//" + t)),
       action=st.sampled_from(["load", "preview", "train"]))
def test_the_model_field(studio, files, name, action):
    s, c = studio, studio.controller
    text = name[2:] if name.startswith("//") else str(files / name)
    errors = len(c.errors)
    s.model_panel.path.value = text
    _settled(s, errors)
    _others_kept(s, "model")
    assert s.model_panel.registry.value == s.base.model
    _press(s, action, "model")
    _settled(s, errors)
    if action in ("load", "preview") and text.strip() not in ("", s.base.model):  # tried, and said at the field
        assert "model" in c.problems and s.model_panel.message("model"), c.problems
    s.model_panel.path.value = ""  # back to the registry's model, loaded again
    _back_to_base(s)


# --- fields whose widgets offer only some values: set from code ------------------------------------------------

CHOICES = {"method": METHODS, "quant": QUANTS, "dtype": DTYPES, "optimizer": OPTIMIZERS, "double_quant": (True, False),
           "rank": (1, 8, 12, 2 ** 40), "target_modules": ("qv", "all-linear", ("q_proj",), ("up_proj", "nope")),
           "model": ("tiny-llama", "org/none"), "dataset": ("sort-words", "none.csv")}
FIELDS = sorted({*CHOICES, *NUMBER_BOXES})


@budget(80)
@example(field="rank", value=2 ** 40, action="train")
@example(field="target_modules", value=5, action="train")
@example(field="dataset", value={"a": 1}, action="preview")
@example(field="model", value=None, action="load")
@example(field="method", value="full", action="train")
@example(field="quant", value="NF4", action="preview")
@given(field=st.sampled_from(FIELDS),
       value=st.one_of(st.sampled_from([v for vs in CHOICES.values() for v in vs]), JUNK),
       action=st.sampled_from(["none", "preview", "train", "load"]))
def test_fields_set_from_code(studio, field, value, action):
    s, c = studio, studio.controller
    errors = len(c.errors)
    problems = s.set(**{field: value})
    _settled(s, errors)
    _others_kept(s, field)
    assert problems == {} or _named(c, field), problems
    _shown(s, field)
    _press(s, action, field)
    _settled(s, errors)
    s.set(**{field: getattr(s.base, field)})
    _back_to_base(s)


# --- the fit verdict's device: a dropdown; free text is refused by the widget, the verdict unchanged -------------

@budget(15)
@given(device=st.one_of(st.sampled_from(list(lorakit.memory.fit.accelerators())), st.text(max_size=12)))
def test_the_fit_device_dropdown(studio, device):
    from traitlets import TraitError

    s, c = studio, studio.controller
    quant, errors = s.quant_panel, len(c.errors)
    before = quant.fit_device.value
    try:
        quant.fit_device.value = device
    except TraitError:  # not one of its options: the widget keeps its choice
        assert device not in c.fit_devices() and quant.fit_device.value == before == c.fit_device
        return
    _settled(s, errors)
    assert c.fit_device == device and c.fit_result[0] is not None and c.fit_result[0].device == device
    quant.fit_device.value = before
    _back_to_base(s)


# --- the export path: any name, a folder, a folder that does not exist -----------------------------------------

@budget(20)
@example(name="", kind="csv")
@example(name="taken", kind="csv")
@example(name="/missing/report", kind="html")
@example(name="\x00", kind="csv")
@example(name="x" * 300, kind="csv")
@given(name=st.one_of(st.text(alphabet=st.characters(exclude_characters="/\\"), max_size=20),
                      st.sampled_from(["taken", "/missing/report", "."])),
       kind=st.sampled_from(["csv", "html"]))
def test_the_export_path(studio, tmp_path, monkeypatch, name, kind):
    s, compare = studio, studio.compare_panel
    monkeypatch.chdir(tmp_path)  # an empty field writes ./lorakit_report.<kind>
    (tmp_path / f"taken.{kind}").mkdir(exist_ok=True)  # "taken": the file's name is a folder's
    text = str(tmp_path) + name if name.startswith("/") else str(tmp_path / name) if name.strip() else name
    compare.records = [RunRecord(s.base, run_id="fuzz-run", status="finished")]
    errors = len(s.controller.errors)
    compare.path.value = text
    compare.export(kind)
    _settled(s, errors)
    said = compare.message_text
    refused = name == "taken" or "\x00" in name or len(name.encode()) > 240  # a missing folder is made
    if refused:  # says which path, and why
        assert said.startswith("Export to '") and " failed: " in said, said
    else:
        assert said.startswith("Wrote 1 run(s) to"), said
    compare.records = []
