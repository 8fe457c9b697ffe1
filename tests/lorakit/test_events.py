"""Events: the one-line error text every sink shows."""
from lorakit.config import ConfigError
from lorakit.events import error_line


def test_a_config_error_gives_its_problems_not_its_header():
    exc = ConfigError({"model": "the activation formula covers LLaMA-family configs", "rank": "rank must be >= 1"})
    assert error_line(exc) == "model: the activation formula covers LLaMA-family configs; rank: rank must be >= 1"


def test_any_other_error_gives_its_type_and_first_line():
    assert error_line(ValueError("cannot read this config\nsecond line")) == "ValueError: cannot read this config"
    assert error_line(KeyError()) == "KeyError"
