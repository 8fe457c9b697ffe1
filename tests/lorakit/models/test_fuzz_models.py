"""Fuzzed: load_model's name (built-in, hub-like, local folders with odd contents), quant, dtype and
device. Any input loads or raises a lorakit error naming the argument (fuzz_support.outcome)."""
import json

import pytest
from fuzz_support import JUNK, budget, outcome
from hypothesis import given
from hypothesis import strategies as st

import lorakit

QUANT = st.sampled_from(["none", "nf4", "fp4", "int8", "fp8", "NF4"])
DTYPE = st.sampled_from(["float32", "bfloat16", "float16", "float64", "fp32"])
DEVICE = st.sampled_from([None, "cpu", "cuda", "cuda:3", "mps", "tpu", "cpu:0", ""])
NAMES = ("name", "model", "quant", "dtype", "device", "double_quant")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@budget(40)
@given(name=st.one_of(st.sampled_from(["tiny-llama", "llama-7b", "nope", "org/model", "", "./missing"]), JUNK),
       quant=st.one_of(QUANT, JUNK), dtype=st.one_of(DTYPE, JUNK), device=st.one_of(DEVICE, JUNK),
       double_quant=st.one_of(st.booleans(), JUNK))
def test_load_model_arguments(name, quant, dtype, device, double_quant):
    outcome(lorakit.load_model, name, quant=quant, dtype=dtype, device=device, double_quant=double_quant,
            names=NAMES)


@budget(20)
@given(files=st.dictionaries(st.sampled_from(["config.json", "tokenizer.json", "model.safetensors",
                                              "tokenizer_config.json"]),
                             st.one_of(st.binary(max_size=40), st.just(b'{"model_type": "llama"}'),
                                       st.just(b'{"model_type": "llama", "hidden_size": 0}'), st.just(b"{}")),
                             max_size=4))
def test_a_local_folder_with_odd_files(folder, files):
    where = folder / "model"
    where.mkdir(exist_ok=True)
    for f in where.iterdir():
        f.unlink()
    for name, data in files.items():
        (where / name).write_bytes(data)
    outcome(lorakit.load_model, str(where), device="cpu", names=(*NAMES, str(where)))


def test_config_json_that_is_not_an_object_is_named(folder):
    where = folder / "listed"
    where.mkdir()
    (where / "config.json").write_text(json.dumps([1, 2]))
    outcome(lorakit.load_model, str(where), device="cpu", names=(str(where),))
