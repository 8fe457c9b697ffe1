"""Settings as typed parts (``lorakit.config.parts``): one conversion from a RunConfig (or plan_memory's keywords)
to the base, adapter and step-shape parts the engine takes; the repeated checks in one place each."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import lorakit
from lorakit.config import parts
from lorakit.config.run_config import RunConfig
from lorakit.memory.fit import fits
from lorakit.memory.planner import (
    config_settings,
    plan_for_batch,
    plan_for_config,
    plan_for_steps,
    plan_memory,
    planning,
    settings_of,
)

ROOT = Path(lorakit.__file__).parent
DEVICES = [1, 24]  # GiB, planned as CUDA runs (the free RAM of "this machine" moves between calls)

CONFIGS = [
    dict(model="tiny-llama"),
    dict(model="tiny-llama", quant="nf4", use_dora=True, rank=4, target_modules="all-linear",
         gradient_checkpointing=True, optimizer="adamw_8bit", double_quant=False, dropout=0.0),
    dict(model="tiny-llama", method="full", batch_size=2, seq_len=48),
    dict(model="tiny-llama", adapter_dtype="bfloat16", dtype="bfloat16", labelled_head=False, quant="int8"),
    dict(model="tiny-gpt2", rank=16, target_modules="attention"),
    dict(model="minilm-l6", dataset="topic"),  # a classifier: the built-in task's 4 labels
]


# --- the three former converters, verbatim from before the parts (for the "identical plans" checks) -------------
def _old_config_args(cfg, num_labels=None) -> dict:  # planner._config_args
    from lorakit.memory.planner import _task_labels

    return dict(method=cfg.method, quant=cfg.quant, double_quant=cfg.double_quant, dtype=cfg.dtype, rank=cfg.rank,
                target_modules=cfg.target_modules, gradient_checkpointing=cfg.gradient_checkpointing,
                optimizer=cfg.optimizer, dropout=cfg.dropout, adapter_dtype=cfg.adapter_dtype, use_dora=cfg.use_dora,
                task=getattr(cfg, "task", ""), num_labels=num_labels or _task_labels(cfg))


_OLD_PLANNING_KEYWORDS = ("method", "quant", "double_quant", "dtype", "rank", "target_modules", "batch_size", "seq_len",
                          "gradient_checkpointing", "optimizer", "dropout", "adapter_dtype", "use_dora", "task")


def _old_plan_settings(cfg) -> dict:  # widgets/background._plan_settings: the fields in planning()'s signature
    return {name: getattr(cfg, name) for name in _OLD_PLANNING_KEYWORDS}


def _old_cli_settings(cfg) -> dict:  # cli.cmd_plan's settings
    return dict(method=cfg.method, quant=cfg.quant, double_quant=cfg.double_quant, dtype=cfg.dtype, rank=cfg.rank,
                target_modules=cfg.target_modules, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                gradient_checkpointing=cfg.gradient_checkpointing, optimizer=cfg.optimizer,
                adapter_dtype=cfg.adapter_dtype)


@pytest.mark.parametrize("values", CONFIGS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_each_former_path_gives_the_plan_it_gave(values):
    cfg = RunConfig(**values)
    labelled = cfg.batch_size * (cfg.seq_len - 1) if cfg.labelled_head else None
    # the Studio's plan and lorakit.train's (plan_for_config): through _config_args before
    before = plan_memory(cfg.model, **_old_config_args(cfg), batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                         device="cpu", labelled_tokens=labelled)
    assert plan_for_config(cfg, device="cpu") == before
    # the CLI's plan and its fit table: plan_memory / fits with the CLI's keywords, now settings_of once
    kw = _old_cli_settings(cfg)
    settings = settings_of(cfg.model, **kw)
    assert planning(settings, device="cpu").plan() == plan_memory(cfg.model, **kw, device="cpu")
    assert fits(settings, devices=DEVICES) == fits(cfg.model, devices=DEVICES, **kw)
    # the Studio's and the sweep panel's fit verdict: the RunConfig's parts, as plan_for_config plans them
    # (before, _plan_settings dropped the labelled-only head and a built-in task's labels)
    new_fit = fits(config_settings(cfg), devices=DEVICES)
    assert new_fit[0].need == plan_for_config(cfg, device="cuda").device_total  # the verdict is for the plan shown
    old_keywords = _old_plan_settings(cfg)
    assert new_fit == fits(cfg.model, devices=DEVICES, **old_keywords, labelled_head=cfg.labelled_head,
                           num_labels=_old_config_args(cfg)["num_labels"])
    if not cfg.labelled_head and cfg.model != "minilm-l6":
        assert new_fit == fits(cfg.model, devices=DEVICES, **old_keywords)  # the old path, exactly


def test_plan_for_steps_and_batches_plan_the_runconfig_parts():
    import torch

    cfg = RunConfig(model="tiny-llama", seq_len=24, batch_size=3)
    ids = torch.ones(3, 24, dtype=torch.long)
    labels = ids.clone()
    labels[:, :10] = -100
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    one = plan_for_batch(cfg, batch, device="cpu")
    assert one.assumes["loss_positions"] == 3 * 14  # positions 9..22 predict a labelled next token (10..23)
    assert plan_for_steps(cfg, [batch, batch], device="cpu").activations == one.activations
    assert plan_for_config(cfg, device="cpu", labelled_tokens=3 * 14) == one


def test_the_parts_carry_every_runconfig_field_the_planner_reads(monkeypatch):
    """Adding a field the planner needs: RunConfig, a part, the planner. The planner reads a RunConfig only
    through its parts (``settings``, the step shape's ``labelled_head``) and the dataset (a built-in task's
    label count, which becomes ``Base.num_labels``)."""
    import torch

    read: set = set()
    plain_get = RunConfig.__getattribute__
    names = {f.name for f in dataclasses.fields(RunConfig)}

    def spying(self, name):
        if name in names or name in ("settings", "base", "adapter", "shape"):
            read.add(name)
        return plain_get(self, name)

    cfg = RunConfig(model="tiny-llama", quant="nf4", use_dora=True, seq_len=16)
    ids = torch.ones(2, 16, dtype=torch.long)
    monkeypatch.setattr(RunConfig, "__getattribute__", spying)
    plan_for_config(cfg, device="cpu")
    plan_for_batch(cfg, dict(input_ids=ids, labels=ids), device="cpu")
    plan_for_steps(cfg, [dict(input_ids=ids, labels=ids)], device="cpu")
    fits(config_settings(cfg), devices=[24])
    monkeypatch.undo()
    assert read - {"settings", "shape", "dataset"} == set()
    covered = {name for fields in parts.PART_FIELDS.values() for name in fields} - {"num_labels"}
    assert covered <= names  # each part field is a RunConfig field of the same name: split() is the conversion
    settings = cfg.settings
    for part, fields in parts.PART_FIELDS.items():
        for name in fields:
            if name != "num_labels":
                assert getattr(getattr(settings, part), name) == getattr(cfg, name), (part, name)
    # every field plan_memory takes (but the model, num_labels, and the step's own) is in a part
    import inspect

    step_only = {"model", "device", "padded", "device_overhead", "labelled_tokens", "num_labels"}
    assert set(inspect.signature(plan_memory).parameters) - step_only <= covered


def test_parts_are_frozen_and_built_once_per_config():
    cfg = RunConfig(model="tiny-llama", quant="fp4")
    assert cfg.settings is cfg.settings and cfg.base is cfg.settings.base
    assert cfg.base.four_bit and cfg.base.quantized and not cfg.adapter.full
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.adapter.rank = 4
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert "settings" not in cfg.to_dict() and "_settings" not in cfg.to_dict()  # the stored JSON keeps its shape
    assert RunConfig(model="tiny-llama", quant="int8").base.four_bit is False


def test_settings_of_validates_once_and_names_every_field():
    with pytest.raises(lorakit.ConfigError) as err:
        settings_of("tiny-llama", rank=0, quant="int3", num_labels=1)
    assert set(err.value.problems) == {"rank", "quant", "num_labels"}
    with pytest.raises(TypeError, match="alpha"):
        settings_of("tiny-llama", alpha=4)  # not a planner keyword: the plan does not depend on it
    with pytest.raises(lorakit.ConfigError) as err:  # plan_memory: the fields and the model, all at once
        plan_memory("no-such-model", rank=0)
    assert set(err.value.problems) == {"rank", "model"}


def test_four_bit_positive_int_and_the_loaded_quantization_live_in_one_place():
    pattern = re.compile(r"""in \(["']nf4["'], ["']fp4["']\)|["']nf4["'], ["']fp4["']\)\s*:""")
    files = [*ROOT.rglob("*.py"), *(ROOT.parent / "widgets").rglob("*.py")]
    spelled = [str(p) for p in files if pattern.search(p.read_text()) and p.name != "parts.py"]
    assert spelled == []
    hand_rank = re.compile(r"""isinstance\([^)]*rank[^)]*, int\)|def _valid_rank""")
    assert [str(p) for p in files if hand_rank.search(p.read_text()) and p.name != "parts.py"] == []
    assert "quantization_config" not in (ROOT / "adapters" / "base_record.py").read_text()
    assert parts.four_bit("nf4") and parts.four_bit("fp4") and not parts.four_bit("int8")
    assert parts.positive_int(3) and not parts.positive_int(True) and not parts.positive_int(0)
    assert not parts.positive_int(2.0)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp4"])
def test_quant_of_reads_the_loaded_model(quant):
    from lorakit.adapters.base_record import describe_base
    from lorakit.adapters.lora import attach, attach_lora

    loaded = lorakit.load_model("tiny-llama", quant=quant, device="cpu")
    assert parts.quant_of(loaded.model) == quant
    peft_model = attach(loaded.model, parts.Adapter(rank=4, dropout=0.0))
    assert parts.quant_of(peft_model) == quant and describe_base(peft_model)["quant"] == quant
    again = attach_lora(lorakit.load_model("tiny-llama", quant=quant, device="cpu").model, rank=4, dropout=0.0)
    trained = lambda m: sorted((n, p.numel()) for n, p in m.named_parameters() if p.requires_grad)  # noqa: E731
    assert trained(again) == trained(peft_model)  # the keyword form builds the same adapter part
