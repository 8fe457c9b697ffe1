"""DoRA, rsLoRA, PiSSA / OLoRA / Gaussian init, LoftQ and LoRA+ on tiny-llama: counts, scaling,
init error, save / reload and merge."""
import math

import pytest
import torch

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.adapters import variants
from lorakit.config.run_config import ConfigError, RunConfig, variant_name

QV = ("q_proj", "v_proj")


def tiny(quant="none"):
    return lorakit.load_model("tiny-llama", quant=quant, device="cpu").model


def attach(quant="none", rank=4, alpha=8, **kw):
    torch.manual_seed(0)
    return adapters.attach_lora(tiny(quant), rank, alpha, 0.0, QV, **kw)


def logits(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=g)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def perturb(peft_model, seed=2):
    """Move every trainable tensor (B, A, DoRA's m) off its init, like a few optimizer steps would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g).to(p.dtype))


def test_dora_trainable_count_is_exact():
    rank = 4
    pm = attach(rank=rank, use_dora=True)
    layers = dict(variants.lora_layers(pm))
    by_hand = sum(rank * (m.in_features + m.out_features) + m.out_features for m in layers.values())
    assert len(layers) == 4  # 2 layers x (q, v)
    assert adapters.count_params(pm)[0] == by_hand
    base = tiny()
    assert adapters.expected_lora_params(base, list(QV), rank, use_dora=True) == by_hand
    assert by_hand - adapters.expected_lora_params(base, list(QV), rank) == sum(m.out_features for m in layers.values())


@pytest.mark.parametrize("rslora, scale", [(True, 16 / math.sqrt(16)), (False, 16 / 16)])
def test_rslora_scaling_on_live_modules(rslora, scale):
    pm = attach(rank=16, alpha=16, use_rslora=rslora)
    scalings = [m.scaling["default"] for _, m in variants.lora_layers(pm)]
    assert scalings and all(s == pytest.approx(scale) for s in scalings)


def test_loraplus_puts_b_in_a_group_at_lr_times_ratio(tmp_path):
    from transformers import TrainingArguments

    pm = attach(use_dora=True)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, use_cpu=True, report_to="none")
    opt = variants.loraplus_optimizer(pm, args, 16.0)
    group_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    assert all(group_of[id(p)] == pytest.approx(1.6e-2) for n, p in named if "lora_B" in n or "magnitude" in n)
    assert all(group_of[id(p)] == pytest.approx(1e-3) for n, p in named if "lora_A" in n)
    assert len(group_of) == len(named)


def test_train_uses_the_loraplus_optimizer(monkeypatch):
    calls = []
    real = variants.loraplus_optimizer

    def spy(model, args, ratio):
        opt = real(model, args, ratio)
        calls.append((ratio, sorted({g["lr"] for g in opt.param_groups if g["params"]})))
        return opt

    monkeypatch.setattr(variants, "loraplus_optimizer", spy)
    cfg = RunConfig(model="tiny-llama", max_steps=1, train_examples=8, eval_examples=2, batch_size=2, seq_len=96,
                    learning_rate=1e-3, loraplus_lr_ratio=4.0)
    run = lorakit.train(cfg, store=False, device="cpu")
    assert run.status == "finished", run.reason
    assert calls == [(4.0, [pytest.approx(1e-3), pytest.approx(4e-3)])]


@pytest.mark.parametrize("iters", [1, 2])
def test_loftq_init_error_below_plain_qlora_on_every_layer(iters):
    plain = variants.init_errors(attach("nf4"))
    loftq = variants.init_errors(attach("nf4", init="loftq", loftq_iter=iters))
    assert plain.keys() == loftq.keys() and len(plain) == 4
    assert all(loftq[k] < plain[k] for k in plain), (plain, loftq)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_olora_adapter_saved_and_reloaded_reproduces_outputs(init, tmp_path):
    pm = attach(init=init)
    perturb(pm)
    trained = logits(pm)
    adapters.save_adapter(pm, tmp_path / "a", base="tiny-llama")
    reloaded = adapters.load_adapter(tiny(), tmp_path / "a")
    assert reloaded.peft_config["default"].r == 8  # peft's conversion: rank 2r on the original base
    assert torch.allclose(logits(reloaded), trained, atol=1e-4)


VARIANTS = [dict(), dict(use_dora=True), dict(use_rslora=True), dict(init="pissa"), dict(init="olora"),
            dict(init="gaussian"), dict(init="pissa", use_dora=True)]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: variant_name(kw))
def test_merge_equals_unmerged_logits(kw):
    pm = attach(**kw)
    perturb(pm)
    before = logits(pm)
    assert torch.allclose(logits(adapters.merge_adapter(pm)), before, atol=1e-4)


@pytest.mark.parametrize("kw", [dict(), dict(use_dora=True), dict(init="loftq")], ids=["qlora", "qdora", "loftq"])
def test_merge_on_a_4bit_base_equals_unmerged_logits(kw):
    pm = attach("nf4", **kw)
    perturb(pm)
    before = logits(pm)
    assert torch.allclose(logits(adapters.merge_adapter(pm)), before, atol=1e-3)


@pytest.mark.parametrize("changes, field, words", [
    (dict(init="loftq"), "init", "quant='nf4'"),
    (dict(init="pissa", quant="nf4"), "init", "quant='none'"),
    (dict(init="svd"), "init", "'pissa'"),
    (dict(loraplus_lr_ratio=-1.0), "loraplus_lr_ratio", ">= 1"),
    (dict(loraplus_lr_ratio=0.5), "loraplus_lr_ratio", ">= 1"),
    (dict(loftq_iter=3), "loftq_iter", "init='loftq'"),
    (dict(init="loftq", quant="nf4", loftq_iter=0), "loftq_iter", ">= 1"),
    (dict(method="full", use_dora=True), "method", "use_dora"),
    (dict(use_dora="yes"), "use_dora", "True or False"),
    (dict(use_dora=True, quant="int8"), "use_dora", "quant='nf4'"),
])
def test_invalid_combinations_are_refused_naming_fields(changes, field, words):
    with pytest.raises(ConfigError) as info:
        RunConfig(model="tiny-llama", **changes)
    assert field in info.value.problems and words in info.value.problems[field]


def test_variant_names_and_labels():
    assert variant_name(RunConfig()) == "lora"
    assert variant_name(RunConfig(init="pissa", use_dora=True)) == "pissa,dora"
    assert variant_name(RunConfig(loraplus_lr_ratio=16)) == "lora+"
    assert variant_name(RunConfig(method="full")) == "full"
    assert RunConfig(quant="nf4", init="loftq").label == "qlora-nf4-r8-loftq"
    assert RunConfig().label == "lora-r8"


def test_grid_sweeps_the_variant_fields():
    from lorakit.sweeps.grids import grid

    configs = grid(RunConfig(model="tiny-llama"), use_dora=[False, True], init=["default", "pissa", "loftq"])
    ok = [c for c in configs if isinstance(c, RunConfig)]
    refused = [c for c in configs if not isinstance(c, RunConfig)]
    assert sorted(variant_name(c) for c in ok) == ["dora", "lora", "pissa", "pissa,dora"]
    assert len(refused) == 2 and all("init" in exc.problems for _, exc in refused)


CATEGORIES = ("base_weights", "adapters", "gradients", "optimizer", "activations")


@pytest.mark.parametrize("quant, dropout, kw", [
    ("none", 0.0, dict(use_dora=True)), ("none", 0.05, dict(use_dora=True)), ("nf4", 0.05, dict(use_dora=True)),
    ("none", 0.05, dict(use_dora=True, adapter_dtype="bfloat16")), ("nf4", 0.05, dict(init="loftq")),
    ("none", 0.05, dict(init="pissa", use_rslora=True)), ("none", 0.0, dict(init="olora")),
], ids=lambda v: str(v))
def test_planner_exact_for_each_variant(quant, dropout, kw):
    """All five categories to the byte after one real AdamW step; DoRA's magnitudes are adapters (their
    names hold 'lora_') and its forward saves the identity, A·I, the norm and both results per layer."""
    from lorakit.memory import breakdown as memory
    from lorakit.memory.planner import plan_memory

    torch.manual_seed(0)
    pm = adapters.attach_lora(tiny(quant), 8, 16, dropout, QV, **kw)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, pm.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    pm.train()
    pm(**batch).loss.backward()
    opt.step()
    measured = memory.measure(pm, opt, batch)
    planned = plan_memory("tiny-llama", quant=quant, rank=8, batch_size=2, seq_len=32, device="cpu", dropout=dropout,
                          use_dora=kw.get("use_dora", False), adapter_dtype=kw.get("adapter_dtype", "float32"))
    assert {c: getattr(planned, c) for c in CATEGORIES} == {c: getattr(measured, c) for c in CATEGORIES}
    if kw.get("use_dora") and "adapter_dtype" not in kw:  # fp32: 4 bytes x (r·(d_in + d_out) + d_out) per layer
        assert measured.adapters == 4 * adapters.expected_lora_params(tiny(), list(QV), 8, use_dora=True)


def test_compare_has_a_variant_column():
    from lorakit.run.record import RunRecord

    runs = [RunRecord(config=RunConfig(model="tiny-llama", **kw), created_at=0.0, device="cpu")
            for kw in (dict(), dict(use_dora=True), dict(quant="nf4", init="loftq"), dict(method="full"))]
    df = lorakit.compare(runs)
    assert list(df["variant"]) == ["lora", "dora", "loftq", "full"]
    assert list(df["label"])[1:3] == ["tiny-llama · lora-r8-dora", "tiny-llama · qlora-nf4-r8-loftq"]


def test_cli_flags_come_from_the_new_fields():
    from lorakit.cli.commands import _config_kwargs, build_parser

    ns = build_parser().parse_args(["sweep", "--use-dora", "false", "true", "--init", "default", "pissa",
                                    "--loraplus-lr-ratio", "0", "16"])
    assert _config_kwargs(ns) == {"use_dora": [False, True], "init": ["default", "pissa"],
                                  "loraplus_lr_ratio": [0.0, 16.0]}
    ns = build_parser().parse_args(["train", "--use-rslora", "--init", "loftq", "--quant", "nf4", "--loftq-iter", "2"])
    assert RunConfig(**_config_kwargs(ns)).label == "qlora-nf4-r8-loftq,rslora"


@pytest.mark.e2e
def test_smollm2_dora_count_and_loftq_error():
    """SmolLM2, r=8 on q,v: DoRA adds 30 x (576 + 192) magnitudes to LoRA's 460,800; LoftQ's init error is
    below QLoRA's on each of its 60 adapted layers."""
    def load(quant="none"):
        return lorakit.load_model("smollm2-135m", quant=quant, device="cpu").model

    dora = adapters.attach_lora(load(), 8, 16, 0.05, QV, use_dora=True)
    assert adapters.count_params(dora)[0] == 460_800 + 30 * (576 + 192) == 483_840
    torch.manual_seed(0)
    plain = variants.init_errors(adapters.attach_lora(load("nf4"), 8, 16, 0.05, QV))
    loftq = variants.init_errors(adapters.attach_lora(load("nf4"), 8, 16, 0.05, QV, init="loftq"))
    assert len(plain) == 60 and all(loftq[k] < plain[k] for k in plain)


# --- other families: GPT-2's Conv1D layout, a BERT checkpoint without the task model's prefix -----------

@pytest.mark.parametrize("model, targets", [("tiny-gpt2", "qv"), ("minilm-l6", "qv")])
def test_loftq_reads_each_familys_originals_and_lowers_the_error(model, targets):
    labels = ("a", "b") if model == "minilm-l6" else None  # a classifier needs its labels
    loaded = lambda: lorakit.load_model(model, quant="nf4", device="cpu", labels=labels).model  # noqa: E731
    task = "SEQ_CLS" if labels else "CAUSAL_LM"
    torch.manual_seed(0)
    plain = variants.init_errors(adapters.attach_lora(loaded(), 4, 8, 0.0, targets, task_type=task))
    loftq = variants.init_errors(adapters.attach_lora(loaded(), 4, 8, 0.0, targets, task_type=task, init="loftq"))
    assert plain and plain.keys() == loftq.keys()
    assert all(loftq[k] < plain[k] for k in plain), (plain, loftq)


def test_olora_is_refused_on_gpt2s_conv1d_layers():
    with pytest.raises(ConfigError) as info:
        RunConfig(model="tiny-gpt2", init="olora")
    assert "Conv1D" in info.value.problems["init"] and "'pissa'" in info.value.problems["init"]
    model = lorakit.load_model("tiny-gpt2", device="cpu").model  # a local GPT-2 directory is caught on attach
    with pytest.raises(ConfigError, match="Conv1D"):
        adapters.attach_lora(model, 4, 8, 0.0, "qv", init="olora")
