"""Tests of the event layout conversions (CSR, padded NIR layout, first-spike inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad.errors import ParameterError
from delgrad.runtime._events import (
    csr_to_padded,
    first_spike_inputs,
    inputs_to_events,
    padded_to_csr,
)


def _slow_first_spikes(offsets, channels, times, n_inputs, scale):
    """Per-event Python loop, independent of the implementation."""
    n_trials = len(offsets) - 1
    out = [[math.inf] * n_inputs for _ in range(n_trials)]
    ignored = 0
    for i in range(n_trials):
        for e in range(offsets[i], offsets[i + 1]):
            c, t = int(channels[e]), float(times[e])
            if not (0 <= c < n_inputs) or not math.isfinite(t) or t < 0:
                ignored += 1
                continue
            out[i][c] = min(out[i][c], t * scale)
    return np.array(out, dtype=np.float64).reshape(n_trials, n_inputs), ignored


def _random_csr(rng, n_trials, n_inputs, max_events, *, bad=True):
    counts = rng.integers(0, max_events + 1, n_trials)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    e = int(offsets[-1])
    lo = -2 if bad else 0
    hi = n_inputs + 2 if bad else n_inputs
    channels = rng.integers(lo, hi, e)
    times = rng.uniform(-0.5 if bad else 0.0, 5.0, e)
    if bad and e:
        times[rng.random(e) < 0.05] = np.nan
        times[rng.random(e) < 0.05] = np.inf
    return offsets, channels, times


# ------------------------------------------------------------ first_spike_inputs


@pytest.mark.parametrize("scale", [1.0, 1 / 6])
def test_first_spikes_match_slow_loop(scale):
    rng = np.random.default_rng(1)
    offsets, ch, t = _random_csr(rng, 50, 5, 12)
    res = first_spike_inputs(offsets, ch, t, 5, time_scale=scale)
    ref, ref_ignored = _slow_first_spikes(offsets, ch, t, 5, scale)
    assert res.t_in.shape == (50, 5) and res.t_in.dtype == np.float64
    np.testing.assert_allclose(res.t_in, ref, rtol=1e-15)
    assert res.ignored == ref_ignored > 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_trials=st.integers(0, 6),
    n_inputs=st.integers(1, 4),
    max_events=st.integers(0, 8),
)
def test_first_spikes_property(seed, n_trials, n_inputs, max_events):
    rng = np.random.default_rng(seed)
    offsets, ch, t = _random_csr(rng, n_trials, n_inputs, max_events)
    t_in, ignored = first_spike_inputs(offsets, ch, t, n_inputs)
    ref, ref_ignored = _slow_first_spikes(offsets, ch, t, n_inputs, 1.0)
    np.testing.assert_array_equal(t_in, ref)
    assert ignored == ref_ignored


def test_first_spikes_edge_cases():
    # No trials at all.
    res = first_spike_inputs([0], np.zeros(0, np.int64), np.zeros(0), 3)
    assert res.t_in.shape == (0, 3) and res.ignored == 0
    # Trials without events are all silent.
    res = first_spike_inputs([0, 0, 0], [], [], 2)
    assert np.all(np.isinf(res.t_in)) and res.t_in.shape == (2, 2)
    # All events in one channel: the earliest wins, zero time is valid.
    res = first_spike_inputs([0, 4], [1, 1, 1, 1], [3.0, 0.0, 2.0, 1.0], 2)
    np.testing.assert_array_equal(res.t_in, [[np.inf, 0.0]])
    # uint32 channels as they come off the wire; a huge channel is ignored.
    res = first_spike_inputs(
        np.array([0, 2], np.int64), np.array([0, 2**32 - 1], np.uint32), [1.0, 1.0], 2
    )
    np.testing.assert_array_equal(res.t_in, [[1.0, np.inf]])
    assert res.ignored == 1
    # float32 times.
    res = first_spike_inputs([0, 1], [0], np.array([6.0], np.float32), 1, time_scale=1 / 6)
    assert res.t_in.dtype == np.float64 and res.t_in[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "offsets",
    [[], [1, 2], [0, 3, 2], [0, 1], [0, 5], [[0, 2]]],
)
def test_first_spikes_rejects_bad_offsets(offsets):
    with pytest.raises(ParameterError):
        first_spike_inputs(offsets, [0, 1], [0.0, 1.0], 2)


def test_first_spikes_rejects_bad_arguments():
    with pytest.raises(ParameterError):
        first_spike_inputs([0, 2], [0, 1], [0.0], 2)  # lengths differ
    with pytest.raises(ParameterError):
        first_spike_inputs([0, 1], [0.5], [0.0], 2)  # float channels
    with pytest.raises(ParameterError):
        first_spike_inputs([0, 1], [0], [0.0], 0)
    for scale in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ParameterError):
            first_spike_inputs([0, 1], [0], [0.0], 1, time_scale=scale)
    assert issubclass(ParameterError, ValueError)


# ------------------------------------------------------------ inputs_to_events


def test_inputs_to_events_orders_by_time_and_inverts_first_spikes():
    t_in = np.array([[2.0, np.inf, 0.5, 0.5], [np.inf] * 4, [0.0, 1.0, np.nan, 3.0]])
    offsets, ch, t = inputs_to_events(t_in)
    np.testing.assert_array_equal(offsets, [0, 3, 3, 6])
    np.testing.assert_array_equal(ch, [2, 3, 0, 0, 1, 3])  # time order, ties by channel
    np.testing.assert_array_equal(t, [0.5, 0.5, 2.0, 0.0, 1.0, 3.0])
    back = first_spike_inputs(offsets, ch, t, 4).t_in
    np.testing.assert_array_equal(back, np.where(np.isnan(t_in), np.inf, t_in))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_trials=st.integers(0, 5), n_inputs=st.integers(1, 5))
def test_inputs_events_round_trip(seed, n_trials, n_inputs):
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0, 3, (n_trials, n_inputs))
    t_in[rng.random(t_in.shape) < 0.3] = np.inf
    offsets, ch, t = inputs_to_events(t_in, time_scale=6.0)
    for i in range(n_trials):
        seg = t[offsets[i] : offsets[i + 1]]
        assert np.all(np.diff(seg) >= 0)
    back = first_spike_inputs(offsets, ch, t, n_inputs, time_scale=1 / 6).t_in
    np.testing.assert_allclose(back, t_in, rtol=1e-14)


def test_inputs_to_events_rejects_negative_and_bad_shape():
    with pytest.raises(ParameterError):
        inputs_to_events([[0.0, -1.0]])
    with pytest.raises(ParameterError):
        inputs_to_events([0.0, 1.0])


# ------------------------------------------------------------ padded <-> CSR


def test_padded_to_csr_skips_padding_and_keeps_order():
    ch = np.array([[3, -1, 0, -1], [-1, -1, -1, -1], [1, 2, 5, 0]])
    t = np.array([[0.5, np.inf, 0.1, np.inf], [np.inf] * 4, [1.0, np.inf, 2.0, 0.0]])
    offsets, c, tt = padded_to_csr(ch, t)
    np.testing.assert_array_equal(offsets, [0, 2, 2, 5])
    np.testing.assert_array_equal(c, [3, 0, 1, 5, 0])  # (2, inf) is padding
    np.testing.assert_array_equal(tt, [0.5, 0.1, 1.0, 2.0, 0.0])


def test_csr_to_padded_layout_and_width():
    ch_p, t_p = csr_to_padded([0, 2, 2, 3], [4, 1, 0], np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_array_equal(ch_p, [[4, 1], [-1, -1], [0, -1]])
    assert t_p.dtype == np.float32
    np.testing.assert_array_equal(t_p, [[1.0, 2.0], [np.inf, np.inf], [3.0, np.inf]])
    ch_p, _ = csr_to_padded([0, 1], [0], [1.0], n_slots=3)
    assert ch_p.shape == (1, 3)
    with pytest.raises(ParameterError):
        csr_to_padded([0, 2], [0, 1], [1.0, 2.0], n_slots=1)
    with pytest.raises(ParameterError):
        csr_to_padded([0, 1], [-1], [1.0])
    ch_p, t_p = csr_to_padded([0], [], [])
    assert ch_p.shape == (0, 0) and t_p.shape == (0, 0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_trials=st.integers(0, 6),
    max_events=st.integers(0, 7),
)
def test_padded_csr_round_trip(seed, n_trials, max_events):
    rng = np.random.default_rng(seed)
    offsets, ch, t = _random_csr(rng, n_trials, 4, max_events, bad=False)
    padded = csr_to_padded(offsets, ch, t)
    back = padded_to_csr(*padded)
    np.testing.assert_array_equal(back.offsets, offsets)
    np.testing.assert_array_equal(back.channels, ch)
    np.testing.assert_array_equal(back.times, t)
    # And the other way round for left-aligned padded data.
    again = csr_to_padded(*back, n_slots=padded.channels.shape[1])
    np.testing.assert_array_equal(again.channels, padded.channels)
    np.testing.assert_array_equal(again.times, padded.times)


def test_padded_to_csr_rejects_mismatched_shapes():
    with pytest.raises(ParameterError):
        padded_to_csr(np.zeros((2, 3), int), np.zeros((2, 2)))
    with pytest.raises(ParameterError):
        padded_to_csr(np.zeros(3, int), np.zeros(3))
