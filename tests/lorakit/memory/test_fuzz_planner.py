"""Fuzzed: plan_memory's model (names, config.json files with odd content, configs) and its settings.
Any input gives a MemoryBreakdown or a lorakit error naming the argument (fuzz_support.outcome)."""
import json

import pytest
from fuzz_support import JUNK, budget, outcome
from hypothesis import given
from hypothesis import strategies as st

import lorakit
from lorakit.memory.breakdown import MemoryBreakdown

SETTINGS = {
    "method": st.sampled_from(["lora", "full", "qlora"]), "quant": st.sampled_from(["none", "nf4", "int8", "fp8"]),
    "double_quant": st.booleans(), "dtype": st.sampled_from([None, "float32", "bfloat16", "float64"]),
    "rank": st.integers(-1, 64), "target_modules": st.sampled_from(["qv", "all-linear", ["q_proj"], ["wq"], []]),
    "batch_size": st.integers(-1, 8), "seq_len": st.integers(-1, 4096), "gradient_checkpointing": st.booleans(),
    "optimizer": st.sampled_from(["adamw", "adamw_8bit", "sgd"]), "dropout": st.floats(-0.5, 1.5),
    "device": st.sampled_from([None, "cpu", "cuda", "tpu", "cuda:0"]), "padded": st.booleans(),
    "device_overhead": st.one_of(st.none(), st.integers(-10, 10 ** 9)),
}
KWARGS = st.fixed_dictionaries({}, optional={k: st.one_of(v, v, v, JUNK) for k, v in SETTINGS.items()})

# config.json fields a user's file might get wrong
DIMS = st.one_of(st.integers(-4, 96), JUNK)
CONFIG_JSON = st.fixed_dictionaries(
    {"model_type": st.sampled_from(["llama", "llama", "mistral", "gpt2", "bert", "not-a-model", ""])},
    optional={"hidden_size": DIMS, "intermediate_size": DIMS, "num_hidden_layers": DIMS,
              "num_attention_heads": DIMS, "num_key_value_heads": DIMS, "vocab_size": DIMS,
              "architectures": st.one_of(st.just(["LlamaForCausalLM"]), JUNK), "torch_dtype": JUNK})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("plan")


@budget(60)
@given(model=st.one_of(st.sampled_from(["tiny-llama", "llama-7b", "mistral-7b", "llama-8b", "", "org/model"]), JUNK),
       kwargs=KWARGS)
def test_plan_memory_by_name(model, kwargs):
    result = outcome(lorakit.plan_memory, model, names=("model", *kwargs), **kwargs)
    assert isinstance(result, (MemoryBreakdown, Exception))


@budget(60)
@given(config=st.one_of(CONFIG_JSON, JUNK), kwargs=KWARGS)
def test_plan_memory_from_a_config_file(folder, config, kwargs):
    path = folder / "config.json"
    try:
        path.write_text(json.dumps(config))
    except (TypeError, ValueError):  # an object() or bytes in the junk: not JSON, write it as text
        path.write_text(repr(config))
    outcome(lorakit.plan_memory, str(path), names=("model", *kwargs), **kwargs)
    outcome(lorakit.plan_memory, str(folder), names=("model", *kwargs), **kwargs)  # the directory holding it
