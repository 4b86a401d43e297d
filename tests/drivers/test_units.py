"""Chip-native unit converters."""

from __future__ import annotations

import numpy as np

from delgrad.drivers._units import (
    code_to_weight,
    delay_us_to_refractory_cycles,
    model_to_us,
    quantise_delay_us,
    refractory_cycles_to_delay_us,
    split_signed_codes,
    us_to_model,
    weight_to_code,
)


def test_time_conversions_invert():
    t = np.array([0.0, 1.5, np.inf])
    np.testing.assert_array_equal(model_to_us(t, 6.0), [0.0, 9.0, np.inf])
    np.testing.assert_array_equal(us_to_model(model_to_us(t, 6.0), 6.0), t)


def test_weight_codes():
    codes, clipped = weight_to_code(np.array([0.0, 0.4, -0.4, 2.2, -5.0, 2.1]), 30.0, 63)
    np.testing.assert_array_equal(codes, [0, 12, -12, 63, -63, 63])
    assert clipped == 2 and codes.dtype == np.int64
    np.testing.assert_array_equal(code_to_weight(codes, 30.0), codes / 30.0)
    exc, inh = split_signed_codes(codes)
    np.testing.assert_array_equal(exc, [0, 12, 0, 63, 0, 63])
    np.testing.assert_array_equal(inh, [0, 0, 12, 0, 63, 0])


def test_refractory_cycles_of_delays():
    cycles, clipped = delay_us_to_refractory_cycles(np.array([12.0, 8.25, 33.25, 5.0, 40.0, 12.06]))
    np.testing.assert_array_equal(cycles, [80, 50, 250, 50, 250, 80])
    assert clipped == 2
    np.testing.assert_array_equal(refractory_cycles_to_delay_us(cycles[:3]), [12.0, 8.25, 33.25])


def test_delay_quantisation_grid():
    d, clipped = quantise_delay_us(np.array([8.0, 8.3, 12.06, 34.0]), 8.25, 33.25, 0.125)
    np.testing.assert_allclose(d, [8.25, 8.25, 12.0, 33.25])
    assert clipped == 2
    d, _ = quantise_delay_us(np.array([12.06]), 8.25, 33.25, 0.125, quantise=False)
    np.testing.assert_array_equal(d, [12.06])
