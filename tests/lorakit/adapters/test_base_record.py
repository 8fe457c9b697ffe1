"""Adapters know their base: the record saved next to peft's config, and the refusal of another base
(by name, before any tensor is touched) while a compatible base under another name loads."""
import json

import pytest
import torch

import lorakit
from lorakit.adapters import base_record as adapter_base
from lorakit.adapters import lora as adapters
from lorakit.adapters.base_record import META_FILE, AdapterError, AdapterMismatch


def tiny():
    return lorakit.load_model("tiny-llama", device="cpu")


def other_llama(name="wide-llama", arch="llama", **dims):
    """A random LLaMA-family model like tiny-llama (2 layers, 4 heads, 2 kv heads) but for ``dims``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=1536, tie_word_embeddings=True)
    cfg = AutoConfig.for_model(arch, **{**kw, **dims})
    cfg.architectures = [type(AutoModelForCausalLM.from_config(cfg)).__name__]
    model = AutoModelForCausalLM.from_config(cfg)
    model.config.name_or_path = name
    return model


def saved(tmp_path, model=None, name="a", run_id="run-1", base=None) -> str:
    """A rank-4 q/v adapter on ``model`` (tiny-llama by default) saved under tmp_path/name."""
    model = model if model is not None else tiny().model
    pm = adapters.attach_lora(model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
    adapters.save_adapter(pm, tmp_path / name, run_id=run_id, base=base)
    return str(tmp_path / name)


@pytest.fixture
def no_tensors_touched(monkeypatch):
    """peft's loaders fail the test if called: a refusal must come before them."""
    from peft import PeftModel

    def touched(*a, **k):
        raise AssertionError("peft was asked to load the adapter's tensors")

    monkeypatch.setattr(PeftModel, "from_pretrained", touched)
    monkeypatch.setattr(PeftModel, "load_adapter", touched)


def test_the_record_names_the_base_its_layer_shapes_the_version_and_the_run(tmp_path):
    path = saved(tmp_path)
    record = json.loads((tmp_path / "a" / META_FILE).read_text())
    assert (tmp_path / "a" / "adapter_config.json").exists()
    assert record["base"]["name"] == "tiny-llama" and record["base"]["architecture"] == "LlamaForCausalLM"
    assert record["base"]["quant"] == "none" and record["base"]["dtype"] == "float32"
    assert record["run_id"] == "run-1" and record["lorakit_version"] == lorakit.__version__
    assert record["rank"] == 4 and record["alpha"] == 8
    # q_proj: 64 -> 4 heads x 16; v_proj: 64 -> 2 kv heads x 16, in both layers
    assert record["layers"] == {f"model.layers.{i}.self_attn.{m}": [64, d_out] for i in range(2)
                                for m, d_out in (("q_proj", 64), ("v_proj", 32))}
    assert adapter_base.check_base(path, tiny().model)["run_id"] == "run-1"
    assert not list(tmp_path.glob("*.partial"))


def test_another_base_is_refused_by_name_before_any_tensor(tmp_path, no_tensors_touched):
    path = saved(tmp_path)
    wide = other_llama(hidden_size=96)
    with pytest.raises(AdapterMismatch) as err:
        adapters.load_adapter(wide, path)
    msg = str(err.value)
    assert msg.startswith(f"adapter: {path!r} was trained on tiny-llama (LlamaForCausalLM, quant none); "
                          "the base given is wide-llama (LlamaForCausalLM, quant none): ")
    assert "layer model.layers.0.self_attn.q_proj is 64 -> 64 in the adapter's base but 96 -> 96 here" in msg
    assert not any("lora_" in n for n, _ in wide.named_modules())  # the base was left as it was


def test_fewer_layers_and_another_architecture_are_named(tmp_path, no_tensors_touched):
    path = saved(tmp_path)
    with pytest.raises(AdapterMismatch, match=r"layer model\.layers\.1\.self_attn\.q_proj, which the adapter "
                                              r"adapts, is not a linear layer of this base"):
        adapters.load_adapter(other_llama("short-llama", num_hidden_layers=1), path)
    with pytest.raises(AdapterMismatch, match=r"the architectures differ \(LlamaForCausalLM vs MistralForCausalLM\)"):
        adapters.load_adapter(other_llama("mistral-like", arch="mistral", head_dim=16), path)


def test_swapping_in_an_adapter_of_another_base_is_refused_and_the_model_kept(tmp_path):
    a = saved(tmp_path, name="a")
    wide = saved(tmp_path, model=other_llama(hidden_size=96), name="wide")
    pm = adapters.load_adapter(tiny().model, a, adapter_name="a")
    with pytest.raises(AdapterMismatch, match="trained on wide-llama .* the base given is tiny-llama"):
        adapters.load_adapter(pm, wide, adapter_name="wide")
    assert list(pm.peft_config) == ["a"]


def test_a_compatible_base_under_another_name_loads(tmp_path):
    lm = tiny()
    pm = adapters.attach_lora(lm.model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
    with torch.no_grad():  # a non-zero B, so that the adapter changes the output
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    adapters.save_adapter(pm, tmp_path / "a")
    enc = lm.tokenizer(["hello there"], return_tensors="pt")
    with torch.no_grad():
        want = pm(**enc).logits
    copy = tmp_path / "my-converted-llama"
    tiny().model.save_pretrained(copy)  # the same base weights, under another name
    lm.tokenizer.save_pretrained(copy)
    other = lorakit.load_model(str(copy), device="cpu").model
    assert adapter_base.base_name(other) == str(copy)
    loaded = adapters.load_adapter(other, tmp_path / "a").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**enc).logits, want, atol=1e-5)


def test_an_adapter_without_a_record_is_checked_by_its_weights_shapes(tmp_path, no_tensors_touched):
    pm = adapters.attach_lora(tiny().model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
    pm.save_pretrained(tmp_path / "plain")  # peft alone: no lorakit record
    assert not (tmp_path / "plain" / META_FILE).exists()
    with pytest.raises(AdapterMismatch, match=r"q_proj is 64 -> 64 in the adapter's base but 96 -> 96 here"):
        adapters.load_adapter(other_llama(hidden_size=96), tmp_path / "plain")


def test_unusable_adapter_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(AdapterError, match="does not exist"):
        adapter_base.read_record(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="has no adapter_config.json"):
        adapter_base.read_record(tmp_path / "empty")
    path = saved(tmp_path)
    record = json.loads((tmp_path / "a" / META_FILE).read_text())
    (tmp_path / "a" / META_FILE).write_text(json.dumps(dict(record, format=99)))
    with pytest.raises(AdapterError, match="saved by a newer lorakit"):
        adapters.load_adapter(tiny().model, path)


def test_a_full_disk_leaves_no_half_written_adapter(tmp_path, disk_full_on_adapter_save):
    pm = adapters.attach_lora(tiny().model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
    with pytest.raises(AdapterError) as err:
        adapters.save_adapter(pm, tmp_path / "a")
    assert str(err.value) == (f"adapter: not saved to {str(tmp_path / 'a')!r}: No space left on device "
                              "(nothing was left half-written)")
    assert list(tmp_path.iterdir()) == []

