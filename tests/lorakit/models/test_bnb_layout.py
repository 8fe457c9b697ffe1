"""A 4-bit base repacked by bitsandbytes for its fused CPU kernel (what a CPU with AVX512-BF16 does at the first
evaluation forward) merges, dequantizes, copies, measures and trains exactly as one that was not.

These tests do not depend on the machine: they repack with bitsandbytes' own code, which is plain torch.
"explicit": ``_convert_weight_packed_for_cpu`` called directly (the exact state is lost: absmax comes back
rounded to bf16, hence a tolerance); "forward": bitsandbytes' own ``Linear4bit.forward`` repacks, as on such a
CPU, with its capability flag set (lorakit keeps the exact state then: no tolerance at all).
"""
import copy
import warnings

import bitsandbytes as bnb
import bitsandbytes.functional as F
import pytest
import torch

import lorakit
import lorakit.models.dense_4bit as dense_4bit
from lorakit.adapters import lora as adapters
from lorakit.memory import breakdown as memory

warnings.filterwarnings("ignore")
TEXT = "The quick brown fox jumps over the lazy dog."


def _layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _qlora(quant="nf4", double_quant=True):
    """tiny-llama on a 4-bit base, LoRA on every linear layer with B off zero (so the adapters count), and a
    batch with labels."""
    lm = lorakit.load_model("tiny-llama", quant=quant, double_quant=double_quant, device="cpu")
    torch.manual_seed(0)
    pm = adapters.attach_lora(lm.model, rank=4, alpha=8, dropout=0.0, target_modules="all-linear")
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    enc = lm.tokenizer([TEXT, TEXT[::-1]], return_tensors="pt", padding=True)
    enc["labels"] = enc["input_ids"].clone()
    return pm, enc, lm.tokenizer


def _repack(model, how: str, enc) -> None:
    """Put every 4-bit layer of ``model`` in bitsandbytes' fused-kernel layout."""
    if how == "explicit":
        for m in _layers(model):
            m.weight.data, m.weight.quant_state = F._convert_weight_packed_for_cpu(m.weight.data, m.weight.quant_state)
    else:  # the evaluation pass of a CPU with AVX512-BF16: bitsandbytes' forward repacks in place
        for m in _layers(model):
            m.support_avx512bf16_for_cpu = True
        model.eval()
        with torch.no_grad():
            model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        for m in _layers(model):
            m.support_avx512bf16_for_cpu = False  # the layer computes in fp32: lorakit keeps the flag off there
    assert all(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _layers(model))


def _twins(how: str, quant="nf4", double_quant=True):
    pm, enc, tok = _qlora(quant, double_quant)
    twin = copy.deepcopy(pm)
    _repack(twin, how, enc)
    return pm, twin, enc, tok


def _close(how: str):
    """Exact where lorakit kept the state; within bf16's rounding of absmax (2^-8 relative) where it could not."""
    if how == "forward":
        return lambda a, b: torch.equal(a, b)
    return lambda a, b: torch.allclose(a, b, rtol=2 ** -7, atol=2 ** -7 * float(b.abs().max()))


CASES = [("explicit", "nf4", True), ("explicit", "fp4", False), ("forward", "nf4", True), ("forward", "fp4", False)]


@pytest.mark.parametrize("how,quant,double_quant", CASES)
def test_dequantize_and_merge_read_the_usual_layout(how, quant, double_quant, tmp_path):
    pm, twin, enc, _ = _twins(how, quant, double_quant)
    same = _close(how)
    for plain, packed in zip(_layers(pm), _layers(twin), strict=True):
        assert same(adapters.dequantize_weight(packed), adapters.dequantize_weight(plain))
    with torch.no_grad():
        want = adapters.merge_adapter(pm).eval()(input_ids=enc["input_ids"]).logits
        got = adapters.merge_adapter(twin).eval()(input_ids=enc["input_ids"]).logits
    assert same(got, want), (got - want).abs().max()


@pytest.mark.parametrize("how,quant,double_quant", CASES)
def test_training_after_a_repack_gets_the_gradients_of_an_unpacked_twin(how, quant, double_quant):
    pm, twin, enc, _ = _twins(how, quant, double_quant)
    same = _close(how)
    for model in (pm, twin):
        model.train()
        model(**enc).loss.backward()
    grads = {n: p.grad for n, p in pm.named_parameters() if p.requires_grad}
    twin_grads = {n: p.grad for n, p in twin.named_parameters() if p.requires_grad}
    assert len(grads) == 2 * 7 * pm.config.num_hidden_layers  # A and B of every linear layer
    for name, g in grads.items():
        assert twin_grads[name] is not None, f"{name}: no gradient after the repack"
        assert same(twin_grads[name], g), f"{name}: {(twin_grads[name] - g).abs().max()}"
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _layers(twin))


@pytest.mark.parametrize("how,quant,double_quant", CASES)
def test_dense_copies_and_measured_bytes_are_unchanged(how, quant, double_quant):
    pm, twin, _, _ = _twins(how, quant, double_quant)
    same = _close(how)
    assert memory.measure_weights(twin) == memory.measure_weights(pm)
    pm.eval(), twin.eval()
    with torch.no_grad(), dense_4bit.dense_4bit(pm) as want, dense_4bit.dense_4bit(twin) as got:
        assert got == want > 0
        for plain, packed in zip(_layers(pm), _layers(twin), strict=True):
            assert same(packed._lorakit_dense, plain._lorakit_dense)


def test_repacking_stays_off_where_the_fused_kernel_would_change_the_compute_dtype():
    """bitsandbytes' fused CPU kernel computes in bf16: lorakit lets it repack bf16 layers only."""
    from lorakit.models.bnb_layout import install

    for dtype, kept in (("float32", False), ("bfloat16", True)):
        model = lorakit.load_model("tiny-llama", quant="nf4", dtype=dtype, device="cpu").model
        for m in _layers(model):
            m.support_avx512bf16_for_cpu = True  # as bitsandbytes sets it on a CPU with AVX512-BF16
        install(model)
        assert {m.support_avx512bf16_for_cpu for m in _layers(model)} == {kept}


@pytest.mark.skipif(not F.has_avx512bf16(), reason="this CPU has no AVX512-BF16: bitsandbytes never repacks here "
                    "by itself (the tests above repack with its own code instead)")
def test_the_real_evaluation_then_merge_and_train_sequence_on_this_cpu(tmp_path):
    lm = lorakit.load_model("tiny-llama", quant="nf4", dtype="bfloat16", device="cpu")
    torch.manual_seed(0)
    pm = adapters.attach_lora(lm.model, rank=4, alpha=8, dropout=0.0, target_modules="all-linear")
    enc = lm.tokenizer([TEXT], return_tensors="pt")
    pm.eval()
    with torch.no_grad():
        pm(**enc)  # bitsandbytes repacks here, by itself
    assert all(m.weight.quant_state.packing_format_for_cpu for m in _layers(pm))
    pm.train()
    pm(**enc, labels=enc["input_ids"]).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in pm.named_parameters() if "lora_B" in n)
    pm.eval()
    with torch.no_grad():
        want = pm(**enc).logits.float()  # the fused bf16 kernel again (repacked anew)
        got = adapters.merge_adapter(pm).eval()(**enc).logits.float()
    assert (got - want).abs().max() < 0.05 * want.abs().max()  # bf16 compute on both sides
