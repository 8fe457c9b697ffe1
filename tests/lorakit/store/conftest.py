import pytest

from lorakit.store import RunStore


@pytest.fixture
def store(tmp_path):
    """A fresh store in ``tmp_path / 'runs.db'``, closed after the test."""
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()
