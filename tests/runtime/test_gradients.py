"""Backward pass against central finite differences of the forward pass (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import backward, forward

from ._helpers import random_network

H = 1e-6


def loss_and_grad(net, t_in, coeff):
    times = forward(net, t_in)
    out = times[-1]
    mask = np.isfinite(out)
    loss = float(np.sum(np.where(mask, coeff * out, 0.0)))
    grads = backward(net, t_in, times, np.where(mask, coeff, 0.0))
    return loss, grads, times


def check(analytic, plus, minus, centre, checked):
    """Compare with central differences where the function is smooth at this point."""
    fd = (plus - minus) / (2 * H)
    fwd, bwd = (plus - centre) / H, (centre - minus) / H
    smooth = abs(fwd - bwd) <= 1e-4 * (abs(fd) + 1e-3)
    if smooth:
        # floor: rounding of the loss itself, about 1e-16 |L| / H
        assert abs(analytic - fd) <= 1e-6 * abs(fd) + 1e-8 * (1 + abs(centre)), (analytic, fd)
        checked.append(1)
    else:
        checked.append(0)


@pytest.mark.parametrize("tau_m", [1.0, 2.0, 1.5])
@pytest.mark.parametrize("delay", ["none", "synaptic", "axonal", "dendritic"])
def test_every_parameter_matches_finite_differences(tau_m, delay):
    rng = np.random.default_rng(int(tau_m * 10) + len(delay))
    net = random_network(rng, [4, 7, 5, 3], delay, tau_m)
    t_in = rng.uniform(0.0, 2.0, (6, 4))
    coeff = rng.normal(size=(6, 3))
    base, grads, times = loss_and_grad(net, t_in, coeff)
    assert all(np.isfinite(t).mean() > 0.5 for t in times)
    checked: list[int] = []
    for index in range(len(net.layers)):
        for arrays, grad in ((net.w, grads.layers[index].w), (net.d, grads.layers[index].d)):
            param = arrays[index]
            for flat in rng.choice(param.size, size=min(param.size, 12), replace=False):
                pos = np.unravel_index(flat, param.shape)
                old = param[pos]
                param[pos] = old + H
                plus = loss_and_grad(net, t_in, coeff)[0]
                param[pos] = old - H
                minus = loss_and_grad(net, t_in, coeff)[0]
                param[pos] = old
                check(grad[pos], plus, minus, base, checked)
    for pos in np.ndindex(t_in.shape):
        old = t_in[pos]
        t_in[pos] = old + H
        plus = loss_and_grad(net, t_in, coeff)[0]
        t_in[pos] = old - H
        minus = loss_and_grad(net, t_in, coeff)[0]
        t_in[pos] = old
        check(grads.t_in[pos], plus, minus, base, checked)
    # most points are smooth; if not, the test would silently check nothing
    assert np.mean(checked) > 0.8


def test_gradient_is_exactly_zero_for_a_silent_neuron():
    rng = np.random.default_rng(0)
    net = random_network(rng, [3, 2], "synaptic", 2.0)
    net.w[0][:, 0] = -1.0  # neuron 0 never fires
    t_in = rng.uniform(0, 1, (4, 3))
    times = forward(net, t_in)
    assert np.isinf(times[0][:, 0]).all()
    grads = backward(net, t_in, times, np.ones((4, 2)))
    assert not grads.layers[0].w[:, 0].any()
    assert not grads.layers[0].d[:, 0].any()


def test_max_dw_norm_drops_large_weight_gradients_only():
    rng = np.random.default_rng(1)
    net = random_network(rng, [4, 6, 3], "synaptic", 2.0)
    t_in = rng.uniform(0, 2, (20, 4))
    times = forward(net, t_in)
    g = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    full = backward(net, t_in, times, g)
    clipped = backward(net, t_in, times, g, max_dw_norm=0.05)
    assert sum(clipped.dropped) > 0
    assert np.abs(clipped.layers[-1].w).sum() < np.abs(full.layers[-1].w).sum()
    # time and delay gradients are not affected by the weight stabiliser
    np.testing.assert_array_equal(clipped.t_in, full.t_in)
    np.testing.assert_array_equal(clipped.layers[-1].d, full.layers[-1].d)
