import pytest

import lorakit


@pytest.fixture(scope="session")
def tok():
    """tiny-llama's tokenizer (it has the SmolLM2 chat template)."""
    return lorakit.load_model("tiny-llama").tokenizer
