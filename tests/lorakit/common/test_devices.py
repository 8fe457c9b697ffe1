"""matmul_gflops: the speed figure notebooks pick their compute dtype from."""
import itertools
import time

import pytest

from lorakit.common.devices import matmul_gflops


def test_gflops_counts_two_flops_per_multiply_add_over_the_timed_calls(monkeypatch):
    clock = itertools.count(0.0, 0.1)  # every reading advances 0.1 s: 3 timed calls reach 0.3 s >= 0.25 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    gflops = matmul_gflops("float32", size=(8, 16, 32), min_seconds=0.25)
    assert gflops == pytest.approx(2 * 8 * 16 * 32 * 3 / 0.3 / 1e9)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gflops_is_a_real_measurement_in_each_dtype(dtype):
    assert matmul_gflops(dtype, size=(64, 64, 64), min_seconds=0.01) > 0
