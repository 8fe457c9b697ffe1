import pytest

import lorakit
from lorakit.config.run_config import ConfigError, RunConfig, field_docs


def test_defaults_are_valid_and_targets_normalised():
    cfg = RunConfig(target_modules=["q_proj", "v_proj"])
    assert cfg.target_modules == ("q_proj", "v_proj")
    assert cfg.label == "lora-r8"
    assert RunConfig(quant="nf4").label == "qlora-nf4-r8"


def test_every_problem_is_reported_at_once_and_names_its_field():
    with pytest.raises(ConfigError) as err:
        RunConfig(rank=0, alpha=0, dropout=1.0, quant="int4", method="adapter", batch_size=0, seq_len=0,
                  target_modules=["foo"], max_steps=0, learning_rate=0)
    problems = err.value.problems
    assert set(problems) == {"rank", "alpha", "dropout", "quant", "method", "batch_size", "seq_len",
                             "target_modules", "max_steps", "learning_rate"}
    assert "rank must be an integer >= 1, got 0" in problems["rank"]
    assert "'none', 'int8', 'nf4', 'fp4'" in problems["quant"]
    assert "'foo'" in problems["target_modules"] and "q_proj" in problems["target_modules"]
    assert "[0, 1)" in problems["dropout"]
    # the message lists them all, one per line
    assert str(err.value).count("\n  - ") == len(problems)


def test_full_finetuning_refused_on_a_quantized_base():
    with pytest.raises(ConfigError) as err:
        RunConfig(method="full", quant="nf4")
    assert set(err.value.problems) == {"method"}
    assert "quant='none'" in err.value.problems["method"]


@pytest.mark.parametrize("preset", ["qv", "attention", "mlp", "all-linear"])
def test_presets_are_accepted(preset):
    assert RunConfig(target_modules=preset).target_modules == preset


def test_unknown_targets_on_a_hub_model_are_checked_after_loading_not_before():
    # a non-built-in model's layer names are unknown until it is loaded
    assert RunConfig(model="some/model", target_modules=["c_attn"]).target_modules == ("c_attn",)


def test_round_trip_through_dict():
    cfg = RunConfig(rank=16, quant="fp4", target_modules="mlp", name="x")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_every_field_has_a_docstring():
    import dataclasses

    docs = field_docs()
    assert {f.name for f in dataclasses.fields(RunConfig)} == set(docs)
    assert docs["rank"].startswith("LoRA rank r")


def test_frozen():
    with pytest.raises(dataclasses_error()):
        RunConfig().rank = 4


def dataclasses_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_public_surface():
    for name in ("RunConfig", "train", "compare", "plan_memory", "list_models", "MemoryBreakdown", "sweep"):
        assert hasattr(lorakit, name)


def test_boolean_fields_must_be_real_bools_and_are_reported_with_the_rest():
    with pytest.raises(ConfigError) as err:
        RunConfig(double_quant="no", gradient_checkpointing=1, bf16_autocast="False", rank=0)
    problems = err.value.problems
    assert set(problems) == {"double_quant", "gradient_checkpointing", "bf16_autocast", "rank"}
    assert problems["double_quant"] == "double_quant must be True or False, got 'no'"
    assert RunConfig(double_quant=False, gradient_checkpointing=True).double_quant is False


def test_an_invalid_config_imports_no_heavy_library():
    """Validation happens before anything is loaded: building (and refusing) a config in a fresh
    process must not pull in torch, transformers, peft or bitsandbytes."""
    import subprocess
    import sys

    code = (
        "import sys, lorakit\n"
        "try:\n    lorakit.RunConfig(rank=0, quant='int4', double_quant='no', target_modules=['foo'])\n"
        "except lorakit.ConfigError as e:\n"
        "    assert set(e.problems) == {'rank', 'quant', 'double_quant', 'target_modules'}, e\n"
        "else:\n    raise SystemExit('no ConfigError')\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
