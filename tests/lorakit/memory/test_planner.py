"""The memory planner: the breakdown predicted from a config alone, checked against measurement."""
import functools
import resource
import warnings

import pytest
import torch

from lorakit.adapters.lora import attach_lora, prepare_full
from lorakit.config.run_config import ConfigError, RunConfig
from lorakit.memory import breakdown as M
from lorakit.memory.planner import plan_for_config, plan_memory, quantized_linear_bytes
from lorakit.memory.planning import model as plan_model
from lorakit.models.loading import REGISTRY, builtin_config, load_model
from lorakit.models.quantization import quantization_error

warnings.filterwarnings("ignore")

GOALS = {"base_weights": 0.02, "adapters": 0.02, "gradients": 0.02, "optimizer": 0.02, "activations": 0.20}


def measure_one_step(name, quant="none", method="lora", target_modules=("q_proj", "v_proj"),
                     batch_size=2, seq_len=32, gradient_checkpointing=False, optimizer="adamw",
                     double_quant=True, dtype="float32"):
    """Load, attach, take one real optimizer step on a full-length batch, measure."""
    import bitsandbytes as bnb

    model = load_model(name, quant=quant, double_quant=double_quant, dtype=dtype, device="cpu").model
    if method == "lora":
        model = attach_lora(model, rank=8, alpha=16, dropout=0.05, target_modules=target_modules,
                            gradient_checkpointing=gradient_checkpointing)
    else:
        model = prepare_full(model, gradient_checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = {"adamw": functools.partial(torch.optim.AdamW, fused=True), "adamw_8bit": bnb.optim.AdamW8bit}[optimizer]
    opt = opt_cls(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model.train()
    model(**batch).loss.backward()
    opt.step()
    return M.measure(model, opt, batch)


def assert_within_goals(planned, measured):
    for cat, tol in GOALS.items():
        p, m = getattr(planned, cat), getattr(measured, cat)
        if m == 0:
            assert p == 0, f"{cat}: planned {p}, measured 0"
        else:
            assert abs(p - m) / m <= tol, f"{cat}: planned {p}, measured {m} ({100 * (p - m) / m:+.1f} %)"


@pytest.mark.parametrize("quant,method,extra", [
    ("none", "lora", {}),
    ("nf4", "lora", {}),
    ("int8", "lora", {}),
    ("fp4", "lora", {"double_quant": False}),
    ("none", "full", {}),
    ("none", "lora", {"dtype": "bfloat16"}),
    ("nf4", "lora", {"dtype": "bfloat16", "target_modules": "attention"}),
    ("none", "full", {"dtype": "bfloat16", "optimizer": "adamw_8bit"}),
    ("none", "lora", {"gradient_checkpointing": True, "target_modules": "all-linear"}),
    ("nf4", "lora", {"gradient_checkpointing": True, "optimizer": "adamw_8bit", "target_modules": "mlp"}),
])
def test_plan_matches_measurement_on_tiny_llama(quant, method, extra):
    measured = measure_one_step("tiny-llama", quant=quant, method=method, **extra)
    planned = plan_memory("tiny-llama", method=method, quant=quant, rank=8, batch_size=2, seq_len=32,
                          device="cpu", **extra)
    assert_within_goals(planned, measured)


@pytest.mark.parametrize("quant,method,extra", [
    ("none", "lora", {"target_modules": "qv"}),
    ("int8", "lora", {"target_modules": "all-linear"}),
    ("nf4", "lora", {"dtype": "bfloat16", "target_modules": "attention"}),  # 4-bit biases: in the compute dtype
    ("fp4", "lora", {"double_quant": False, "target_modules": "qv"}),
    ("none", "full", {"dtype": "bfloat16", "optimizer": "adamw_8bit"}),
    ("none", "lora", {"gradient_checkpointing": True, "target_modules": "all-linear"}),
])
def test_plan_is_exact_on_tiny_gpt2(quant, method, extra):
    """GPT-2 (Conv1D, LayerNorm, learned positions, dropout 0.1, sdpa's math path on CPU): every category
    to the byte."""
    extra.setdefault("target_modules", "qv")
    measured = measure_one_step("tiny-gpt2", quant=quant, method=method, **extra)
    planned = plan_memory("tiny-gpt2", method=method, quant=quant, rank=8, batch_size=2, seq_len=32,
                          device="cpu", **extra)
    assert {c: getattr(planned, c) for c in M.CATEGORIES} == {c: getattr(measured, c) for c in M.CATEGORIES}


def measure_config_built(cfg, method, target_modules, gradient_checkpointing=False, batch_size=2, seq_len=32):
    """A random encoder classifier built from ``cfg`` (no download), one AdamW step, measured."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model = (attach_lora(model, rank=8, target_modules=target_modules, task_type="SEQ_CLS",
                         gradient_checkpointing=gradient_checkpointing) if method == "lora"
             else prepare_full(model, gradient_checkpointing))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(3, cfg.vocab_size, (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(batch_size) % 2}
    model.train()
    model(**batch).loss.backward()
    opt.step()
    return M.measure(model, opt, batch)


@pytest.mark.parametrize("kind, method, target_modules, checkpointing", [
    ("bert", "lora", "qv", False), ("bert", "lora", "all-linear", False), ("bert", "full", "qv", False),
    ("bert", "lora", "all-linear", True), ("roberta", "lora", "qv", False), ("roberta", "full", "qv", False),
])
def test_plan_is_exact_on_a_tiny_encoder_classifier(kind, method, target_modules, checkpointing):
    """BERT (pooler) and RoBERTa (its own head) classifiers, 2 layers, fp32 on CPU: every category and
    the head's share to the byte."""
    from transformers import AutoConfig

    extra = dict(type_vocab_size=1, pad_token_id=1, max_position_embeddings=130) if kind == "roberta" else {}
    cfg = AutoConfig.for_model(kind, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=128, vocab_size=1536, **extra)
    measured = measure_config_built(cfg, method, target_modules, checkpointing)
    planned = plan_memory(cfg, method=method, rank=8, target_modules=target_modules, batch_size=2, seq_len=32,
                          device="cpu", gradient_checkpointing=checkpointing)
    assert {c: getattr(planned, c) for c in M.CATEGORIES} == {c: getattr(measured, c) for c in M.CATEGORIES}
    assert planned.head == measured.head and planned.head["gradients"] > 0


@pytest.mark.parametrize("ff, method, target_modules", [
    ("relu", "lora", "qv"), ("gated-gelu", "lora", "all-linear"), ("relu", "full", "qv"), ("gated-gelu", "full", "qv"),
])
def test_plan_is_exact_on_a_tiny_t5(ff, method, target_modules):
    """T5 (ReLU MLP, tied head) and T5 v1.1 (gated-GELU, untied), 2+2 layers, fp32 on CPU, targets as long
    as the inputs: every category to the byte."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    cfg = AutoConfig.for_model("t5", d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, vocab_size=1536,
                               feed_forward_proj=ff, tie_word_embeddings=ff == "relu", decoder_start_token_id=0,
                               pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(cfg)
    model = (attach_lora(model, rank=8, target_modules=target_modules, task_type="SEQ_2_SEQ_LM")
             if method == "lora" else prepare_full(model))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(3, 1536, (2, 32), generator=g), torch.randint(3, 1536, (2, 32), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()
    model(**batch).loss.backward()
    opt.step()
    measured = M.measure(model, opt, batch)
    planned = plan_memory(cfg, method=method, rank=8, target_modules=target_modules, batch_size=2, seq_len=32,
                          device="cpu")
    assert {c: getattr(planned, c) for c in M.CATEGORIES} == {c: getattr(measured, c) for c in M.CATEGORIES}


@pytest.mark.parametrize("kind, quant", [("bert", "int8"), ("roberta", "nf4"), ("t5", "int8"), ("t5", "fp4")])
def test_quantized_encoders_and_t5_train_and_plan_exactly(kind, quant, tmp_path):
    """bitsandbytes quantizes BERT, RoBERTa and T5 on CPU (a classifier's head skipped, as load_model
    does; T5 keeps ``wo`` in fp32); two LoRA steps train; the plan matches every category."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    from lorakit.models.quantization import bnb_config

    if kind == "t5":
        cfg = AutoConfig.for_model("t5", d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, vocab_size=1536,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    else:
        extra = dict(type_vocab_size=1, pad_token_id=1, max_position_embeddings=130) if kind == "roberta" else {}
        cfg = AutoConfig.for_model(kind, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, vocab_size=1536, **extra)
    auto = AutoModelForSeq2SeqLM if kind == "t5" else AutoModelForSequenceClassification
    torch.manual_seed(0)
    auto.from_config(cfg).save_pretrained(tmp_path)
    qc = bnb_config(quant, True, "float32")
    if kind != "t5":
        qc.llm_int8_skip_modules = ["classifier", "score"]
    model = auto.from_pretrained(tmp_path, quantization_config=qc, device_map={"": "cpu"}, dtype=torch.float32)
    model = attach_lora(model, rank=8, target_modules="qv", task_type="SEQ_2_SEQ_LM" if kind == "t5" else "SEQ_CLS")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1536, (2, 32), generator=g)
    labels = torch.randint(3, 1536, (2, 32), generator=g) if kind == "t5" else torch.tensor([0, 1])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()
    for _ in range(2):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    assert torch.isfinite(loss)
    measured = M.measure(model, opt, batch)
    planned = plan_memory(cfg, quant=quant, rank=8, target_modules="qv", batch_size=2, seq_len=32, device="cpu")
    assert {c: getattr(planned, c) for c in M.CATEGORIES} == {c: getattr(measured, c) for c in M.CATEGORIES}


def _tiny_config(kind):
    from transformers import AutoConfig

    if kind in ("t5", "mt5"):
        return AutoConfig.for_model(kind, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, vocab_size=1536,
                                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    extra = dict(type_vocab_size=1, pad_token_id=1, max_position_embeddings=130) if kind == "xlm-roberta" else {}
    if kind == "electra":
        extra["embedding_size"] = 64
    return AutoConfig.for_model(kind, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=128, vocab_size=1536, **extra)


@pytest.mark.parametrize("kind, dtype, checkpointing, target_modules", [
    ("bert", "bfloat16", False, "qv"), ("t5", "bfloat16", False, "qv"), ("t5", "float32", True, "all-linear"),
    ("xlm-roberta", "float32", False, "qv"), ("electra", "float32", False, "all-linear"),  # held out:
    ("mt5", "float32", False, "all-linear"),  # the formulas were not written against these
])
def test_plan_is_exact_on_16_bit_checkpointed_and_held_out_encoders_and_t5(kind, dtype, checkpointing,
                                                                          target_modules):
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    cfg = _tiny_config(kind)
    seq2seq = kind in ("t5", "mt5")
    torch.manual_seed(0)
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForSequenceClassification).from_config(
        cfg, dtype=getattr(torch, dtype))
    model = attach_lora(model, rank=8, target_modules=target_modules, gradient_checkpointing=checkpointing,
                        task_type="SEQ_2_SEQ_LM" if seq2seq else "SEQ_CLS")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1536, (2, 32), generator=g)
    labels = torch.randint(3, 1536, (2, 32), generator=g) if seq2seq else torch.tensor([0, 1])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()
    model(**batch).loss.backward()
    opt.step()
    measured = M.measure(model, opt, batch)
    planned = plan_memory(cfg, rank=8, target_modules=target_modules, batch_size=2, seq_len=32, device="cpu",
                          dtype=dtype, gradient_checkpointing=checkpointing)
    assert {c: getattr(planned, c) for c in M.CATEGORIES} == {c: getattr(measured, c) for c in M.CATEGORIES}


@pytest.mark.parametrize("name, preset, trainable", [
    ("roberta-base", "qv", 294_912), ("roberta-large", "qv", 786_432),  # the LoRA paper's GLUE setup
    ("gpt2", "qv", 12 * 8 * (768 + 2304)), ("gpt2-medium", "qv", 24 * 8 * (1024 + 3072)),
    ("gpt2-large", "all-linear", 36 * 8 * ((1280 + 3 * 1280) + (1280 + 1280) + (1280 + 4 * 1280) + (4 * 1280 + 1280))),
    ("gpt2-xl", "attention", 48 * 8 * (1600 + 3 * 1600 + 1600 + 1600)),
    ("t5-base", "qv", 2 * 36 * 8 * (768 + 768)), ("flan-t5-xl", "mlp", 3 * 48 * 8 * (2048 + 5120)),
])
def test_lora_parameter_counts_of_published_sizes(name, preset, trainable):
    """r=8 LoRA parameters from the config alone (classifier head excluded: it is shown apart in ``head``).
    T5's q, v are in the encoder's self-attention and the decoder's self- and cross-attention."""
    plan = plan_memory(name, rank=8, target_modules=preset, device="cpu")
    assert plan.adapters == 4 * trainable


def test_a_classifiers_head_trains_beside_lora_and_is_shown_apart():
    plan = plan_memory("roberta-base", rank=8, target_modules="qv", device="cpu")
    head = 768 * 768 + 768 + 768 * 2 + 2  # RobertaClassificationHead: dense H -> H, out_proj H -> 2 labels
    assert plan.head == {"base_weights": 4 * head, "gradients": 4 * head, "optimizer": 8 * head + 4 * 4}
    assert plan.gradients == plan.adapters + 4 * head
    buffers = 2 * 514 * 8  # position_ids, token_type_ids (int64)
    # RobertaModel without its pooler, the head twice (frozen original, trained copy)
    assert plan.base_weights == (124_645_632 - 768 * 768 - 768 + head + head) * 4 + buffers
    assert plan_memory("gpt2", rank=8, target_modules="qv", device="cpu").head is None


@pytest.mark.e2e
def test_plan_matches_measurement_on_smollm2_nf4():
    measured = measure_one_step("smollm2-135m", quant="nf4", batch_size=2, seq_len=64)
    planned = plan_memory("smollm2-135m", quant="nf4", batch_size=2, seq_len=64, device="cpu")
    assert_within_goals(planned, measured)


def test_plan_from_config_json_path_dir_and_pretrained_config(tmp_path):
    cfg = builtin_config("tiny-llama")
    cfg.to_json_file(tmp_path / "config.json")
    kw = dict(quant="nf4", batch_size=2, seq_len=16, device="cpu")
    by_name = plan_memory("tiny-llama", **kw)
    assert plan_memory(str(tmp_path / "config.json"), **kw) == by_name
    assert plan_memory(tmp_path, **kw) == by_name  # a directory holding config.json
    assert plan_memory(cfg, **kw) == by_name
    bigger = builtin_config("tiny-llama")
    bigger.num_hidden_layers = 4
    assert plan_memory(bigger, **kw).base_weights > by_name.base_weights
    assert cfg.num_hidden_layers == 2  # the caller's config is not modified


def test_llama_65b_nf4_base_is_sane_and_allocates_nothing():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    plan = plan_memory("llama-65b", quant="nf4", dtype="bfloat16", batch_size=1, seq_len=512)
    grown_gib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20
    assert 33e9 <= plan.base_weights <= 38e9
    assert grown_gib < 2  # 65 B parameters would need > 30 GiB if anything were materialised
    fp16 = plan_memory("llama-65b", quant="none", dtype="bfloat16", batch_size=1, seq_len=512)
    assert abs(fp16.base_weights - 2 * REGISTRY["llama-65b"].params) / fp16.base_weights < 0.01
    int8 = plan_memory("llama-65b", quant="int8", dtype="bfloat16", batch_size=1, seq_len=512)
    assert plan.base_weights < int8.base_weights < fp16.base_weights


def test_unknown_model_names_the_builtins():
    with pytest.raises(ConfigError) as err:
        plan_memory("no-such-model")
    assert "model" in err.value.problems
    msg = str(err.value)
    for name in ("smollm2-135m", "tiny-llama", "llama-65b", "mistral-7b"):
        assert name in msg


def test_invalid_settings_are_all_reported():
    with pytest.raises(ConfigError) as err:
        plan_memory("tiny-llama", method="lora", quant="int4", dtype="fp8", rank=0, optimizer="sgd")
    assert set(err.value.problems) >= {"quant", "dtype", "rank", "optimizer"}
    with pytest.raises(ConfigError) as err:
        plan_memory("tiny-llama", method="full", quant="nf4")
    assert "method" in err.value.problems
    with pytest.raises(ConfigError) as err:
        plan_memory("tiny-llama", target_modules=("q_proj", "wq"))
    assert "wq" in err.value.problems["target_modules"]
    # the model and the target modules are reported together with the settings, not in a second round
    with pytest.raises(ConfigError) as err:
        plan_memory("no-such-model", rank=0, batch_size=0)
    assert set(err.value.problems) == {"model", "rank", "batch_size"}
    with pytest.raises(ConfigError) as err:
        plan_memory("tiny-llama", target_modules=("q_proj", "wq"), seq_len=0, optimizer="sgd")
    assert set(err.value.problems) == {"target_modules", "seq_len", "optimizer"}



def test_a_config_the_planner_cannot_cover_is_a_model_problem_reported_with_the_rest():
    from transformers import GPT2Config, OPTConfig

    with pytest.raises(ConfigError) as err:  # transformers cannot build it (64 dims over 5 heads)
        plan_memory(GPT2Config(n_layer=2, n_embd=64, n_head=5), rank=0)
    assert set(err.value.problems) == {"model", "rank"}
    assert "cannot build a gpt2 model (decoder, task causal-lm)" in err.value.problems["model"]
    with pytest.raises(ConfigError) as err:  # a causal LM the activation formulas do not cover
        plan_memory(OPTConfig(num_hidden_layers=2), method="full", rank=0)
    assert set(err.value.problems) == {"model", "rank"} and "lacks intermediate_size" in err.value.problems["model"]


def test_quantized_linear_bytes_match_bitsandbytes():
    w = torch.randn(192, 576)
    for mode, dq in (("nf4", True), ("nf4", False), ("fp4", True), ("int8", False)):
        assert quantized_linear_bytes(576, 192, mode, dq) == quantization_error(w, mode, dq).bytes


def test_plan_reacts_to_settings_as_expected():
    kw = dict(batch_size=4, seq_len=128, device="cpu")
    base = plan_memory("smollm2-135m", **kw)
    assert plan_memory("smollm2-135m", gradient_checkpointing=True, **kw).activations < base.activations / 2
    assert plan_memory("smollm2-135m", seq_len=256, batch_size=4, device="cpu").activations > 1.9 * base.activations
    assert plan_memory("smollm2-135m", target_modules="all-linear", **kw).adapters > base.adapters
    assert plan_memory("smollm2-135m", rank=16, **kw).adapters == 2 * base.adapters
    # smollm2 r=8 q,v: 460,800 LoRA parameters in fp32
    assert base.adapters == 4 * 460_800 and base.gradients == base.adapters
    full = plan_memory("smollm2-135m", method="full", **kw)
    assert full.gradients == 4 * REGISTRY["smollm2-135m"].params and full.adapters == 0
    full8 = plan_memory("smollm2-135m", method="full", optimizer="adamw_8bit", **kw)
    assert full8.optimizer < full.optimizer / 3
    # on CUDA the LoRA dropout mask is bool (1 byte), on CPU it has the input's dtype
    assert plan_memory("smollm2-135m", batch_size=4, seq_len=128, device="cuda").activations < base.activations


def test_plan_for_config_uses_the_run_settings():
    cfg = RunConfig(model="tiny-llama", quant="nf4", rank=4, target_modules="attention", batch_size=2,
                    seq_len=64, optimizer="adamw_8bit", gradient_checkpointing=True, dropout=0.1)
    expected = plan_memory("tiny-llama", quant="nf4", rank=4, target_modules="attention", batch_size=2,
                           seq_len=64, optimizer="adamw_8bit", gradient_checkpointing=True, dropout=0.1,
                           device="cpu", dtype="float32",  # a RunConfig always gives its dtype
                           labelled_tokens=2 * 63)  # its labelled-only head, every position with a next token
    assert plan_for_config(cfg, device="cpu") == expected
    assert plan_for_config(cfg, seq_len=32, device="cpu").activations < expected.activations


def test_padded_batches_are_planned_too():
    """Padding makes attention save a mask and repeated k/v heads; padded=True plans that."""
    model = attach_lora(load_model("tiny-llama", device="cpu").model, rank=8, target_modules="qv")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (4, 64), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 40:] = 0
    mask[3, 10:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    measured = M.measure_activations(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    unpadded = plan_memory("tiny-llama", batch_size=4, seq_len=64, device="cpu").activations
    padded = plan_memory("tiny-llama", batch_size=4, seq_len=64, device="cpu", padded=True).activations
    assert unpadded < measured
    assert abs(padded - measured) / measured <= GOALS["activations"]


def test_planning_on_one_thread_does_not_put_another_threads_lora_on_meta(monkeypatch):
    """The planner's meta build patches nn.Module process-wide; a LoRA attached meanwhile on another
    thread (the Studio plans while it trains) must still get real, initialised A and B."""
    import threading

    from peft import LoraConfig, get_peft_model  # noqa: F401  imported now, so the attach below is quick
    from transformers import AutoModelForCausalLM


    model = load_model("tiny-llama", device="cpu").model
    inside, release = threading.Event(), threading.Event()
    real_from_config = AutoModelForCausalLM.from_config

    def paused_from_config(*args, **kwargs):  # runs inside init_empty_weights
        out = real_from_config(*args, **kwargs)
        inside.set()
        release.wait(timeout=30)
        return out

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", paused_from_config)
    plan_model._tally.cache_clear()
    plan_thread = threading.Thread(target=plan_memory, args=("llama-7b",), kwargs={"quant": "nf4"})
    plan_thread.start()
    assert inside.wait(timeout=60), "the planner never reached its meta build"
    result = {}
    attach = threading.Thread(target=lambda: result.update(m=attach_lora(model, rank=4, target_modules="qv")))
    attach.start()
    attach.join(timeout=5.0)  # without the lock it finishes in here, inside the planner's meta build
    release.set()
    plan_thread.join(timeout=60)
    attach.join(timeout=60)
    plan_model._tally.cache_clear()
    lora = [p for n, p in result["m"].named_parameters() if "lora_" in n]
    assert lora and all(p.device.type == "cpu" for p in lora), "LoRA weights landed on the meta device"
    assert any(p.abs().sum() > 0 for n, p in result["m"].named_parameters() if "lora_A" in n)
