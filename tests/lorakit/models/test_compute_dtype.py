"""dtype="auto": bf16 only where this machine's measured bf16 matmul is much faster; recorded and planned."""
import json

import pytest

import lorakit
from lorakit.config.run_config import ConfigError, RunConfig
from lorakit.models import compute_dtype as C


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """The capability probe with its measurement stubbed: a CPU with (or without) bf16 units, on a fresh cache."""
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))
    C.cpu_bf16_speedup.cache_clear()
    calls = []

    def stub(speedup):
        def measure():
            calls.append(speedup)
            return {"float32": 100.0, "bfloat16": 100.0 * speedup, "speedup": speedup}
        monkeypatch.setattr(C, "measure", measure)
        C.cpu_bf16_speedup.cache_clear()
        return calls

    yield stub
    C.cpu_bf16_speedup.cache_clear()


@pytest.mark.parametrize("speedup,want", [(4.4, "bfloat16"), (1.2, "float32"), (0.01, "float32")])
def test_auto_follows_the_measured_bf16_speedup_on_cpu(probe, speedup, want):
    probe(speedup)
    assert C.resolve("auto", "cpu") == want
    assert C.resolve("float32", "cpu") == "float32" and C.resolve("bfloat16", "cpu") == "bfloat16"
    plan = lorakit.plan_memory("tiny-llama", device="cpu")  # the planner plans what the run will use
    assert plan.assumes["dtype"] == want and not plan.assumes["dtype_given"]


def test_measured_once_per_machine_then_read_from_the_cache(probe, tmp_path):
    calls = probe(4.4)
    assert C.resolve("auto", "cpu") == "bfloat16"
    C.cpu_bf16_speedup.cache_clear()  # a new process: the file answers
    assert C.resolve("auto", "cpu") == "bfloat16"
    assert calls == [4.4]
    saved = json.loads((tmp_path / "capability.json").read_text())
    assert [v["speedup"] for v in saved.values()] == [4.4]


def test_the_run_records_the_resolved_dtype(probe):
    probe(4.4)
    cfg = RunConfig(model="tiny-llama", dtype="auto", max_steps=2, batch_size=2, train_examples=8, eval_examples=2)
    rec = lorakit.train(cfg, store=False)
    assert rec.status == "finished", rec.reason
    assert rec.config.dtype == "bfloat16"
    assert next(p for p in rec.history if p.get("loss") is not None)


def test_auto_is_a_choice_and_others_are_refused():
    # float32 stays the default until bf16's quality is measured on a CPU with bf16 units (issue 30)
    assert RunConfig().dtype == "float32" and RunConfig(dtype="auto").dtype == "auto"
    with pytest.raises(ConfigError) as err:
        RunConfig(dtype="fp64")
    assert "dtype" in str(err.value) and "'auto'" in str(err.value)


def test_auto_on_cuda_is_bf16_unless_the_gpu_lacks_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert C.resolve("auto", "cuda") == want
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # planning for a GPU from a CPU machine
    assert C.resolve("auto", "cuda") == "bfloat16"
