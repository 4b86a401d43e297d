"""The emulator's mismatch extension: per-neuron time constants, per-synapse gains.

Not part of the DelGrad authors' chip model; off by default. Checked against the
core's forward pass run neuron by neuron with that neuron's own time constants
and its synapses' gains.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from delgrad.drivers import BSS2Params, EmulatorDriver
from delgrad.runtime import Layer, Network, NeuronParams, ParameterError, forward

from ._helpers import hardware_like_network


def test_off_by_default_and_the_fixed_pattern_does_not_move():
    p = BSS2Params()
    assert (p.tau_m_mismatch_std, p.tau_s_mismatch_std, p.weight_gain_std) == (0, 0, 0)
    assert not p.has_mismatch
    on = replace(p, tau_m_mismatch_std=0.1, weight_gain_std=0.1)
    assert on.has_mismatch and not on.noiseless().has_mismatch
    a, b = EmulatorDriver("bss2", p, chip_seed=3), EmulatorDriver("bss2", on, chip_seed=3)
    np.testing.assert_array_equal(a.threshold_offsets, b.threshold_offsets)
    np.testing.assert_array_equal(a.synapse_gains(0, (4, 5)), np.ones((4, 5)))


@pytest.mark.parametrize("seed", [0, 1])
def test_each_neuron_integrates_with_its_own_time_constants_and_gains(seed):
    params = replace(
        BSS2Params().noiseless(),
        tau_m_mismatch_std=0.15,
        tau_s_mismatch_std=0.1,
        weight_gain_std=0.2,
    )
    rng = np.random.default_rng(seed)
    net = Network(
        [Layer(10, 6, "none")], NeuronParams(tau_m=1.0, theta=2.6), [rng.uniform(0.2, 2.1, (10, 6))]
    )
    t = rng.uniform(0.0, 2.0, (40, 10))
    drv = EmulatorDriver("bss2", params, chip_seed=seed)
    drv.configure(net)
    got = drv.run(t).times[0]
    taus_s, taus_m = drv.time_constants(0, 6)
    gains = drv.synapse_gains(0, (10, 6))
    assert np.std(taus_m) > 0.03 and np.std(gains) > 0.1  # the extension is on
    c = params.neuron.g_l * params.threshold  # the threshold keeps the nominal g_l
    compared = 0
    for j in range(6):
        g_l = taus_s[j] / taus_m[j]
        one = Network(
            [Layer(10, 1, "none")],
            NeuronParams(tau_s=taus_s[j], tau_m=taus_m[j], theta=c / g_l),
            [(net.w[0][:, j] * gains[:, j])[:, None]],
        )
        want = forward(one, t)[0][:, 0]
        np.testing.assert_array_equal(np.isinf(got[:, j]), np.isinf(want))
        both = np.isfinite(want)
        compared += int(both.sum())
        if both.any():
            assert np.max(np.abs(got[both, j] - want[both])) < 1e-8
    assert compared > 100


def test_mismatch_is_a_property_of_the_chip_seed_with_the_given_spread():
    params = replace(BSS2Params(), tau_m_mismatch_std=0.1, weight_gain_std=0.1)
    a, b = EmulatorDriver("bss2", params, chip_seed=1), EmulatorDriver("bss2", params, chip_seed=1)
    other = EmulatorDriver("bss2", params, chip_seed=2)
    np.testing.assert_array_equal(a.time_constants(0, 512)[1], b.time_constants(0, 512)[1])
    np.testing.assert_array_equal(a.synapse_gains(1, (30, 3)), b.synapse_gains(1, (30, 3)))
    assert not np.array_equal(a.synapse_gains(1, (30, 3)), other.synapse_gains(1, (30, 3)))
    tau_m = a.time_constants(0, 512)[1]
    assert abs(np.mean(tau_m) - 1.0) < 0.02 and abs(np.std(tau_m) - 0.1) < 0.015
    np.testing.assert_array_equal(a.time_constants(0, 512)[0], np.ones(512))  # tau_s spread 0
    gains = a.synapse_gains(0, (200, 100))
    assert abs(np.mean(gains) - 1.0) < 0.005 and abs(np.std(gains) - 0.1) < 0.005


def test_a_network_still_runs_with_delays_and_mismatch():
    params = replace(BSS2Params(), tau_m_mismatch_std=0.1, tau_s_mismatch_std=0.1)
    net = hardware_like_network()
    with EmulatorDriver("bss2", params) as drv:
        drv.configure(net)
        obs = drv.run(np.random.default_rng(0).uniform(0.0, 2.0, (30, net.n_inputs)))
    assert np.isfinite(obs.times[0]).mean() > 0.3 and np.isfinite(obs.output).any()


@pytest.mark.parametrize("name", ["tau_m_mismatch_std", "tau_s_mismatch_std", "weight_gain_std"])
def test_negative_spreads_are_refused(name):
    with pytest.raises(ParameterError, match=name):
        BSS2Params(**{name: -0.1})
