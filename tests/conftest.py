"""Shared test setup: a model cache of its own unless LORAKIT_HOME is already set."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def lorakit_home():
    """Point LORAKIT_HOME at /tmp/lkhome-tests for the session unless the caller set it."""
    previous = os.environ.get("LORAKIT_HOME")
    if not previous:
        os.environ["LORAKIT_HOME"] = "/tmp/lkhome-tests"
    yield os.environ["LORAKIT_HOME"]
    if not previous:
        os.environ.pop("LORAKIT_HOME", None)
