"""Widget tests: tiny-llama runs on a small arithmetic task, each test with a run store of its own."""
from __future__ import annotations

import pytest

# arithmetic: the shortest built-in task, so each step is quick
TINY = dict(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2, train_examples=48,
            eval_examples=4, max_steps=6, learning_rate=1e-3)
WAIT = 600  # seconds; generous for a loaded 2-core CI machine (never an assertion on time)


@pytest.fixture
def tiny():
    """Studio keyword arguments for a quick tiny-llama run."""
    return dict(TINY)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "runs.db"


@pytest.fixture
def studio(store_path):
    from lorakit.widgets import Studio

    s = Studio(store=store_path, **TINY)
    assert s.wait(WAIT), "model load did not finish"
    yield s
    s.controller.stop() if s.controller.running else None
    s.wait(WAIT)
