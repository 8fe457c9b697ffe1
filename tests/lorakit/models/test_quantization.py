import pytest
import torch

from lorakit.models.quantization import bnb_config, quantization_error


def test_bnb_configs():
    assert bnb_config("none") is None
    assert bnb_config("int8").load_in_8bit
    c = bnb_config("nf4", double_quant=True, dtype="bfloat16")
    assert c.load_in_4bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config("fp4", double_quant=False).bnb_4bit_quant_type == "fp4"


def test_nf4_beats_fp4_on_normal_weights_and_double_quant_saves_bytes():
    torch.manual_seed(0)
    w = torch.randn(256, 1024) * 0.02
    nf4 = quantization_error(w, "nf4")
    fp4 = quantization_error(w, "fp4")
    nf4_dq = quantization_error(w, "nf4", double_quant=True)
    int8 = quantization_error(w, "int8")
    assert nf4.rel_error < fp4.rel_error  # NF4 levels follow the normal distribution
    assert int8.rel_error < nf4.rel_error
    # 4 bits + one fp32 absmax per 64 values = 4.5 bits; double quant: ~4.127 bits
    assert nf4.bits_per_param == pytest.approx(4.5, abs=0.02)
    assert nf4_dq.bits_per_param < 4.2
    assert int8.bits_per_param == pytest.approx(8 + 32 / 1024, abs=0.01)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="'nf4', 'fp4' or 'int8'"):
        quantization_error(torch.ones(64, 64), "int4")


def test_install_hint_matches_the_pyproject_requirement():
    from pathlib import Path

    import tomllib

    from lorakit.models.quantization import BNB_REQUIREMENT

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    assert BNB_REQUIREMENT in pyproject["project"]["dependencies"]


def test_missing_bitsandbytes_names_the_install_command(monkeypatch):
    from lorakit.models import quantization as q

    monkeypatch.setattr(q, "bitsandbytes_available", lambda: False)
    with pytest.raises(q.QuantizationUnavailable, match=f"pip install '{q.BNB_REQUIREMENT}'"):
        q.check_quant_available("nf4", "cpu")
    q.check_quant_available("none", "cpu")  # no bitsandbytes needed


@pytest.mark.parametrize("quant", ["int8", "nf4", "fp4"])
def test_a_quant_mode_on_cuda_without_cuda_is_unavailable(quant, monkeypatch):
    from lorakit.models import quantization as q

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(q.QuantizationUnavailable) as err:
        q.check_quant_available(quant, "cuda")
    assert f"quant={quant!r} on device 'cuda': CUDA is not available" in str(err.value)
    assert "use device='cpu'" in str(err.value)  # what to do instead
    q.check_quant_available(quant, "cpu")


@pytest.mark.parametrize("quant,dtype,field", [("int4", "float32", "quant"), ("nf4", "fp16", "dtype")])
def test_unknown_quant_or_dtype_is_refused_naming_the_field(quant, dtype, field):
    from lorakit.models.quantization import check_quant_dtype

    with pytest.raises(ValueError) as err:  # a ConfigError
        check_quant_dtype(quant, dtype)
    assert list(err.value.problems) == [field] and " must be one of " in err.value.problems[field]
    check_quant_dtype("fp4", "bfloat16")
