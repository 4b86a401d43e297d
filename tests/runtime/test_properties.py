"""Invariants of the exact model, checked on random inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from delgrad.runtime import Layer, Network, NeuronParams, backward, forward

RATIOS = st.sampled_from([1.0, 2.0, 1.5, 0.5])
times_st = arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 5.0))


def single(t, w, tau_m, theta=1.0):
    net = Network([Layer(len(t), 1)], NeuronParams(tau_m=tau_m, theta=theta), [w[:, None]])
    t_in = t[None, :]
    times = forward(net, t_in)
    grads = backward(net, t_in, times, np.ones((1, 1)))
    return times[0][0, 0], grads


@settings(max_examples=300, deadline=None)
@given(times_st, st.data(), RATIOS)
def test_input_time_derivatives_sum_to_one(t, data, tau_m):
    w = data.draw(arrays(np.float64, t.shape, elements=st.floats(-2.0, 5.0)))
    spike, grads = single(t, w, tau_m)
    terms = grads.t_in[0]
    assert np.all(np.isfinite(terms))
    if np.isfinite(spike) and terms.any():
        assert abs(terms.sum() - 1.0) <= 1e-9 * max(1.0, np.abs(terms).sum())


@settings(max_examples=300, deadline=None)
@given(times_st, st.data(), RATIOS, st.floats(-50.0, 50.0))
def test_shifting_all_inputs_shifts_the_spike(t, data, tau_m, shift):
    w = data.draw(arrays(np.float64, t.shape, elements=st.floats(-2.0, 5.0)))
    base, _ = single(t, w, tau_m)
    moved, _ = single(t + shift, w, tau_m)
    if np.isinf(base):
        assert np.isinf(moved)
    else:
        assert abs(moved - (base + shift)) <= 1e-9 * (1.0 + abs(shift))


extreme = st.one_of(st.floats(-1e6, 1e6), st.just(np.inf), st.floats(-1e-300, 1e-300))


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 4),
    st.data(),
    RATIOS,
    st.floats(1e-6, 1e3),
    st.sampled_from([0.0, 1e-6]),
)
def test_nothing_returns_nan(n_pre, n_post, data, tau_m, theta, eps):
    t = data.draw(arrays(np.float64, (3, n_pre), elements=extreme))
    w = data.draw(arrays(np.float64, (n_pre, n_post), elements=st.floats(-1e3, 1e3)))
    d = data.draw(arrays(np.float64, (n_pre, n_post), elements=st.floats(0.0, 1e4)))
    net = Network(
        [Layer(n_pre, n_post, "synaptic")],
        NeuronParams(tau_m=tau_m, theta=theta, eps=eps),
        [w],
        [d],
    )
    times = forward(net, t)
    assert not np.isnan(times[0]).any()
    # a spike never precedes the earliest arrival
    first = np.min(t[:, :, None] + d[None], axis=1)
    fired = np.isfinite(times[0])
    assert np.all(times[0][fired] >= first[fired] - 1e-9 * (1 + np.abs(first[fired])))
    grads = backward(net, t, times, np.ones((3, n_post)))
    for arr in (grads.layers[0].w, grads.layers[0].d, grads.t_in):
        assert not np.isnan(arr).any()
