"""The drifting chip (issue 18): an extension of the emulated BrainScaleS-2 chip, off by
default. Checked neuron by neuron against the core's forward pass run with the drifted
parameters of that moment, and for the walks' spread, batching independence, the
periodic component, the jumps and bad settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from delgrad.drivers import BSS2Params, EmulatorDriver
from delgrad.drivers._drift import ChipDrift
from delgrad.errors import ConfigError
from delgrad.runtime import DriftSpec, Layer, Network, NeuronParams, ParameterError, forward
from delgrad.runtime.service import run_config_from_dict


def _network(rng: np.random.Generator) -> Network:
    layers = [Layer(8, 6, "axonal"), Layer(6, 3, "none")]
    w = [rng.uniform(0.3, 2.0, ly.weight_shape) for ly in layers]
    d = [rng.uniform(1.5, 4.0, layers[0].delay_shape), np.zeros(0)]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d)


def test_off_by_default_and_identical_to_the_chip_without_it():
    assert not DriftSpec().active
    rng = np.random.default_rng(0)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (50, 8))
    plain, off = (
        EmulatorDriver("bss2", chip_seed=2),
        EmulatorDriver("bss2", chip_seed=2, drift=DriftSpec()),
    )
    assert off.drift is None
    for drv in (plain, off):
        drv.configure(net)
    for _ in range(3):
        a, b = plain.run(t), off.run(t)
        for x, y in zip(a.times, b.times, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_neuron_fires_as_the_core_with_its_drifted_parameters_at_that_moment(seed):
    params = BSS2Params().noiseless()
    spec = DriftSpec(
        horizon_trials=2000,
        step_trials=50,
        threshold=0.1,
        tau_m=0.1,
        tau_s=0.05,
        gain=0.1,
        delay=0.3,
        thermal_amplitude=0.03,
        thermal_period_trials=700,
        jump_trials=[1500],
        jump_threshold=[0.08],
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (60, 8))
    drv = EmulatorDriver("bss2", params, chip_seed=seed, drift=spec)
    drv.configure(net)
    compared = 0
    for _ in range(30):  # 30 batches of 60 trials: past the jump and around the period
        factors = drv.drift_state()
        assert drv.drift is not None
        gains = [drv.drift.gain_factors(i, net.w[i].shape) for i in range(2)]
        offsets = drv.drift.delay_offsets(0, 8)
        got = drv.run(t).times
        inputs = [t + net.d[0][None, :] + offsets[None, :], got[0]]
        first = 0
        for index in range(2):
            n_in, n_out = net.layers[index].n_in, net.layers[index].n_out
            for j in range(n_out):
                c = first + j
                tau_s = params.neuron.tau_s * factors["tau_s"][c]
                tau_m = params.neuron.tau_m * factors["tau_m"][c]
                # the chip's threshold keeps the nominal g_l: V = g_l theta f_theta
                v_th = params.neuron.g_l * params.threshold * factors["threshold"][c]
                one = Network(
                    [Layer(n_in, 1, "none")],
                    NeuronParams(tau_s=tau_s, tau_m=tau_m, theta=v_th * tau_m / tau_s),
                    [(net.w[index][:, j] * gains[index][:, j])[:, None]],
                )
                want = forward(one, inputs[index])[0][:, 0]
                np.testing.assert_array_equal(np.isinf(got[index][:, j]), np.isinf(want))
                both = np.isfinite(want)
                compared += int(both.sum())
                if both.any():
                    assert np.max(np.abs(got[index][both, j] - want[both])) < 1e-8
            first += n_out
    assert compared > 2000
    assert drv.trials_run == 1800 and drv.applied is not None
    np.testing.assert_array_equal(drv.applied.w[0], net.w[0])  # the host's values unchanged


def test_walks_reach_their_spread_at_the_horizon_whatever_the_batching():
    spec = DriftSpec(horizon_trials=10_000, step_trials=100, threshold=0.1, tau_m=0.05, gain=0.1)
    a, b = ChipDrift(spec, 512, chip_seed=3), ChipDrift(spec, 512, chip_seed=3)
    a.advance(10_000)
    for n in (37, 1000, 1001, 5555, 9999, 10_000):  # other batch sizes
        b.advance(n)
    fa, fb = a.neuron_factors(), b.neuron_factors()
    for kind in ("threshold", "tau_m", "tau_s"):
        np.testing.assert_array_equal(fa[kind], fb[kind])
    assert abs(np.std(fa["threshold"] - 1) - 0.1) < 0.015
    assert abs(np.std(fa["tau_m"] - 1) - 0.05) < 0.008
    np.testing.assert_array_equal(fa["tau_s"], np.ones(512))
    gains = a.gain_factors(0, (100, 50))
    assert abs(np.std(gains) - 0.1) < 0.01
    np.testing.assert_array_equal(gains, b.gain_factors(0, (100, 50)))
    other = ChipDrift(replace(spec, seed=1), 512, chip_seed=3)
    other.advance(10_000)
    assert not np.array_equal(other.neuron_factors()["threshold"], fa["threshold"])
    # halfway the spread is 1/sqrt(2) of it
    half = ChipDrift(spec, 512, chip_seed=3)
    half.advance(5000)
    assert abs(np.std(half.neuron_factors()["threshold"] - 1) - 0.1 / np.sqrt(2)) < 0.012
    with pytest.raises(ValueError, match="does not go back"):
        a.advance(9000)


def test_a_recalibration_jump_and_the_thermal_cycle():
    spec = DriftSpec(jump_trials=[1000, 3000], jump_threshold=[0.08, -0.05])
    drift = ChipDrift(spec, 16, chip_seed=0)
    drift.advance(999)
    np.testing.assert_array_equal(drift.neuron_factors()["threshold"], np.ones(16))
    drift.advance(1000)
    np.testing.assert_allclose(drift.neuron_factors()["threshold"], 1.08)
    drift.advance(3000)
    np.testing.assert_allclose(drift.neuron_factors()["threshold"], 1.08 * 0.95)
    np.testing.assert_array_equal(drift.neuron_factors()["tau_m"], np.ones(16))
    warm = ChipDrift(DriftSpec(thermal_amplitude=0.04, thermal_period_trials=400), 300, 0)
    warm.advance(100)  # a quarter period: the peak
    f = warm.neuron_factors()
    np.testing.assert_allclose(f["threshold"], f["tau_m"])
    assert abs(np.mean(f["threshold"]) - 1.04) < 0.004 and np.std(f["threshold"]) > 0.005
    np.testing.assert_array_equal(f["tau_s"], np.ones(300))
    warm.advance(400)  # a full period: back
    np.testing.assert_allclose(warm.neuron_factors()["threshold"], 1.0, atol=1e-12)


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"threshold": -0.1}, "threshold must be in 0 .. 1"),
        ({"threshold": 1.5}, "threshold must be in 0 .. 1"),
        ({"gain": "big"}, "gain"),
        ({"horizon_trials": 0}, "horizon_trials must be >= 1"),
        ({"step_trials": 2.5}, "step_trials"),
        ({"jump_trials": [10]}, "must have the same length"),
        ({"jump_trials": [10, 5], "jump_threshold": [0.1, 0.1]}, "ascending"),
        ({"jump_trials": [10], "jump_threshold": [3.0]}, "jump_threshold entries"),
        ({"wobble": 0.1}, "unknown field"),
    ],
)
def test_bad_drift_settings_are_refused_in_one_line(drift, message):
    with pytest.raises(ConfigError, match=message) as info:
        run_config_from_dict({"driver": {"name": "emulator-bss2", "drift": drift}})
    assert "\n" not in str(info.value)


def test_drift_needs_the_emulated_chip():
    with pytest.raises(ConfigError, match=r"needs driver\.name = 'emulator-bss2'"):
        run_config_from_dict({"driver": {"name": "emulator-ideal", "drift": {"threshold": 0.1}}})
    with pytest.raises(ParameterError, match="mode 'bss2'"):
        EmulatorDriver("ideal", drift=DriftSpec(threshold=0.1))
    config = run_config_from_dict(
        {"driver": {"name": "emulator-bss2", "drift": {"threshold": 0.1, "seed": 4}}}
    )
    assert config.driver.drift.active and config.driver.drift.seed == 4


def test_a_stream_clock_counts_only_the_services_stream_and_the_walk_can_start_later():
    spec = DriftSpec(horizon_trials=1000, step_trials=10, threshold=0.2, clock="stream")
    rng = np.random.default_rng(0)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (100, 8))
    drv = EmulatorDriver("bss2", BSS2Params().noiseless(), drift=spec)
    drv.configure(net)
    for _ in range(5):  # re-observations: the chip does not age
        drv.run(t)
    np.testing.assert_array_equal(drv.drift_state(0, 9)["threshold"], np.ones(9))
    drv.stream_trials(1000)
    assert drv.device_trials == 1000 and drv.trials_run == 500
    assert np.std(drv.drift_state()["threshold"]) > 0.1
    late = DriftSpec(horizon_trials=1000, step_trials=10, threshold=0.2, start_trials=500,
                     jump_trials=[100], jump_threshold=[0.1])  # fmt: skip
    drift = ChipDrift(late, 64, chip_seed=0)
    drift.advance(500)
    np.testing.assert_allclose(drift.neuron_factors()["threshold"], 1.1)  # the jump only
    early = ChipDrift(replace(late, start_trials=0), 64, chip_seed=0)
    early.advance(700)
    drift.advance(1200)  # 700 trials of walk, as early's
    np.testing.assert_allclose(
        drift.neuron_factors()["threshold"], early.neuron_factors()["threshold"]
    )
