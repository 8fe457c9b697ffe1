"""The measured memory breakdown, counted from real tensors (lorakit.memory.breakdown)."""
import warnings

import pytest
import torch

from lorakit.adapters.lora import attach_lora, expected_lora_params, prepare_full
from lorakit.memory import breakdown as M
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.models.loading import builtin_config, load_model
from lorakit.models.quantization import quant_state_bytes
from lorakit.models.tiny_llama import tiny_tokenizer

warnings.filterwarnings("ignore")
VOCAB = builtin_config("tiny-llama").vocab_size


def _load(name="tiny-llama", quant="none", **kw):
    return load_model(name, quant=quant, device="cpu", **kw).model


def _batch(vocab, b=2, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def _step(model, opt, batch):
    model.train()
    model(**batch).loss.backward()
    opt.step()


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    """A 1-layer LLaMA with 256-wide layers: big enough for double quantization to pay off."""
    from transformers import AutoModelForCausalLM

    cfg = builtin_config("tiny-llama")
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 256, 512, 1
    out = tmp_path_factory.mktemp("wide-llama")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tiny_tokenizer().save_pretrained(out)
    return str(out)


# --- base weights -----------------------------------------------------------------------------

def test_tied_embeddings_counted_once_and_equal_unique_storages():
    model = _load()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tiny-llama ties them
    base, adapters = M.measure_weights(model)
    unique = {}
    for _, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers()):
        unique[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    with_duplicates = sum(p.numel() * p.element_size() for _, p in model.named_parameters(remove_duplicate=False))
    assert base == sum(unique.values())
    assert base < with_duplicates  # the head would otherwise be counted a second time
    n_params = sum(p.numel() for p in model.parameters())
    assert base == 4 * n_params + sum(b.numel() * b.element_size() for b in model.buffers())
    assert adapters == 0


def test_quantized_base_is_smaller_nf4_lt_int8_lt_none():
    sizes = {q: M.measure_weights(_load(quant=q))[0] for q in ("none", "int8", "nf4")}
    assert sizes["nf4"] < sizes["int8"] < sizes["none"]


def test_nf4_base_counts_packed_data_plus_quant_state():
    model = _load(quant="nf4", double_quant=True)
    expected = 0
    n4 = 0
    for p in model.parameters():
        expected += p.numel() * p.element_size()
        if p.__class__.__name__ == "Params4bit":
            n4 += 1
            assert p.quant_state.nested  # double quant keeps a nested state
            expected += quant_state_bytes(p.quant_state)
    expected += sum(b.numel() * b.element_size() for b in model.buffers())
    assert n4 == 14  # 7 linear layers x 2 decoder layers
    assert M.measure_weights(model)[0] == expected


def test_int8_base_counts_row_scales_before_and_after_forward():
    model = _load(quant="int8")
    int8 = [p for p in model.parameters() if p.dtype == torch.int8]
    scales = sum(p.SCB.numel() * 4 for p in int8)  # one fp32 scale per output row
    assert scales > 0
    base = M.measure_weights(model)[0]
    assert base == sum(p.numel() * p.element_size() for p in model.parameters()) + scales + sum(
        b.numel() * b.element_size() for b in model.buffers())
    # bitsandbytes moves the scales from the weight to the layer state on the first forward
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert M.measure_weights(model)[0] == base


def test_double_quant_is_smaller_for_wide_layers(wide_dir):
    with_dq = M.measure_weights(load_model(wide_dir, quant="nf4", double_quant=True, device="cpu").model)[0]
    without = M.measure_weights(load_model(wide_dir, quant="nf4", double_quant=False, device="cpu").model)[0]
    assert with_dq < without


# --- adapters and gradients ------------------------------------------------------------------------

@pytest.mark.parametrize("quant", ["none", "nf4"])
def test_adapter_bytes_are_four_per_lora_parameter(quant):
    base = _load(quant=quant)
    n_lora = expected_lora_params(base, ["q_proj", "v_proj"], 8)
    base_before, _ = M.measure_weights(base)
    model = attach_lora(base, rank=8, target_modules=("q_proj", "v_proj"))
    base_after, adapters = M.measure_weights(model)
    assert n_lora > 0
    assert adapters == 4 * n_lora  # peft keeps LoRA weights in fp32
    assert base_after == base_before  # the frozen base is not counted as adapter


def test_full_finetuning_has_no_adapters_and_grads_for_everything():
    model = prepare_full(_load())
    base, adapters = M.measure_weights(model)
    assert adapters == 0
    n_params = sum(p.numel() for p in model.parameters())
    assert M.measure_gradients(model) == M.expected_gradient_bytes(model) == 4 * n_params


def test_gradients_before_after_backward_and_after_set_to_none():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = M.expected_gradient_bytes(model)
    assert expected == 4 * trainable
    assert M.measure_gradients(model) == expected  # not allocated yet: what they will be
    model.train()
    model(**_batch(model.config.vocab_size)).loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert sum(g.numel() * g.element_size() for g in grads) == expected  # only trainable params got grads
    assert M.measure_gradients(model) == expected
    model.zero_grad(set_to_none=True)
    assert M.measure_gradients(model) == expected


# --- optimizer -------------------------------------------------------------------------------------

def test_adamw_state_is_two_fp32_per_trainable_plus_step():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    assert M.measure_optimizer(opt) == 0  # no state before the first step
    assert M.measure_optimizer(None) == 0
    _step(model, opt, _batch(model.config.vocab_size))
    trainable = sum(p.numel() for p in params)
    assert M.measure_optimizer(opt) == 2 * 4 * trainable + 4 * len(params)  # exp_avg, exp_avg_sq, step


def test_8bit_optimizers_are_smaller_and_count_quantization_state():
    import bitsandbytes as bnb

    sizes = {}
    for cls in (torch.optim.AdamW, bnb.optim.AdamW8bit, bnb.optim.PagedAdamW8bit):
        model = prepare_full(_load())
        params = list(model.parameters())
        opt = cls(params, lr=1e-4)
        _step(model, opt, _batch(model.config.vocab_size))
        sizes[cls.__name__] = M.measure_optimizer(opt)
        if cls is not torch.optim.AdamW:
            # uint8 state1/state2 + fp32 absmax per 256-block for tensors >= 4096 elements,
            # fp32 state1/state2 below that, + two shared 256-entry fp32 maps
            expected = 2 * 256 * 4
            for p in params:
                n = p.numel()
                expected += 2 * n + 2 * 4 * -(-n // 256) if n >= 4096 else 2 * 4 * n
            assert sizes[cls.__name__] == expected
    assert sizes["AdamW8bit"] < sizes["AdamW"] / 2
    assert sizes["PagedAdamW8bit"] == sizes["AdamW8bit"]


# --- activations -----------------------------------------------------------------------------------

def test_activations_positive_and_shrink_with_checkpointing():
    """Checkpointing drops what the layers save (all but each layer's input); the loss path's
    log-softmax over the vocabulary stays as it is."""
    batch = _batch(VOCAB, b=2, t=32)

    def layers_and_loss(model):
        saved = M.saved_activation_tensors(model, batch)
        loss = sum(n for t, n in saved if t.dim() and t.shape[-1] == VOCAB)
        return sum(n for _, n in saved) - loss, loss

    plain = layers_and_loss(attach_lora(_load(), rank=8, target_modules="qv"))
    ckpt = layers_and_loss(attach_lora(_load(), rank=8, target_modules="qv", gradient_checkpointing=True))
    assert plain[0] > 0 and plain[1] == ckpt[1] > 0
    assert 0 < ckpt[0] < plain[0] / 2


def test_activations_grow_with_tokens_and_include_the_loss_path():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    small = M.measure_activations(model, _batch(VOCAB, b=1, t=16))
    big = M.measure_activations(model, _batch(VOCAB, b=2, t=16))
    assert big > 1.9 * small
    saved = M.saved_activation_tensors(model, _batch(VOCAB, b=1, t=16))
    vocab_shaped = [t for t, _ in saved if t.dim() and t.shape[-1] == VOCAB]
    assert vocab_shaped, "the fp32 log-softmax of the loss must be counted"
    # a tensor given as input ids only: labels default to the ids
    assert M.measure_activations(model, _batch(VOCAB, b=1, t=16)["input_ids"]) == small


def test_activation_measurement_leaves_model_untouched():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    model.eval()
    rng = torch.get_rng_state()
    assert M.measure_activations(model, _batch(VOCAB)) > 0
    assert not any(m.training for m in model.modules())  # eval mode restored
    assert all(p.grad is None for p in model.parameters())  # nothing backpropagated
    assert torch.equal(rng, torch.get_rng_state())  # dropout did not consume the caller's RNG
    model.train()
    M.measure_activations(model, _batch(VOCAB))
    assert all(m.training for m in model.modules())


def test_weights_are_not_activations():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    weight_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = M.saved_activation_tensors(model, _batch(VOCAB))
    assert saved
    assert not weight_ptrs & {t.untyped_storage().data_ptr() for t, _ in saved}
    ptrs = [t.untyped_storage().data_ptr() for t, _ in saved]
    assert len(ptrs) == len(set(ptrs))  # each storage once


def test_int8_activations_include_inputs_kept_by_bitsandbytes():
    """bitsandbytes' int8 matmul keeps its input as ctx.A (not save_for_backward): still counted."""
    batch = _batch(VOCAB)
    none = M.measure_activations(attach_lora(_load(), rank=8, target_modules="qv"), batch)
    int8 = M.measure_activations(attach_lora(_load(quant="int8"), rank=8, target_modules="qv"), batch)
    assert int8 > none


def test_ledger_counts_each_byte_once():
    t = torch.zeros(100)
    ledger = M.Ledger().add_all([t, t, t.view(10, 10), t[:50]])
    assert ledger.nbytes == 400
    ledger.add(torch.zeros(10, dtype=torch.float16))
    assert ledger.nbytes == 420
    big = torch.zeros(1000)
    assert M.Ledger().add_all([big[:10], big[500:510]]).nbytes == 80  # disjoint slices: own bytes


def test_measure_returns_the_breakdown():
    model = attach_lora(_load(), rank=8, target_modules="qv")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    batch = _batch(VOCAB)
    _step(model, opt, batch)
    mem = M.measure(model, opt, batch)
    assert isinstance(mem, MemoryBreakdown)
    assert all(getattr(mem, c) > 0 for c in M.CATEGORIES)
    assert mem.total == sum(mem.as_dict()[c] for c in M.CATEGORIES)
    assert (mem.base_weights, mem.adapters) == M.measure_weights(model)
    assert mem.cuda is None  # CPU: no allocator figures
    assert MemoryBreakdown.from_dict(mem.as_dict()).as_dict() == mem.as_dict()
    assert M.measure(model).activations == 0 and M.measure(model).optimizer == 0


# --- the real default model ------------------------------------------------------------------------

@pytest.mark.e2e
def test_smollm2_weights_and_double_quant():
    model = _load("smollm2-135m")
    base, _ = M.measure_weights(model)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert base == 4 * 134_515_008 + buffers  # tied head counted once
    dq = M.measure_weights(_load("smollm2-135m", quant="nf4", double_quant=True))[0]
    no_dq = M.measure_weights(_load("smollm2-135m", quant="nf4", double_quant=False))[0]
    assert dq < no_dq < base / 3
