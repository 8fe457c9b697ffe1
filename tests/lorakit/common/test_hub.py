"""The hub-reachability check that model and dataset downloads ask before they start."""
import socket

import pytest

from lorakit.common.hub import unreachable_reason


@pytest.fixture
def online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_an_offline_variable_is_the_reason(online):
    online.setenv("HF_HUB_OFFLINE", "1")
    assert unreachable_reason() == "HF_HUB_OFFLINE is set"
    online.setenv("HF_HUB_OFFLINE", "0")  # "0" means online, as in huggingface_hub
    online.setenv("HF_DATASETS_OFFLINE", "1")
    online.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert unreachable_reason("HF_DATASETS_OFFLINE") == "HF_DATASETS_OFFLINE is set"
    assert unreachable_reason().startswith("cannot reach 127.0.0.1:9")  # only the variables asked about


def test_the_endpoint_port_is_the_one_probed(online):
    with socket.create_server(("127.0.0.1", 0)) as server:  # listening: the handshake completes
        port = server.getsockname()[1]
        online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/mirror")
        assert unreachable_reason() is None
    reason = unreachable_reason()  # closed now: refused
    assert reason.startswith(f"cannot reach 127.0.0.1:{port} (")
