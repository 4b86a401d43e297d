"""The driver contract, run against every driver (see conftest.DRIVER_FACTORIES)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from delgrad.drivers import Capabilities, CapabilityError, DriverError, Observation
from delgrad.runtime import Layer, Network, NeuronParams, ParameterError

from ._helpers import hardware_like_network


def _inputs(n_batch: int, n_in: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.15, 2.0, (n_batch, n_in))
    t[0, 0] = np.inf  # a silent input
    return t


def test_capabilities_are_declared(driver):
    caps = driver.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.weight_rule in ("exact", "clip", "refuse")
    assert caps.delay_rule in ("exact", "clip", "refuse")
    assert caps.weight_max > 0 and caps.max_trial_length > 0
    assert 0 <= caps.delay_min <= caps.delay_max
    assert caps.as_dict()["backend"] == caps.backend


def test_run_before_configure_is_a_driver_error(driver):
    with pytest.raises(DriverError, match="configure"):
        driver.run(np.zeros((1, 8)))


def test_observation_shapes_and_values(driver):
    net = hardware_like_network()
    driver.configure(net)
    t_in = _inputs(7, net.n_inputs)
    obs = driver.run(t_in)
    assert isinstance(obs, Observation)
    assert obs.trials == 7
    assert len(obs.times) == len(obs.arrivals) == len(net.layers)
    window = driver.capabilities.max_trial_length
    for layer, times, arrivals in zip(net.layers, obs.times, obs.arrivals, strict=True):
        assert times.shape == (7, layer.n_out) and times.dtype == np.float64
        assert not np.isnan(times).any()
        finite = times[np.isfinite(times)]
        assert np.all(finite >= 0) and np.all(finite <= window)
        assert np.all(np.isposinf(times[~np.isfinite(times)]))
        if layer.delay == "axonal":
            assert arrivals is not None and arrivals.shape == (7, layer.n_pre)
        else:
            assert arrivals is None
    for name in ("clipped_weights", "clipped_delays", "dropped_inputs", "late_spikes"):
        value = getattr(obs, name)
        assert isinstance(value, int) and value >= 0
    assert obs.output is obs.times[-1]


def test_empty_batch(driver):
    net = hardware_like_network()
    driver.configure(net)
    obs = driver.run(np.empty((0, net.n_inputs)))
    assert [t.shape for t in obs.times] == [(0, ly.n_out) for ly in net.layers]


def test_configure_never_mutates_the_network(driver):
    net = hardware_like_network()
    net.w[0][0, 0] = 5.0  # out of every chip's range
    net.d[0][0] = 40.0
    w_before = [x.copy() for x in net.w]
    d_before = [x.copy() for x in net.d]
    ids = [id(x) for x in net.w + net.d]
    driver.configure(net)
    driver.run(_inputs(3, net.n_inputs))
    for a, b in zip(net.w + net.d, w_before + d_before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [id(x) for x in net.w + net.d] == ids
    assert driver.network is net


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 7)), np.zeros(8), np.full((2, 8), np.nan), np.full((2, 8), -1.0)]
)
def test_bad_input_is_a_parameter_error(driver, bad):
    driver.configure(hardware_like_network())
    with pytest.raises(ParameterError):
        driver.run(bad)


def test_unsupported_delay_kinds_are_refused(driver):
    caps = driver.capabilities
    for kind in ("synaptic", "dendritic", "axonal"):
        layer = Layer(4, 2, kind)
        net = Network([layer], NeuronParams(tau_m=1.0, theta=2.6), [np.ones((4, 2))],
                      [np.full(layer.delay_shape, 2.0)])  # fmt: skip
        if kind in caps.delay_kinds:
            driver.configure(net)
        else:
            with pytest.raises(CapabilityError, match=kind):
                driver.configure(net)


def test_out_of_range_weights_follow_the_stated_rule(driver):
    caps = driver.capabilities
    net = hardware_like_network()
    if math.isfinite(caps.weight_max):
        net.w[1][0, 0] = 2 * caps.weight_max + 1.0
        net.w[1][1, 0] = -(2 * caps.weight_max + 1.0)
    if caps.weight_rule == "refuse":
        with pytest.raises(CapabilityError):
            driver.configure(net)
        return
    driver.configure(net)
    obs = driver.run(_inputs(2, net.n_inputs))
    assert obs.clipped_weights == (2 if caps.weight_rule == "clip" else 0)


def test_out_of_range_delays_follow_the_stated_rule(driver):
    caps = driver.capabilities
    net = hardware_like_network()
    expected = 0
    if math.isfinite(caps.delay_max):
        net.d[0][0] = caps.delay_max + 1.0
        net.d[1][0] = caps.delay_min / 2
        expected = 2
    if caps.delay_rule == "refuse":
        with pytest.raises(CapabilityError):
            driver.configure(net)
        return
    driver.configure(net)
    obs = driver.run(_inputs(2, net.n_inputs))
    assert obs.clipped_delays == (expected if caps.delay_rule == "clip" else 0)


def test_input_spike_budget_is_enforced(driver):
    budget = driver.capabilities.max_input_spikes_per_trial
    if budget is None:
        pytest.skip("this backend announces no input spike budget")
    n_in = budget + 1
    if driver.capabilities.max_neurons is not None:
        assert driver.capabilities.max_neurons >= 1
    net = Network([Layer(n_in, 1)], NeuronParams(tau_m=1.0, theta=2.6), [np.zeros((n_in, 1))])
    try:
        driver.configure(net)
    except CapabilityError as exc:
        if "router" not in str(exc):
            raise
        pytest.skip("the backend routes fewer inputs per layer than its spike budget")
    t = np.full((2, n_in), np.inf)
    t[0, :budget] = 1.0  # exactly the budget: accepted
    driver.run(t)
    t[1, :] = 1.0
    with pytest.raises(CapabilityError, match="budget"):
        driver.run(t)


def test_close_is_final_and_idempotent(driver):
    driver.configure(hardware_like_network())
    driver.close()
    driver.close()
    assert driver.closed
    with pytest.raises(DriverError, match="closed"):
        driver.run(np.zeros((1, 8)))
    with pytest.raises(DriverError, match="closed"):
        driver.configure(hardware_like_network())


def test_context_manager_closes(driver):
    with driver as d:
        assert d is driver and not driver.closed
    assert driver.closed


def test_configure_rejects_non_networks(driver):
    with pytest.raises(ParameterError):
        driver.configure("not a network")
