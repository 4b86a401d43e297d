"""Closed-form single-neuron cases with values computed independently (issue figures)."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import Layer, Network, NeuronParams
from delgrad.runtime._kernels._forward import MODE_GENERAL, lambertw0, layer_forward


def spike(t, w, tau_m, theta):
    net = Network(
        [Layer(len(t), 1)],
        NeuronParams(tau_m=tau_m, theta=theta),
        [np.array(w, dtype=float)[:, None]],
    )
    t_in = np.array([t], dtype=float)
    times = net.forward(t_in)
    grads = net.backward(t_in, times, np.ones((1, 1)))
    return times[0][0, 0], grads.layers[0].w[:, 0], grads.t_in[0]


T_A = [0.2, 0.5, 1.0, 1.5]
W_A = [1.5, 2.0, -0.5, 3.0]


def test_case_a_equal_time_constants():
    t, dw, dt = spike(T_A, W_A, 1.0, 1.0)
    assert t == pytest.approx(0.8480925933711377, abs=1e-14)
    np.testing.assert_allclose(dw, [-0.28327866922, -0.20538084790, 0, 0], atol=1e-11)
    np.testing.assert_allclose(dt, [0.23072597078, 0.76927402922, 0, 0], atol=1e-11)


def test_case_b_double_membrane_time_constant():
    t, dw, dt = spike(T_A, W_A, 2.0, 1.0)
    assert t == pytest.approx(0.7695669541052141, abs=1e-14)
    np.testing.assert_allclose(dw, [-0.19871979879, -0.11747389215, 0, 0], atol=1e-11)
    np.testing.assert_allclose(dt, [0.30331690104, 0.69668309896, 0, 0], atol=1e-11)


def test_case_c_and_d():
    assert spike([0.15, 0.6, 1.2, 2.0], [4, 5, 3, -1], 1.0, 2.6)[0] == pytest.approx(
        0.9241987830503953, abs=1e-14
    )
    assert spike([0.1, 0.3, 0.4, 2.5], [1.2, 0.9, 0.8, 5.0], 2.0, 1.0)[0] == pytest.approx(
        0.760823481310595, abs=1e-14
    )


@pytest.mark.parametrize("tau_m", [1.0, 2.0, 1.5])
def test_case_e_no_spike(tau_m):
    t, dw, dt = spike([0.2, 0.5], [0.5, 0.5], tau_m, 1.0)
    assert t == np.inf
    assert not dw.any() and not dt.any()


def test_root_find_agrees_with_closed_form_at_ratio_two():
    rng = np.random.default_rng(3)
    t_in = rng.uniform(0, 2, (200, 6))
    w = rng.normal(1.0, 1.0, (6, 8))
    z2, z1, zo = np.zeros((6, 8)), np.zeros(6), np.zeros(8)
    closed, general = np.empty((200, 8)), np.empty((200, 8))
    layer_forward(t_in, w, z2, z1, zo, 1.0, 2.0, 1.0, 0.0, 2, closed)
    layer_forward(t_in, w, z2, z1, zo, 1.0, 2.0, 1.0, 0.0, MODE_GENERAL, general)
    assert np.array_equal(np.isinf(closed), np.isinf(general))
    assert np.isfinite(closed).mean() > 0.3
    fin = np.isfinite(closed)
    np.testing.assert_allclose(general[fin], closed[fin], rtol=0, atol=1e-12)


def test_lambertw0_inverts_w_exp_w():
    z = np.concatenate([-np.exp(-1) + np.logspace(-14, -1, 30), np.linspace(-0.36, 0, 50)])
    for value in z:
        w = lambertw0(value)
        assert -1.0 <= w <= 0.0
        assert w * np.exp(w) == pytest.approx(value, abs=1e-15)
    assert np.isnan(lambertw0(-0.4))
