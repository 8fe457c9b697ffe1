"""Events: the one-line error text every sink shows."""
from lorakit.config.run_config import ConfigError
from lorakit.run.events import error_line


def test_a_config_error_gives_its_problems_not_its_header():
    exc = ConfigError({"model": "the activation formula covers LLaMA-family configs", "rank": "rank must be >= 1"})
    assert error_line(exc) == "model: the activation formula covers LLaMA-family configs; rank: rank must be >= 1"


def test_any_other_error_gives_its_type_and_first_line():
    assert error_line(ValueError("cannot read this config\nsecond line")) == "ValueError: cannot read this config"
    assert error_line(KeyError()) == "KeyError"


def test_emit_reaches_every_sink_and_a_failing_one_is_kept_or_logged(caplog):
    import logging

    from lorakit.run.events import RunFinished, emit

    seen, errors = [], []

    def broken(event):
        raise RuntimeError("closed")

    event = RunFinished("r1", "finished", None)
    emit([broken, seen.append], event, errors=errors)
    assert seen == [event] and [str(e) for e in errors] == ["closed"]  # kept, and the next sink still ran
    caplog.set_level(logging.ERROR, logger="lorakit")
    emit([broken, seen.append], event)
    assert len(seen) == 2 and any("failed on RunFinished" in r.getMessage() for r in caplog.records)


def test_import_lorakit_quiets_bitsandbytes_optional_kernel_lookup_and_nothing_else():
    """bitsandbytes logs 'Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels'
    while it is imported (CPUs with AVX512-BF16); peft can import it before any lorakit call: quiet from import on."""
    import subprocess
    import sys

    code = ("import logging, lorakit\n"
            "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('Failed to load CPU gemm_4bit_forward from "
            "kernels-community: offline. Please make sure you already `pip install kernels`')\n"
            "logging.getLogger('bitsandbytes.backends.cpu.ops').error('a real error')\n"
            "logging.getLogger('bitsandbytes.other').warning('another bitsandbytes warning')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "gemm_4bit_forward" not in out.stderr and "pip install kernels" not in out.stderr
    assert "a real error" in out.stderr and "another bitsandbytes warning" in out.stderr  # narrow
