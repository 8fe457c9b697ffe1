"""dense_4bit: a 4-bit base's weights dequantized once per generate call give the very same numbers."""
import contextlib
import warnings

import pytest
import torch

import lorakit.models.dense_4bit as D  # the module (its RAM_SHARE), not the function of the same name
from lorakit.adapters.lora import attach_lora
from lorakit.models.loading import load_model
from lorakit.training import evaluation

warnings.filterwarnings("ignore")
PROMPTS = ["Extract the person as JSON:\nAda Lovelace, 36, lives in London.", "Sort these words: pear apple fig"]


def _qlora(quant: str, double_quant: bool):
    """tiny-llama on a 4-bit base with LoRA on every linear layer, B moved off zero so the adapters count."""
    bundle = load_model("tiny-llama", quant=quant, double_quant=double_quant, device="cpu")
    model = attach_lora(bundle.model, rank=4, alpha=8, dropout=0.0, target_modules="all-linear")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model, bundle.tokenizer


def _no_dense(monkeypatch):
    monkeypatch.setattr(D, "RAM_SHARE", 0.0)  # nothing fits: bitsandbytes' own per-call dequantization


@pytest.mark.parametrize("quant,double_quant", [("nf4", True), ("fp4", False)])
def test_logits_and_generations_are_bit_for_bit_those_of_bitsandbytes(quant, double_quant, monkeypatch):
    model, tok = _qlora(quant, double_quant)
    model.eval()
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        with D.dense_4bit(model) as nbytes:
            dense = model(input_ids=ids).logits
    layers = D._four_bit_layers(model)
    assert len(layers) == 7 * model.config.num_hidden_layers  # every linear layer of every block
    assert nbytes == sum(m.in_features * m.out_features * 4 for m in layers)  # fp32 copies
    assert torch.equal(dense, reference)
    used = []

    @contextlib.contextmanager
    def spy(m):
        with D.dense_4bit(m) as n:
            used.append(n)
            yield n

    monkeypatch.setattr(evaluation, "dense_4bit", spy)
    fast = evaluation.generate(model, tok, PROMPTS, max_new_tokens=12)
    assert used == [nbytes]  # generate took the dense path
    _no_dense(monkeypatch)
    assert evaluation.generate(model, tok, PROMPTS, max_new_tokens=12) == fast


def test_the_copies_go_when_the_block_ends_and_training_is_untouched():
    model, tok = _qlora("nf4", True)
    layer = D._four_bit_layers(model)[0]
    with torch.no_grad(), D.dense_4bit(model) as nbytes:
        assert nbytes > 0 and layer._lorakit_dense.shape == (layer.out_features, layer.in_features)
        assert "forward" in layer.__dict__
    assert "forward" not in layer.__dict__ and not hasattr(layer, "_lorakit_dense")
    with D.dense_4bit(model) as nbytes:  # gradients on (training): bitsandbytes' own path, nothing copied
        assert nbytes == 0 and "forward" not in layer.__dict__


def test_nothing_changes_without_room_or_without_4_bit_layers(monkeypatch):
    model, _ = _qlora("nf4", True)
    _no_dense(monkeypatch)
    with torch.no_grad(), D.dense_4bit(model) as nbytes:
        assert nbytes == 0 and not any("forward" in m.__dict__ for m in D._four_bit_layers(model))
    dense_model = load_model("tiny-llama", device="cpu").model
    with torch.no_grad(), D.dense_4bit(dense_model) as nbytes:
        assert nbytes == 0 and D._four_bit_layers(dense_model) == []
