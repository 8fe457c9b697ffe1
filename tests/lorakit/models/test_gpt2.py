"""GPT-2 end to end on tiny-gpt2: Conv1D layers found with their shapes, LoRA attached with peft's
fan_in_fan_out, exact trainable counts, the frozen base untouched, adapter off = base, merge = adapter,
save / load, every quant mode, and a built-in task trained with the defaults."""
import math
import warnings

import pytest
import torch

import lorakit
from lorakit.adapters import base_record as adapter_base
from lorakit.adapters import lora as adapters

SHAPES = {"c_attn": (64, 192), "attn.c_proj": (64, 64), "c_fc": (64, 256), "mlp.c_proj": (256, 64)}  # (d_in, d_out)


def tiny(quant="none"):
    return lorakit.load_model("tiny-gpt2", quant=quant, device="cpu")


def batch(lm, text="The quick brown fox jumps over the lazy dog."):
    enc = lm.tokenizer([text, text[::-1]], return_tensors="pt", padding=True)
    enc["labels"] = enc["input_ids"].clone()
    return enc


def train_steps(model, enc, steps=2, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**enc).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return loss.item()


def base_state(model) -> dict:
    return {n.replace(".base_layer", ""): t.detach().clone() for n, t in model.state_dict().items() if "lora_" not in n}


def test_tiny_gpt2_is_a_conv1d_gpt2_with_the_chat_tokenizer():
    lm = tiny()
    assert type(lm.model).__name__ == "GPT2LMHeadModel" and lm.num_params == 231_168
    assert len(lm.tokenizer) == lm.model.config.vocab_size == 1536
    text = lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                            add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    groups = adapters.linear_modules(lm.model)
    assert {g.name: (g.d_in, g.d_out) for g in groups} == SHAPES  # Conv1D weight is (d_in, d_out)
    assert all(g.conv1d and g.count == 2 for g in groups)
    assert type(lm.model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"


@pytest.mark.parametrize("preset, names", [
    ("qv", ["c_attn"]), ("attention", ["c_attn", "attn.c_proj"]), ("mlp", ["c_fc", "mlp.c_proj"]),
    ("all-linear", list(SHAPES)), (("mlp.c_proj",), ["mlp.c_proj"]),
])
def test_trainable_count_is_exactly_r_times_din_plus_dout(preset, names):
    lm = tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # peft warns when fan_in_fan_out is wrong for Conv1D
        pm = adapters.attach_lora(lm.model, rank=8, target_modules=preset)
    trainable, _ = adapters.count_params(pm)
    assert trainable == sum(2 * 8 * sum(SHAPES[n]) for n in names)
    assert pm.peft_config["default"].fan_in_fan_out is True
    adapted = {n.split("transformer.h.")[1][2:] for n, m in pm.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"attn." + n if n in ("c_attn",) else n if "." in n else "mlp." + n for n in names}


def test_base_is_unchanged_disabling_gives_the_base_and_merge_gives_the_adapter(tmp_path):
    lm = tiny()
    enc = batch(lm)
    with torch.no_grad():
        base_logits = lm.model(**enc).logits
    pm = adapters.attach_lora(lm.model, rank=8, alpha=16, dropout=0.0, target_modules="all-linear")
    before = base_state(pm.get_base_model())
    train_steps(pm, enc, steps=3)
    after = base_state(pm.get_base_model())
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        adapted = pm(**enc).logits
        assert (adapted - base_logits).abs().max() > 1e-3  # the adapter learned something
        with pm.disable_adapter():
            assert torch.equal(pm(**enc).logits, base_logits)
    merged = adapters.merge_adapter(pm, tmp_path / "merged", tokenizer=lm.tokenizer)
    assert type(merged.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    reloaded = lorakit.load_model(str(tmp_path / "merged"), device="cpu").model.eval()
    with torch.no_grad():
        assert (reloaded(**enc).logits - adapted).abs().max().item() < 1e-4


def test_save_and_load_record_conv1d_shapes(tmp_path):
    lm = tiny()
    enc = batch(lm)
    pm = adapters.attach_lora(lm.model, rank=4, dropout=0.0, target_modules="attention")
    train_steps(pm, enc)
    with torch.no_grad():
        want = pm(**enc).logits
    adapters.save_adapter(pm, tmp_path / "a", base="tiny-gpt2")
    record = adapter_base.read_record(tmp_path / "a")
    layers = {k.split(".h.")[1]: tuple(v) for k, v in record["layers"].items()}
    assert layers == {"0.attn.c_attn": (64, 192), "1.attn.c_attn": (64, 192), "0.attn.c_proj": (64, 64),
                      "1.attn.c_proj": (64, 64)}
    loaded = adapters.load_adapter(tiny().model, tmp_path / "a").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**enc).logits, want, atol=1e-6)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp4"])
def test_every_quant_mode_loads_and_trains(quant):
    """transformers' bitsandbytes integration quantizes Conv1D too (it transposes the weight into a
    bitsandbytes Linear), so GPT-2 takes every mode; LoRA then adapts plain linear layers."""
    lm = tiny(quant)
    enc = batch(lm)
    c_attn = lm.model.transformer.h[0].attn.c_attn
    expected = {"none": "Conv1D", "int8": "Linear8bitLt", "nf4": "Linear4bit", "fp4": "Linear4bit"}[quant]
    assert type(c_attn).__name__ == expected
    assert {g.name: (g.d_in, g.d_out) for g in adapters.linear_modules(lm.model)} == SHAPES
    pm = adapters.attach_lora(lm.model, rank=4, target_modules="all-linear")
    assert pm.peft_config["default"].fan_in_fan_out is (quant == "none")
    assert adapters.count_params(pm)[0] == sum(2 * 4 * sum(s) for s in SHAPES.values())
    b0 = pm.base_model.model.transformer.h[0].attn.c_attn.lora_B["default"].weight.detach().clone()
    loss = train_steps(pm, enc)
    assert math.isfinite(loss)
    assert not torch.equal(pm.base_model.model.transformer.h[0].attn.c_attn.lora_B["default"].weight, b0)


def test_nf4_merge_writes_a_gpt2_that_reloads(tmp_path):
    """A quantized GPT-2's layers are bitsandbytes Linears; the merged model is a GPT-2 again (Conv1D)."""
    lm = tiny("nf4")
    enc = batch(lm)
    pm = adapters.attach_lora(lm.model, rank=8, dropout=0.0, target_modules="qv")
    train_steps(pm, enc)
    with torch.no_grad():
        want = pm(**enc).logits.float()
    adapters.merge_adapter(pm, tmp_path / "merged", tokenizer=lm.tokenizer)
    reloaded = lorakit.load_model(str(tmp_path / "merged"), device="cpu").model.float().eval()
    with torch.no_grad():
        assert (reloaded(**enc).logits.float() - want).abs().max().item() < 1e-3


def test_a_builtin_task_trains_with_the_defaults(tmp_path):
    cfg = lorakit.RunConfig(model="tiny-gpt2", dataset="arithmetic", target_modules="qv", max_steps=2, eval_examples=4)
    rec = lorakit.train(cfg, store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert rec.steps_done == 2 and math.isfinite(rec.train_loss)
    assert rec.data_stats["seq_len"] == 128 and rec.data_stats["truncated_train"] == 0
