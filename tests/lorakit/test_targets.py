"""Target modules: presets, resolution against a model's linear layers, the pre-load check, CLI words."""
import pytest

from lorakit import targets
from lorakit.config import ConfigError, RunConfig

TINY = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # a LLaMA's linears


def test_presets_expand_against_the_model_and_names_are_kept():
    assert targets.resolve("qv", TINY) == ["q_proj", "v_proj"]
    assert targets.resolve("attention", TINY) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert targets.resolve("mlp", TINY) == ["gate_proj", "up_proj", "down_proj"]
    assert targets.resolve("all-linear", ["c_fc", "c_proj"]) == ["c_fc", "c_proj"]  # whatever the model has
    assert targets.resolve(("o_proj", "q_proj"), TINY) == ["o_proj", "q_proj"]
    assert targets.resolve("down_proj", TINY) == ["down_proj"]  # one name, not a preset


def test_resolve_refuses_with_the_models_layers_and_the_presets_naming_target_modules():
    with pytest.raises(ConfigError) as err:
        targets.resolve(["q_proj", "query"], TINY)
    assert set(err.value.problems) == {"target_modules"}
    msg = err.value.problems["target_modules"]
    assert "'query'" in msg and "'q_proj'" not in msg
    assert "its linear layers are q_proj, k_proj" in msg and "presets: qv, attention, mlp, all-linear" in msg
    with pytest.raises(ConfigError, match=r"\(none given\)"):
        targets.resolve((), TINY)
    with pytest.raises(ConfigError) as err:  # a preset the model lacks is refused too
        targets.resolve("qv", ["c_attn", "c_proj"])
    assert "'q_proj', 'v_proj'" in err.value.problems["target_modules"]
    with pytest.raises(ConfigError) as err:  # GPT-2's Conv1D: nothing for LoRA to target
        targets.resolve("all-linear", [])
    assert "no nn.Linear layers" in err.value.problems["target_modules"]


def test_the_check_before_loading_knows_the_builtin_llama_names_only():
    assert targets.problem("all-linear", "tiny-llama") == ""
    assert targets.problem(("q_proj", "v_proj"), "smollm2-135m") == ""
    assert "'wq'" in targets.problem(("q_proj", "wq"), "llama-7b")  # a config-only LLaMA: names known
    assert targets.problem(("c_attn",), "someone/gpt2-like") == ""  # a hub model: checked once loaded
    assert targets.problem(("wq",), "tiny-llama", method="full") == ""  # full fine-tuning adapts nothing
    assert targets.problem((), "tiny-llama").startswith("target_modules must name at least one")
    assert targets.problem(5, "tiny-llama") == "target_modules must be a preset or a list of layer names, got 5"
    # RunConfig reports it with its other problems
    with pytest.raises(ConfigError) as err:
        RunConfig(model="tiny-llama", target_modules=["wq"], rank=0)
    assert set(err.value.problems) == {"target_modules", "rank"}


def test_expand_never_refuses_and_describe_says_what_a_preset_selects():
    assert targets.expand("qv", ["q_proj"]) == ["q_proj", "v_proj"]  # resolve is the checking one
    assert targets.expand("all-linear", TINY) == list(TINY)
    assert targets.describe("qv") == "q_proj, v_proj"
    assert targets.describe("all-linear") == "every linear layer except the output head"


@pytest.mark.parametrize("words, value", [
    (["qv"], "qv"), (["all-linear"], "all-linear"), (["q_proj"], ("q_proj",)),
    (["q_proj", "v_proj"], ("q_proj", "v_proj")), (["fc1"], ("fc1",)), (["qv", "mlp"], ("qv", "mlp")),
])
def test_command_line_words(words, value):
    assert targets.from_cli(words) == value
