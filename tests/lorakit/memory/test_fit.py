"""lorakit.fits: the planned peak against a device's memory, and the largest batch and sequence that fit."""
import pytest

import lorakit
from lorakit.config.run_config import ConfigError
from lorakit.memory.fit import GIB, THIS_MACHINE, accelerators, fits
from lorakit.memory.planner import plan_memory


def test_the_accelerator_table_is_data_and_covers_the_common_sizes():
    sizes = sorted(v // GIB for v in accelerators().values())
    assert sizes == [8, 12, 16, 24, 40, 48, 80]


def test_every_device_gets_a_verdict_and_this_machine_is_planned_as_a_cpu():
    out = fits("llama-7b", quant="nf4")
    assert [f.device for f in out][-1] == THIS_MACHINE and len(out) == len(accelerators()) + 1
    assert out[-1].target == "cpu" and all(f.target == "cuda" for f in out[:-1])
    gpu_need = plan_memory("llama-7b", quant="nf4", device="cuda").device_total
    assert all(f.need == gpu_need for f in out[:-1])
    assert [f.fits for f in out[:-1]] == [gpu_need <= f.capacity for f in out[:-1]]


def test_the_verdict_flips_exactly_at_the_largest_batch_size():
    (fit,) = fits("llama-7b", devices=["24GB"], quant="nf4", seq_len=512)
    b = fit.max_batch_size
    assert b >= 1
    need = lambda batch: plan_memory("llama-7b", quant="nf4", seq_len=512, batch_size=batch,  # noqa: E731
                                     device="cuda").device_total
    assert need(b) <= fit.capacity < need(b + 1)
    s = fit.max_seq_len
    need_s = lambda seq: plan_memory("llama-7b", quant="nf4", seq_len=seq, device="cuda").device_total  # noqa: E731
    assert need_s(s) <= fit.capacity < need_s(s + 1)


def test_sizes_in_gib_and_a_device_too_small_for_one_sequence():
    big, tiny = fits("llama-7b", devices=[80, 1], method="full")
    assert big.device == "80 GiB" and big.capacity == 80 * GIB
    assert not tiny.fits and tiny.max_batch_size == 0 and tiny.max_seq_len == 0


@pytest.mark.parametrize("devices", [["99GB"], [-1], [0], [True], ["4"], [None]])
def test_nonsense_devices_are_refused_naming_the_field(devices):
    with pytest.raises(ConfigError) as e:
        fits("llama-7b", devices=devices)
    assert list(e.value.problems) == ["devices"] and "accelerators.json" in e.value.problems["devices"]


def test_plan_problems_are_reported_with_their_fields():
    with pytest.raises(ConfigError) as e:
        fits("llama-7b", devices=["24GB"], rank=0, quant="int3")
    assert {"rank", "quant"} <= set(e.value.problems)
    with pytest.raises(ConfigError) as e:
        fits("llama-7b", device="cuda")
    assert "device" in e.value.problems
    assert lorakit.fits is fits


def test_fits_gives_each_gpu_an_estimated_time_per_step_and_the_run_cost():
    from lorakit.memory.fit import speeds

    out = fits("tiny-llama", devices=["24GB", "80GB", THIS_MACHINE], price_per_hour=2.0, steps=10)
    a10, a100, here = out
    assert a10.card == speeds()[a10.device]["card"] == "A10" and a10.efficiency == 0.4
    assert 0 < a100.step_s < a10.step_s  # more throughput and bandwidth, less time
    assert a10.run_s == pytest.approx(10 * a10.step_s) and a10.cost == pytest.approx(2.0 * a10.run_s / 3600)
    assert here.step_s is None and here.cost is None  # this machine: plan_time's calibration, not a datasheet
    slower = fits("tiny-llama", devices="24GB", efficiency=0.2)[0]
    assert slower.step_s > a10.step_s and slower.cost is None
    big = fits("tiny-llama", devices="24GB", batch_size=64, seq_len=512)[0]
    assert big.step_s > 10 * a10.step_s
    with pytest.raises(ConfigError, match="price_per_hour"):
        fits("tiny-llama", devices="24GB", price_per_hour=-1)
