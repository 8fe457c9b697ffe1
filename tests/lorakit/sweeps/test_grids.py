"""sweep(): its executor argument and flags, without starting Ray (test_sweep_ray.py runs a real one)."""
from __future__ import annotations

import sys

import pytest

import lorakit
from lorakit.cli import commands as cli
from lorakit.config.run_config import ConfigError
from lorakit.run.events import StepLogged
from lorakit.sweeps import ray_trials as sweep_ray

BASE = lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", max_steps=2, batch_size=2, train_examples=8,
                         eval_examples=1)


def test_without_ray_the_error_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError) as exc:
        lorakit.sweep(BASE, store=False, executor="ray", rank=[2, 4])
    assert 'pip install "lorakit[ray]"' in str(exc.value)


def test_executor_and_its_arguments_are_checked():
    with pytest.raises(ConfigError, match="executor"):
        lorakit.sweep(BASE, store=False, executor="slurm", rank=[2, 4])
    with pytest.raises(ConfigError, match="executor=\"ray\""):
        lorakit.sweep(BASE, store=False, address="auto", rank=[2, 4])


class FakeRay:
    def __init__(self, gpus):
        self.gpus = gpus

    def cluster_resources(self):
        return {"CPU": 8.0, "GPU": float(self.gpus)}


def test_resources_per_trial_become_ray_task_options():
    assert sweep_ray.trial_options(FakeRay(0), None) == {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    assert sweep_ray.trial_options(FakeRay(4), None)["num_gpus"] == 1  # a GPU cluster trains on its GPUs
    opts = sweep_ray.trial_options(FakeRay(4), {"cpu": 2, "GPU": 0.5, "accelerator_type:H100": 0.01})
    assert opts == {"num_cpus": 2, "num_gpus": 0.5, "resources": {"accelerator_type:H100": 0.01}, "max_retries": 0}
    with pytest.raises(ConfigError, match="resources_per_trial"):
        sweep_ray.trial_options(FakeRay(0), {"gpu": "all"})


def test_the_command_passes_executor_address_and_resources(monkeypatch):
    seen = {}

    def fake_sweep(base, **kw):
        seen.update(kw)
        return lorakit.compare([])

    monkeypatch.setattr(sys.modules["lorakit.sweeps.grids"], "sweep", fake_sweep)  # the module, not lorakit.sweep()
    cli.main(["sweep", "--model", "tiny-llama", "--rank", "4", "16", "--executor", "ray", "--address", "auto",
              "--trial-gpus", "0.5"])
    assert seen["executor"] == "ray" and seen["address"] == "auto"
    assert seen["resources_per_trial"] == {"gpu": 0.5} and seen["rank"] == [4, 16]


def test_ctrl_c_in_a_local_sweep_ends_the_sweep(tmp_path):
    def ctrl_c(event):
        if isinstance(event, StepLogged):
            raise KeyboardInterrupt

    table = lorakit.sweep(BASE, store=tmp_path / "runs.db", sinks=[ctrl_c], rank=[2, 4])
    assert list(table["status"]) == ["stopped"]  # the second trial never started
