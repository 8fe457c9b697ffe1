"""Refused loads leave nothing behind: an adapter whose weights are a pickle (code, never run) or a damaged
tensor file is refused, and the base model object is exactly as it was; train() cleans every temporary
folder it makes."""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest

import lorakit
from lorakit.adapters import lora as adapters
from lorakit.adapters.base_record import AdapterError

# torch's weights-only unpickler notes the pickle's protocol while refusing it: that refusal is the point
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


def _shape(model) -> tuple:
    """What a load could change in the object: module types by name, parameter names and values' sum."""
    import torch

    with torch.no_grad():
        params = {n: float(p.double().sum()) for n, p in model.named_parameters()}
    return ({n: type(m).__name__ for n, m in model.named_modules()}, params, hasattr(model, "peft_config"))


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    lm = lorakit.load_model("tiny-llama", device="cpu")
    peft_model = adapters.attach_lora(lm.model, 4, 8, 0.0, ["q_proj", "v_proj"])
    out = tmp_path_factory.mktemp("adapter") / "a"
    adapters.save_adapter(peft_model, out, run_id="r", base="tiny-llama")
    return out


class _Payload:
    """A pickle that would create a file if anything unpickled it with code allowed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _damaged_copy(src: Path, dst: Path, how: str) -> Path:
    """A copy of the adapter whose weights are a pickle carrying code (``how`` names the damage)."""
    assert how == "pickle"
    shutil.copytree(src, dst)
    (dst / "adapter_model.safetensors").unlink()
    with open(dst / "adapter_model.bin", "wb") as f:
        pickle.dump({"base_model.model.x.lora_A.weight": _Payload(dst / "PWNED")}, f)
    return dst


def test_a_refused_adapter_leaves_the_model_exactly_as_it_was(saved_adapter, tmp_path):
    """peft injects the LoRA layers before it reads the weights; torch refuses the pickle (weights only)."""
    bad = _damaged_copy(saved_adapter, tmp_path / "bad", "pickle")
    model = lorakit.load_model("tiny-llama", device="cpu").model
    before = _shape(model)
    with pytest.raises(AdapterError, match="could not be loaded"):
        adapters.load_adapter(model, bad)
    assert _shape(model) == before
    assert not (bad / "PWNED").exists()  # the pickle's code never ran


def test_a_good_adapter_still_loads_after_a_refused_one(saved_adapter, tmp_path):
    model = lorakit.load_model("tiny-llama", device="cpu").model
    with pytest.raises(AdapterError):
        adapters.load_adapter(model, _damaged_copy(saved_adapter, tmp_path / "bad", "pickle"))
    peft_model = adapters.load_adapter(model, saved_adapter)
    assert sum("lora_A" in n for n, _ in peft_model.named_parameters()) == 2 * 2  # q, v in tiny-llama's 2 layers


def test_train_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """Every train() without an output folder made a 'lorakit-*' folder and left it: now none remains,
    for a finished run and for a failed one."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cfg = lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2,
                            train_examples=8, eval_examples=1, max_steps=1)
    rec = lorakit.train(cfg, store=False)
    assert rec.status == "finished", rec.reason
    bad = lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2,
                            train_examples=8, eval_examples=1, max_steps=1, learning_rate=1e9)
    lorakit.train(bad, store=False)  # whatever becomes of it, it ends
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("lorakit-")) == []
