"""tools/bench_drivers.py runs and reports both modes (speed itself is not asserted)."""

from __future__ import annotations

import pytest

from delgrad.tools.bench_drivers import bench_drivers


@pytest.mark.slow
def test_bench_drivers_reports_both_modes_and_batches():
    result = bench_drivers(repeats=1)
    assert set(result) == {"ideal", "bss2"}
    for figures in result.values():
        assert set(figures) == {"batch_40_per_s", "batch_1000_per_s"}
        assert all(v > 0 for v in figures.values())
