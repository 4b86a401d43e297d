"""The authors' nominal-threshold gradient rule (``backward(..., rule="nominal")``).

Oracles: the observed rule (equal when the nominal theta is the threshold the
spikes were produced at), the authors' closed form written out by hand for one
neuron (fastAndDeep ``get_spiketime_derivative``, tau_m = tau_s), finite
differences of the forward pass, and W0 from its defining equation.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from delgrad.runtime import Layer, Network, NeuronParams, ParameterError, backward, forward
from delgrad.runtime._kernels._nominal import lambert_w0
from delgrad.runtime._nominal import nominal_scale

from ._helpers import random_network


def w0_bisect(z: float) -> float:
    """W0(z) by bisection of w e^w = z on [-1, max(1, z)] (independent of the kernel)."""
    lo, hi = -1.0, max(1.0, math.log(max(z, 1.0)) + 1.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid * math.exp(mid) < z:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize(
    "z", [-1 / math.e, -0.3678, -0.36, -0.3, -0.1, -1e-3, -1e-12, 0.0, 1e-9, 0.5, 2.0, 40.0, 1e6]
)
def test_lambert_w0_solves_its_equation(z):
    w = lambert_w0(z)
    assert w >= -1.0
    assert w == pytest.approx(w0_bisect(z), rel=1e-12, abs=1e-7 if z < -0.3678 else 1e-13)
    assert w * math.exp(w) == pytest.approx(z, rel=1e-13, abs=1e-16)


def test_lambert_w0_is_nan_below_the_branch_point():
    assert math.isnan(lambert_w0(-1 / math.e - 1e-9))
    assert math.isnan(lambert_w0(-1.0))


@pytest.mark.parametrize("delay", ["none", "axonal", "synaptic", "dendritic"])
def test_equals_the_observed_rule_at_the_true_threshold(delay):
    rng = np.random.default_rng(len(delay))
    net = random_network(rng, [6, 9, 4], delay, 1.0, theta=1.3)
    t_in = rng.uniform(0.0, 2.0, (20, 6))
    times = forward(net, t_in)
    assert all(np.isfinite(t).mean() > 0.5 for t in times)
    g = rng.normal(size=(20, 4)) * np.isfinite(times[-1])
    ref = backward(net, t_in, times, g)
    nom = backward(net, t_in, times, g, rule="nominal")
    for a, b in zip(ref.layers, nom.layers, strict=True):
        np.testing.assert_allclose(b.w, a.w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.d, a.d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(nom.t_in, ref.t_in, rtol=1e-9, atol=1e-12)


def test_observed_arrivals_give_the_same_gradient_at_the_true_threshold():
    rng = np.random.default_rng(7)
    net = random_network(rng, [5, 8, 3], "axonal", 1.0)
    t_in = rng.uniform(0.0, 2.0, (10, 5))
    times = forward(net, t_in)
    arrivals = [net.layer_input(0, t_in) + net.d[0], times[0] + net.d[1]]
    g = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    ref = backward(net, t_in, times, g)
    nom = backward(net, t_in, times, g, arrivals=arrivals, rule="nominal")
    for a, b in zip(ref.layers, nom.layers, strict=True):
        np.testing.assert_allclose(b.w, a.w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.d, a.d, rtol=1e-9, atol=1e-12)


def authors_closed_form(t, w, t_out, theta, eps=0.0):
    """fastAndDeep's tau_m = tau_s derivative (tau_s = 1), written out for one neuron."""
    causal = t < t_out
    a1 = np.sum(w[causal] * np.exp(t[causal])) + eps
    b = np.sum(w[causal] * t[causal] * np.exp(t[causal])) + eps
    z = -theta / a1 * math.exp(b / a1)
    big_w = w0_bisect(z)
    dw = np.where(causal, -1.0 / a1 / (1.0 + big_w) * np.exp(t) * (t_out - t), 0.0)
    dt = np.where(causal, -1.0 / a1 / (1.0 + big_w) * w * np.exp(t) * (t_out - t - 1.0), 0.0)
    return dw, dt


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_a_spike_produced_at_a_higher_threshold_gets_the_authors_closed_form(eps):
    # One neuron, three inputs; the "chip" fires it at theta 2.9, the host assumes 2.6.
    t = np.array([[0.3, 0.9, 1.4]])
    w = np.array([[4.0], [3.5], [2.5]])
    chip = Network([Layer(3, 1)], NeuronParams(tau_m=1.0, theta=2.9), [w])
    host = Network([Layer(3, 1)], NeuronParams(tau_m=1.0, theta=2.6, eps=eps), [w])
    t_obs = forward(chip, t)
    t_nom = forward(host, t)[0][0, 0]
    assert np.isfinite(t_obs[0][0, 0]) and t_obs[0][0, 0] > t_nom + 0.05
    grads = backward(host, t, t_obs, np.ones((1, 1)), rule="nominal")
    dw, dt = authors_closed_form(t[0], w[:, 0], t_obs[0][0, 0], 2.6, eps)
    np.testing.assert_allclose(grads.layers[0].w[:, 0], dw, rtol=1e-11)
    np.testing.assert_allclose(grads.t_in[0], dt, rtol=1e-11)
    # ... and differs from the observed rule (1/V'(T_obs) with V'(T_obs) smaller).
    observed = backward(host, t, t_obs, np.ones((1, 1)))
    ratio = grads.layers[0].w[:, 0] / observed.layers[0].w[:, 0]
    assert np.all(np.abs(ratio - 1.0) > 0.05)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # one factor per neuron


def test_gradient_is_zero_where_w0_is_undefined():
    t = np.array([[0.3, 0.9]])
    w = np.array([[1.0], [0.8]])
    # Observed spike at T = 2.0 (whatever the chip's threshold); the nominal theta is
    # above the maximum of the membrane from these two inputs, so z < -1/e.
    host = Network([Layer(2, 1)], NeuronParams(tau_m=1.0, theta=5.0), [w])
    t_obs = [np.array([[2.0]])]
    counts = np.zeros(2, dtype=np.int64)
    f = nominal_scale(t, w, host.delay_arrays(0), t_obs[0], host.neuron, counts)
    assert f[0, 0] == 0.0 and counts[0] == 1
    grads = backward(host, t, t_obs, np.ones((1, 1)), rule="nominal")
    assert np.all(grads.layers[0].w == 0.0) and np.all(grads.t_in == 0.0)


def test_matches_finite_differences_of_the_nominal_spike_time():
    # Where the observed time is the nominal one (host model = chip), the rule is the
    # exact derivative of the closed-form spike time.
    rng = np.random.default_rng(3)
    net = random_network(rng, [4, 6, 2], "none", 1.0, theta=1.1)
    t_in = rng.uniform(0.0, 2.0, (5, 4))
    coeff = rng.normal(size=(5, 2))

    def loss(n):
        out = forward(n, t_in)[-1]
        return float(np.sum(np.where(np.isfinite(out), coeff * out, 0.0)))

    times = forward(net, t_in)
    grads = backward(net, t_in, times, np.where(np.isfinite(times[-1]), coeff, 0.0), rule="nominal")
    h = 1e-6
    checked = 0
    for index in range(2):
        for pos in list(np.ndindex(net.w[index].shape))[:10]:
            old = net.w[index][pos]
            net.w[index][pos] = old + h
            plus = loss(net)
            net.w[index][pos] = old - h
            minus = loss(net)
            net.w[index][pos] = old
            fd = (plus - minus) / (2 * h)
            if abs(fd) > 1e-8:
                assert grads.layers[index].w[pos] == pytest.approx(fd, rel=1e-5, abs=1e-7)
                checked += 1
    assert checked >= 8


def test_refused_for_other_tau_ratios_and_unknown_rules():
    rng = np.random.default_rng(0)
    net = random_network(rng, [3, 2], "none", 2.0)
    t_in = rng.uniform(0.0, 2.0, (2, 3))
    times = forward(net, t_in)
    with pytest.raises(ParameterError, match="tau_m == tau_s"):
        backward(net, t_in, times, np.zeros((2, 2)), rule="nominal")
    eq = Network(net.layers, replace(net.neuron, tau_m=1.0), net.w)
    with pytest.raises(ParameterError, match="backward rule"):
        backward(eq, t_in, forward(eq, t_in), np.zeros((2, 2)), rule="authors")  # type: ignore[arg-type]
