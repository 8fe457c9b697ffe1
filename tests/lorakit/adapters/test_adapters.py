import hashlib

import pytest
import torch

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.config.run_config import ConfigError


def tiny(quant="none"):
    return lorakit.load_model("tiny-llama", quant=quant, device="cpu")


def batch(lm, text="The quick brown fox jumps over the lazy dog."):
    enc = lm.tokenizer([text, text[::-1]], return_tensors="pt", padding=True)
    enc["labels"] = enc["input_ids"].clone()
    return enc


def checksum(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if "lora_" not in name:
            h.update(name.replace(".base_layer", "").encode())  # peft wraps targeted layers
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train_steps(model, enc, steps=3, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**enc).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_linear_modules_are_discovered_with_shapes_and_counts():
    groups = {g.name: g for g in adapters.linear_modules(tiny().model)}
    assert list(groups) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (groups["q_proj"].count, groups["q_proj"].d_in, groups["q_proj"].d_out) == (2, 64, 64)
    assert (groups["k_proj"].d_out, groups["down_proj"].d_in) == (32, 128)  # 2 kv heads of 16
    assert groups["gate_proj"].params == 2 * 64 * 128


@pytest.mark.parametrize("quant", ["none", "nf4", "int8"])
def test_trainable_count_is_exactly_r_times_din_plus_dout(quant):
    lm = tiny(quant)
    targets = adapters.resolve_targets(lm.model, "all-linear")
    expected = adapters.expected_lora_params(lm.model, targets, 4)
    # by hand: per layer q 64+64, k 64+32, v 64+32, o 64+64, gate/up 64+128, down 128+64; x2 layers x r=4
    assert expected == 2 * 4 * (128 + 96 + 96 + 128 + 192 + 192 + 192)
    pm = adapters.attach_lora(lm.model, rank=4, alpha=8, dropout=0.0, target_modules="all-linear")
    assert adapters.count_params(pm)[0] == expected
    assert all("lora_" in n for n, p in pm.named_parameters() if p.requires_grad)


def test_presets_expand_and_unknown_names_are_refused_with_the_valid_list():
    m = tiny().model
    assert adapters.resolve_targets(m, "qv") == ["q_proj", "v_proj"]
    assert adapters.resolve_targets(m, "mlp") == ["gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ConfigError) as err:
        adapters.resolve_targets(m, ["q_proj", "query"])
    msg = err.value.problems["target_modules"]
    assert "'query'" in msg and "gate_proj" in msg and "all-linear" in msg


def test_fresh_adapter_changes_nothing_and_disabling_gives_the_base_exactly():
    lm = tiny()
    enc = batch(lm)
    with torch.no_grad():
        base = lm.model(**enc).logits.clone()
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="qv")
    pm.eval()
    with torch.no_grad():
        assert torch.equal(pm(**enc).logits, base)  # B = 0 at init, so BA = 0
    train_steps(pm, enc)
    with torch.no_grad():
        assert not torch.allclose(pm(**enc).logits, base)  # the adapter learned something
        with pm.disable_adapter():
            assert torch.equal(pm(**enc).logits, base)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp4"])
def test_base_weights_are_bit_for_bit_unchanged_by_training(quant):
    lm = tiny(quant)
    before = checksum(lm.model)
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="all-linear")
    train_steps(pm, batch(lm))
    assert checksum(pm.get_base_model()) == before


def test_full_finetuning_changes_the_weights():
    lm = tiny()
    before = checksum(lm.model)
    m = adapters.prepare_full(lm.model)
    assert adapters.count_params(m)[0] == 172_352
    train_steps(m, batch(lm))
    assert checksum(m) != before


def test_save_load_swap_and_disable(tmp_path):
    lm = tiny()
    enc = batch(lm)
    results = {}
    for name, text in (("a", "aaaa bbbb"), ("b", "zzzz yyyy")):
        fresh = tiny()
        pm = adapters.attach_lora(fresh.model, rank=4, alpha=8, dropout=0.0, target_modules="qv")
        train_steps(pm, batch(fresh, text))
        nbytes = adapters.save_adapter(pm, tmp_path / name)
        assert nbytes < 200_000 and (tmp_path / name / "adapter_model.safetensors").exists()
        with torch.no_grad():
            results[name] = pm(**enc).logits
    base = tiny().model
    pm = adapters.load_adapter(base, tmp_path / "a", adapter_name="a")
    adapters.load_adapter(pm, tmp_path / "b", adapter_name="b")
    pm.eval()
    with torch.no_grad():
        pm.set_adapter("a")
        assert torch.allclose(pm(**enc).logits, results["a"], atol=1e-6)
        pm.set_adapter("b")
        assert torch.allclose(pm(**enc).logits, results["b"], atol=1e-6)
        with pm.disable_adapter():
            assert torch.equal(pm(**enc).logits, lm.model(**enc).logits)


@pytest.mark.parametrize("quant,tol", [("none", 1e-4), ("nf4", 1e-3)])
def test_merge_matches_the_adapter_model(quant, tol, tmp_path):
    """Merged logits equal the adapter model's within tol (nf4: the base is dequantized exactly)."""
    lm = tiny(quant)
    enc = batch(lm)
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="all-linear")
    train_steps(pm, enc)
    with torch.no_grad():
        want = pm(**enc).logits.float()
    merged = adapters.merge_adapter(pm, tmp_path / "merged", tokenizer=lm.tokenizer)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    reloaded = lorakit.load_model(str(tmp_path / "merged"), device="cpu").model.float().eval()
    with torch.no_grad():
        got = reloaded(**enc).logits.float()
    assert (got - want).abs().max().item() < tol


def test_a_bf16_qlora_model_merges_into_one_bf16_model_that_runs(tmp_path):
    """A 4-bit base computing in bf16: peft kept its embeddings and norms in fp32 for training, the merged layers
    are bf16; the merged model is bf16 throughout (it once fed fp32 activations to bf16 layers and failed)."""
    lm = lorakit.load_model("tiny-llama", quant="nf4", dtype="bfloat16", device="cpu")
    enc = batch(lm)
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="all-linear")
    train_steps(pm, enc)
    pm.eval()
    with torch.no_grad():
        want = pm(**enc).logits.float()
        merged = adapters.merge_adapter(pm, tmp_path / "merged", tokenizer=lm.tokenizer).eval()
        got = merged(**enc).logits.float()
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    assert (got - want).abs().max() < 0.02 * want.abs().max()  # bf16 norms now: bf16 noise, no more
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype="auto").eval()  # plain transformers
    assert reloaded.dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(reloaded(**enc).logits.float(), got)


@pytest.mark.e2e
def test_smollm2_r8_on_q_v_has_460800_trainable_parameters():
    lm = lorakit.load_model("smollm2-135m", device="cpu")
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, target_modules="qv")
    trainable, total = adapters.count_params(pm)
    assert trainable == 460_800 == 30 * 8 * ((576 + 576) + (576 + 192))
    assert total == 134_515_008 + 460_800


@pytest.mark.parametrize("quant,method", [("none", "lora"), ("nf4", "lora"), ("none", "full")])
def test_gradient_checkpointing_trains_without_deprecation_or_reentrant_warnings(quant, method):
    import warnings

    lm = tiny(quant)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = (adapters.attach_lora(lm.model, rank=4, target_modules="qv", gradient_checkpointing=True)
                 if method == "lora" else adapters.prepare_full(lm.model, gradient_checkpointing=True))
        model.train()
        model(**batch(lm)).loss.backward()
    noise = [str(w.message) for w in seen if "checkpoint" in str(w.message)]
    assert noise == []
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    assert layers and all(m.gradient_checkpointing for m in layers)  # it is really on
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)  # gradients flow through the checkpoints
