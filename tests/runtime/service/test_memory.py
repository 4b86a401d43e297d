"""The service's glibc mmap threshold follows the network (issue 24): a learning
step's temporaries of its parameter arrays' size come from the heap, while a
maximum-size message (16 MiB) is still mapped and returned (issue 10, case 6)."""

from __future__ import annotations

import pytest

from delgrad.runtime.service._memory import (
    MAX_MMAP_THRESHOLD_BYTES,
    MIN_MMAP_THRESHOLD_BYTES,
    mmap_threshold,
)

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((4, 30), MIN_MMAP_THRESHOLD_BYTES),  # Yin-Yang: the floor
        ((784, 350), 2 * 784 * 350 * 8),  # 2.2 MB weights: twice that, 4.4 MB
        ((2312, 400), 2 * 2312 * 400 * 8),  # 7.4 MB weights: twice that
        ((10_000, 1_000), MAX_MMAP_THRESHOLD_BYTES),  # 80 MB: glibc's ceiling
    ],
)
def test_threshold_is_twice_the_largest_weight_array_within_bounds(
    shape: tuple[int, int], expected: int
) -> None:
    got = mmap_threshold(shape[0] * shape[1] * 8)
    assert got == expected
    assert MIN_MMAP_THRESHOLD_BYTES <= got <= MAX_MMAP_THRESHOLD_BYTES


def test_a_maximum_size_message_stays_mapped_for_sensor_sized_networks() -> None:
    # 784-350-10 and 2312-400-10: a 16 MiB payload is above the threshold
    for weights in (784 * 350 * 8, 2312 * 400 * 8):
        assert mmap_threshold(weights) < 16 * MIB
