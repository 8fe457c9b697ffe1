"""Fuzzed: load_adapter and merge_adapter on adapter folders with damaged or odd files (peft's config,
lorakit's record, the weights) and odd arguments. Any input loads or raises a lorakit error naming
the adapter (fuzz_support.outcome)."""
import copy
import json
import shutil

import pytest
from fuzz_support import JUNK, budget, outcome
from hypothesis import given
from hypothesis import strategies as st

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.adapters.base_record import META_FILE

NAMES = ("adapter", "path", "base_model", "peft_model")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # peft on odd configs: "fan_in_fan_out", ...
FILES = ("adapter_config.json", META_FILE, "adapter_model.safetensors")
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 2 ** 40), st.text(max_size=6)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                       max_leaves=6)


@pytest.fixture(scope="module")
def base():
    return lorakit.load_model("tiny-llama", device="cpu").model


@pytest.fixture(scope="module")
def good(base, tmp_path_factory):
    """A real adapter on tiny-llama, copied and damaged by each example."""
    path = tmp_path_factory.mktemp("adapters") / "good"
    pm = adapters.attach_lora(copy.deepcopy(base), rank=2, alpha=4, dropout=0.0, target_modules="qv")
    adapters.save_adapter(pm, path, run_id="r1", base="tiny-llama")
    return path


def _damage(path, file: str, how: str, key, value, cut: int) -> None:
    target = path / file
    if how == "delete":
        target.unlink()
    elif how == "truncate":
        target.write_bytes(target.read_bytes()[:cut])
    elif how == "replace":
        target.write_text(json.dumps(value))
    elif file.endswith(".json"):  # one field set to an odd value
        d = json.loads(target.read_text())
        if key in d and isinstance(d[key], dict) and value is not None:
            d[key] = {k: value for k in d[key]} if how == "inner" else value
        else:
            d[key] = value
        target.write_text(json.dumps(d))


@budget(60)
@given(file=st.sampled_from(FILES), how=st.sampled_from(["delete", "truncate", "replace", "field", "inner", "none"]),
       key=st.sampled_from(["r", "lora_alpha", "target_modules", "peft_type", "base", "layers", "format",
                            "base_model_name_or_path", "task_type", "fan_in_fan_out"]),
       value=JSONISH, cut=st.integers(0, 300))
def test_load_a_damaged_adapter(base, good, tmp_path_factory, file, how, key, value, cut):
    path = tmp_path_factory.mktemp("damaged") / "adapter"
    shutil.copytree(good, path)
    _damage(path, file, how, key, value, cut)
    result = outcome(adapters.load_adapter, copy.deepcopy(base), path, names=NAMES)
    if not isinstance(result, Exception):
        outcome(adapters.merge_adapter, result, names=NAMES)


@budget(30)
@given(model=st.one_of(JUNK, st.just("base")), path=st.one_of(JUNK, st.just("good")),
       adapter_name=st.one_of(st.just("default"), JUNK), is_trainable=st.one_of(st.booleans(), JUNK))
def test_load_adapter_arguments(base, good, model, path, adapter_name, is_trainable):
    model = copy.deepcopy(base) if model == "base" else model
    path = good if path == "good" else path
    outcome(adapters.load_adapter, model, path, adapter_name=adapter_name, is_trainable=is_trainable,
            names=(*NAMES, "adapter_name", "is_trainable"))


@budget(10)
@given(junk=JUNK)
def test_merge_adapter_needs_a_peft_model(junk):
    outcome(adapters.merge_adapter, junk, names=NAMES)
