"""The emulator driver: ideal mode, and the BrainScaleS-2 emulation checked independently."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from delgrad.drivers import BSS2Params, CapabilityError, EmulatorDriver
from delgrad.drivers._kernels import first_crossing, membrane_layer
from delgrad.runtime import Layer, Network, NeuronParams, ParameterError, forward

from ._helpers import hardware_like_network, random_network


def _inputs(rng, n_batch, n_in, p_silent=0.1, hi=3.0):
    t = rng.uniform(0.0, hi, (n_batch, n_in))
    t[rng.random(t.shape) < p_silent] = np.inf
    return t


@pytest.mark.parametrize(
    "kinds", [("synaptic", "none"), ("dendritic", "axonal"), ("axonal", "synaptic")]
)
def test_ideal_mode_is_bit_identical_to_forward(kinds):
    rng = np.random.default_rng(5)
    layers = [Layer(5, 7, kinds[0], bias_times=(0.2,)), Layer(7, 3, kinds[1])]
    w = [rng.normal(1.0, 1.0, ly.weight_shape) for ly in layers]
    d = [rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers]
    net = Network(layers, NeuronParams(tau_m=2.0, theta=1.0), w, d)
    t = _inputs(rng, 40, 5, hi=2.0)
    with EmulatorDriver("ideal") as drv:
        drv.configure(net)
        obs = drv.run(t)
    for got, want in zip(obs.times, forward(net, t), strict=True):
        np.testing.assert_array_equal(got, want)
    for index, (layer, arr) in enumerate(zip(layers, obs.arrivals, strict=True)):
        if layer.delay == "axonal":
            t_pre = t if index == 0 else obs.times[index - 1]
            np.testing.assert_array_equal(arr, net.layer_input(index, t_pre) + net.d[index])
        else:
            assert arr is None


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.5, 1.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noiseless_bss2_integration_agrees_with_the_closed_forms(ratio, seed):
    """Event-driven membrane integration vs the core's closed-form forward."""
    rng = np.random.default_rng(100 + seed)
    theta = 2.6 if ratio >= 1.0 else 1.2  # g_l = 1 / ratio: keep the layers firing
    net = random_network(rng, tau_m=ratio, theta=theta)
    params = BSS2Params(tau_m_us=6.0 * ratio, threshold=theta).noiseless()
    drv = EmulatorDriver("bss2", params, chip_seed=seed)
    drv.configure(net)
    t = _inputs(rng, 60, net.n_inputs)
    obs = drv.run(t)
    compared = 0
    for got, want in zip(obs.times, forward(net, t), strict=True):
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        both = np.isfinite(want)
        compared += int(both.sum())
        if both.any():
            assert np.max(np.abs(got[both] - want[both])) < 1e-9
    assert compared > 100  # the comparison is not vacuous
    assert obs.late_spikes == 0 and obs.clipped_weights == 0 and obs.clipped_delays == 0


def test_first_crossing_against_a_dense_grid():
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(400):
        tau_s, tau_m = 1.0, float(rng.choice([1.0, 2.0, 0.5, 3.3]))
        delta = 1.0 / tau_s - 1.0 / tau_m
        v0, i0 = rng.uniform(-1, 2), rng.uniform(-1, 6)
        c, upper = rng.uniform(0.2, 2.0), rng.uniform(0.1, 6.0)
        x = first_crossing(v0, i0, c, upper, tau_s, tau_m, delta)
        grid = np.linspace(0.0, upper, 20001)
        if delta == 0.0:
            v = v0 * np.exp(-grid / tau_m) + i0 * grid / tau_m * np.exp(-grid / tau_s)
        else:
            k = tau_s / (tau_m - tau_s)
            v = v0 * np.exp(-grid / tau_m) + i0 * k * (
                np.exp(-grid / tau_m) - np.exp(-grid / tau_s)
            )
        above = np.nonzero(v >= c)[0]
        if above.size == 0:
            # a crossing between grid points only if the maximum barely reaches c
            assert x == np.inf or np.max(v) > c - 1e-6
            continue
        checked += 1
        assert abs(x - grid[above[0]]) <= upper / 20000 + 1e-12
    assert checked > 50


def test_membrane_kernel_releases_the_gil():
    assert membrane_layer.targetoptions["nogil"] is True
    assert first_crossing.targetoptions["nogil"] is True


def test_concurrent_runs_from_threads_equal_sequential_runs():
    net = hardware_like_network(1)
    rng = np.random.default_rng(3)
    batches = [_inputs(rng, 200, net.n_inputs) for _ in range(4)]

    def session(seed):
        drv = EmulatorDriver("bss2", chip_seed=seed)
        drv.configure(net)
        return [drv.run(t).output for t in batches], threading.current_thread().name

    sequential = [session(s)[0] for s in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(session, range(4)))
    for (outs, _), want in zip(threaded, sequential, strict=True):
        for a, b in zip(outs, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_weight_quantisation_and_clipping_rule():
    w = np.array([[1.0, 0.51, -2.2, 2.1], [2.11, 2.12, -0.49, 0.0]]).T  # (4, 2)
    net = Network([Layer(4, 2)], NeuronParams(tau_m=1.0, theta=2.6), [w])
    drv = EmulatorDriver("bss2")
    drv.configure(net)
    expected_codes = np.array([[30, 15, -63, 63], [63, 63, -15, 0]]).T
    np.testing.assert_array_equal(drv.applied.w[0], expected_codes / 30.0)
    # counted: |round(30 w)| > 63, i.e. -2.2 (-66) and 2.12 (64); 2.11 rounds to 63
    assert drv.run(np.zeros((1, 4))).clipped_weights == 2
    np.testing.assert_array_equal(net.w[0], w)  # the host network is untouched


def test_unquantised_weights_are_only_clipped():
    w = np.array([[0.517], [-3.0]])
    net = Network([Layer(2, 1)], NeuronParams(tau_m=1.0, theta=2.6), [w])
    drv = EmulatorDriver("bss2", BSS2Params(quantise_weights=False))
    drv.configure(net)
    np.testing.assert_array_equal(drv.applied.w[0], [[0.517], [-2.1]])
    assert drv.capabilities.weight_resolution == 0.0


def test_delay_quantisation_and_clipping_rule():
    layer = Layer(4, 1, "axonal")
    d = np.array([2.0, 1.0, 2.01, 6.0])  # 12 us, 6 us (< 8.25), 12.06 us, 36 us (> 33.25)
    net = Network([layer], NeuronParams(tau_m=1.0, theta=2.6), [np.ones((4, 1))], [d])
    drv = EmulatorDriver("bss2")
    drv.configure(net)
    np.testing.assert_allclose(drv.applied.d[0] * 6.0, [12.0, 8.25, 12.0, 33.25], atol=1e-12)
    assert drv.run(np.zeros((1, 4))).clipped_delays == 2
    caps = drv.capabilities
    assert caps.delay_min == pytest.approx(8.25 / 6) and caps.delay_max == pytest.approx(33.25 / 6)
    assert caps.delay_resolution == pytest.approx(0.125 / 6)


def test_fixed_pattern_is_a_property_of_the_chip_seed():
    a, b, c = (EmulatorDriver("bss2", chip_seed=s) for s in (11, 11, 12))
    np.testing.assert_array_equal(a.threshold_offsets, b.threshold_offsets)
    assert not np.array_equal(a.threshold_offsets, c.threshold_offsets)
    with pytest.raises(ValueError):
        a.threshold_offsets[0] = 0.0  # read-only
    net = hardware_like_network(2)
    quiet = BSS2Params(threshold_trial_std=0.0, delay_jitter_std=0.0)
    t = _inputs(np.random.default_rng(0), 100, net.n_inputs)
    outs = []
    for seed in (11, 11, 12):
        drv = EmulatorDriver("bss2", quiet, chip_seed=seed)
        drv.configure(net)
        outs.append(drv.run(t).times[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_fixed_pattern_statistics():
    offsets = np.concatenate(
        [EmulatorDriver("bss2", chip_seed=s).threshold_offsets for s in range(4)]
    )
    assert offsets.size == 4 * 512
    assert abs(offsets.mean() - 0.13) < 0.008  # 4.5 standard errors
    assert abs(offsets.std() - 0.08) < 0.006


def _thresholds_from_times(times, total_weight):
    """theta of a neuron hit by simultaneous inputs at t = 0 (tau_m = tau_s, g_l = 1)."""
    return total_weight * times * np.exp(-times)


def test_trial_noise_statistics_and_fresh_draw_per_run():
    n_out, n_batch = 40, 500
    net = Network([Layer(5, n_out)], NeuronParams(tau_m=1.0, theta=2.6), [np.full((5, n_out), 2.1)])
    drv = EmulatorDriver("bss2", BSS2Params(noise_per="trial"), chip_seed=4)
    drv.configure(net)
    t = np.zeros((n_batch, 5))
    first, second = drv.run(t).times[0], drv.run(t).times[0]
    assert np.all(np.isfinite(first))
    theta = _thresholds_from_times(first, 5 * 2.1)
    per_neuron = 2.6 + drv.threshold_offsets[:n_out]
    np.testing.assert_allclose(theta.mean(axis=0), per_neuron, atol=0.01)  # 5 std errors
    residual = theta - per_neuron
    assert abs(residual.std() - 0.04) < 0.003
    assert abs(np.corrcoef(residual[:, 0], residual[:, 1])[0, 1]) < 0.2  # independent per neuron
    assert not np.array_equal(first, second)  # drawn anew on every run
    again = EmulatorDriver("bss2", BSS2Params(noise_per="trial"), chip_seed=4)
    again.configure(net)
    np.testing.assert_array_equal(again.run(t).times[0], first)  # a session is reproducible
    np.testing.assert_array_equal(again.run(t).times[0], second)


def test_batch_noise_is_shared_by_the_trials_of_a_batch():
    n_out, n_batch = 200, 50
    net = Network([Layer(5, n_out)], NeuronParams(tau_m=1.0, theta=2.6), [np.full((5, n_out), 2.1)])
    drv = EmulatorDriver("bss2", chip_seed=4)  # default: one draw per neuron and batch
    assert drv.capabilities.noisy
    drv.configure(net)
    t = np.zeros((n_batch, 5))
    runs = [_thresholds_from_times(drv.run(t).times[0], 5 * 2.1) for _ in range(3)]
    per_neuron = 2.6 + drv.threshold_offsets[:n_out]
    for theta in runs:
        np.testing.assert_allclose(theta, np.broadcast_to(theta[0], theta.shape), atol=1e-9)
        assert abs((theta[0] - per_neuron).std() - 0.04) < 0.008  # 200 draws
    assert not np.allclose(runs[0][0], runs[1][0])  # a new draw for every batch


def test_delay_jitter_statistics():
    layer = Layer(4, 1, "axonal")
    net = Network([layer], NeuronParams(tau_m=1.0, theta=2.6), [np.ones((4, 1))], [np.full(4, 2.0)])
    drv = EmulatorDriver("bss2", chip_seed=9)
    drv.configure(net)
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2, (2000, 4))
    t[0, 0] = np.inf
    obs = drv.run(t)
    assert np.isinf(obs.arrivals[0][0, 0])
    finite = np.isfinite(t)
    err = obs.arrivals[0][finite] - (t[finite] + 2.0)
    assert abs(err.mean()) < 0.001 and abs(err.std() - 0.01) < 0.0005


def test_window_cuts_late_spikes_and_drops_late_inputs():
    params = BSS2Params().noiseless()
    net = Network([Layer(5, 1)], NeuronParams(tau_m=1.0, theta=2.6), [np.full((5, 1), 2.1)])
    drv = EmulatorDriver("bss2", params)
    drv.configure(net)
    t = np.array([[1.0] * 5, [29.8] * 5, [31.0] * 5, [29.0] * 5])
    obs = drv.run(t)
    spike = obs.times[0][:, 0]
    assert 1.0 < spike[0] < 2.0
    assert np.isinf(spike[1])  # would fire at ~30.2 > 30
    assert np.isinf(spike[2])  # inputs never arrive inside the window
    assert 29.0 < spike[3] < 30.0
    assert obs.late_spikes == 1 and obs.dropped_inputs == 5
    assert drv.capabilities.max_trial_length == 30.0


def test_bss2_uses_the_chip_neuron_not_the_host_neuron():
    net = Network([Layer(5, 2)], NeuronParams(tau_m=2.0, theta=1.0), [np.full((5, 2), 2.1)])
    drv = EmulatorDriver("bss2", BSS2Params().noiseless())
    drv.configure(net)
    host_model = Network(net.layers, drv.capabilities.nominal_neuron, net.w)
    t = np.zeros((3, 5))
    np.testing.assert_allclose(drv.run(t).times[0], forward(host_model, t)[0], atol=1e-9)


def test_too_many_neurons_are_refused():
    net = Network([Layer(2, 600)], NeuronParams(tau_m=1.0, theta=2.6), [np.ones((2, 600))])
    with pytest.raises(CapabilityError, match="512"):
        EmulatorDriver("bss2").configure(net)


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "chip"}, {"chip_seed": -1}, {"chip_seed": 1.5}, {"params": {"tau_s_us": 6.0}}],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ParameterError):
        EmulatorDriver(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"tau_s_us": 0.0}, {"threshold_trial_std": -0.1}, {"weight_code_max": 63.5},
     {"quantise_weights": 1}, {"delay_min_us": 40.0}, {"trial_length_us": float("inf")}],
)  # fmt: skip
def test_bss2_params_validate(kwargs):
    with pytest.raises(ParameterError):
        BSS2Params(**kwargs)


def test_bss2_params_derived_figures():
    p = BSS2Params()
    assert p.time_unit_us == 6.0 and p.window == 30.0 and p.weight_max == pytest.approx(2.1)
    assert p.neuron == NeuronParams(tau_s=1.0, tau_m=1.0, theta=2.6)
    q = p.noiseless()
    assert q.threshold_fp_std == q.threshold_trial_std == q.delay_jitter_std == 0.0
    assert not q.quantise_weights and not q.quantise_delays
