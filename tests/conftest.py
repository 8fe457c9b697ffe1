"""Shared test setup: a model cache of its own unless LORAKIT_HOME is already set; with
``LORAKIT_EMULATE_AVX512BF16=1``, bitsandbytes behaves as on a CPU with AVX512-BF16 (tests/support/bf16_cpu.py)."""
import os

import pytest


def pytest_configure(config):
    if os.environ.get("LORAKIT_EMULATE_AVX512BF16") == "1":
        import bf16_cpu

        bf16_cpu.install()


@pytest.fixture(scope="session", autouse=True)
def lorakit_home():
    """Point LORAKIT_HOME at /tmp/lkhome-tests for the session unless the caller set it."""
    previous = os.environ.get("LORAKIT_HOME")
    if not previous:
        os.environ["LORAKIT_HOME"] = "/tmp/lkhome-tests"
    yield os.environ["LORAKIT_HOME"]
    if not previous:
        os.environ.pop("LORAKIT_HOME", None)


@pytest.fixture
def disk_full_on_adapter_save(monkeypatch):
    """peft's adapter save writes a first block, then the disk is full (ENOSPC)."""
    import errno

    import peft.peft_model

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(peft.peft_model, "safe_save_file", full)
