"""Target modules: presets, resolution against a model's linear layers, the pre-load check, CLI words."""
import pytest

from lorakit.config import targets
from lorakit.config.run_config import ConfigError, RunConfig

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
        targets.resolve("mlp", ["q_proj", "v_proj", "fc1"])
    assert "'gate_proj', 'up_proj', 'down_proj'" in err.value.problems["target_modules"]
    with pytest.raises(ConfigError) as err:  # a model without linear layers: nothing for LoRA to target
        targets.resolve("all-linear", [])
    assert "no linear layers (nn.Linear or transformers' Conv1D)" in err.value.problems["target_modules"]


def test_the_check_before_loading_knows_the_builtin_names():
    assert targets.problem("all-linear", "tiny-llama") == ""
    assert targets.problem(("q_proj", "v_proj"), "smollm2-135m") == ""
    assert "'wq'" in targets.problem(("q_proj", "wq"), "llama-7b")  # a config-only LLaMA: names known
    assert targets.problem(("c_attn",), "someone/gpt2-like") == ""  # a hub model: checked once loaded
    assert targets.problem(("c_attn", "mlp.c_proj"), "tiny-gpt2") == ""
    assert "'q_proj'" in targets.problem(("q_proj",), "gpt2-xl") and "c_attn, attn.c_proj" in targets.problem(
        ("q_proj",), "gpt2-xl")
    assert targets.problem(("query", "value", "pooler.dense"), "bert-base") == ""
    assert "'pooler.dense'" in targets.problem(("pooler.dense",), "roberta-base")  # RoBERTa's classifier: no pooler
    assert targets.problem(("wi_0", "wo"), "flan-t5-xl") == "" and "'wi_0'" in targets.problem(("wi_0",), "t5-small")
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


GPT2 = ("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj")
BERT = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "layer.output.dense", "pooler.dense")
T5 = ("q", "k", "v", "o", "wi", "wo")
T5_GATED = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")


@pytest.mark.parametrize("available, qv, attention, mlp", [
    (TINY, ["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]),
    (GPT2, ["c_attn"], ["c_attn", "attn.c_proj"], ["c_fc", "mlp.c_proj"]),  # q, k, v fused in c_attn
    (BERT, ["query", "value"], ["query", "key", "value", "attention.output.dense"],
     ["intermediate.dense", "layer.output.dense"]),
    (T5, ["q", "v"], ["q", "k", "v", "o"], ["wi", "wo"]),
    (T5_GATED, ["q", "v"], ["q", "k", "v", "o"], ["wi_0", "wi_1", "wo"]),  # T5 v1.1 / FLAN-T5
])
def test_presets_mean_the_same_layers_in_every_family(available, qv, attention, mlp):
    assert targets.resolve("qv", available) == qv
    assert targets.resolve("attention", available) == attention
    assert targets.resolve("mlp", available) == mlp
    assert targets.resolve("all-linear", available) == list(available)
    assert targets.describe("qv", available) == ", ".join(qv)


@pytest.mark.parametrize("model, names", [
    ("tiny-llama", targets.LLAMA_LINEARS), ("tiny-gpt2", GPT2), ("gpt2-large", GPT2), ("bert-large", BERT),
    ("roberta-base", BERT[:-1]), ("t5-base", T5), ("flan-t5-xxl", T5_GATED),
])
def test_known_layers_are_what_the_built_model_has(model, names):
    """known_layers (no torch) agrees with adapters.linear_modules on the model built on the meta device
    with its family's default head (a sequence classifier for encoders, no download)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    from lorakit.adapters import lora as adapters
    from lorakit.models import loading as models

    auto = {"decoder": AutoModelForCausalLM, "encoder": AutoModelForSequenceClassification,
            "encoder-decoder": AutoModelForSeq2SeqLM}[models.REGISTRY[model].family]
    cfg = models.builtin_config(model)
    if models.REGISTRY[model].params > 10**9:  # the names do not depend on the depth: build two layers
        for key in ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers"):
            if hasattr(cfg, key):
                setattr(cfg, key, 2)
    with init_empty_weights():
        built = auto.from_config(cfg)
    assert tuple(g.name for g in adapters.linear_modules(built)) == targets.known_layers(model) == names
