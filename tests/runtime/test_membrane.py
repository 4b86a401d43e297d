"""Forward pass against an independent integration of the membrane ODE."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import Layer, Network, NeuronParams, forward

from ._helpers import membrane_spike, random_network


@pytest.mark.parametrize("tau_m", [1.0, 2.0, 1.5, 0.7, 3.3])
def test_single_layer_matches_integration(tau_m):
    rng = np.random.default_rng(int(tau_m * 100))
    n_pre, n_post, batch = 6, 10, 8
    w = rng.normal(0.8, 1.2, (n_pre, n_post))
    net = Network(
        [Layer(n_pre, n_post, "synaptic")],
        NeuronParams(tau_m=tau_m, theta=1.0),
        [w],
        [rng.uniform(0, 1.5, (n_pre, n_post))],
    )
    t_in = rng.uniform(0, 3, (batch, n_pre))
    t_in[rng.uniform(size=t_in.shape) < 0.1] = np.inf
    out = forward(net, t_in)[0]
    agree = 0
    for b in range(batch):
        for j in range(n_post):
            arrivals = t_in[b] + net.d[0][:, j]
            ref, margin = membrane_spike(arrivals, w[:, j], tau_s=1.0, tau_m=tau_m, theta=1.0)
            if abs(margin) < 1e-6:
                continue  # tangent to threshold: either answer is right
            if np.isinf(ref):
                assert np.isinf(out[b, j])
            else:
                assert out[b, j] == pytest.approx(ref, abs=1e-9)
            agree += 1
    assert agree > 0.9 * batch * n_post
    assert np.isfinite(out).mean() > 0.3


@pytest.mark.parametrize("delay", ["axonal", "dendritic"])
def test_two_layers_match_integration(delay):
    rng = np.random.default_rng(7)
    net = random_network(rng, [4, 6, 3], delay, 2.0)
    t_in = rng.uniform(0, 2, (5, 4))
    times = forward(net, t_in)
    t_pre = t_in
    for index, layer in enumerate(net.layers):
        d_syn, d_ax, d_den = net.delay_arrays(index)
        for b in range(t_in.shape[0]):
            for j in range(layer.n_out):
                arrivals = t_pre[b] + d_ax + d_syn[:, j] + d_den[j]
                ref, margin = membrane_spike(
                    arrivals, net.w[index][:, j], tau_s=1.0, tau_m=2.0, theta=1.0
                )
                if abs(margin) > 1e-6:
                    assert times[index][b, j] == pytest.approx(ref, abs=1e-9)
        t_pre = times[index]
