"""The drifting chip (issue 18): an extension of the emulated BrainScaleS-2 chip, off by
default. Checked neuron by neuron against the core's forward pass run with the drifted
parameters of that moment, and for the walks' spread, batching independence, the
periodic component, the jumps, the three clocks, restarts and bad settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from delgrad.drivers import BSS2Params, DriftState, EmulatorDriver, driver_from_config
from delgrad.drivers._drift import ChipDrift
from delgrad.errors import ConfigError
from delgrad.runtime import (
    DriftSpec,
    Layer,
    Network,
    NeuronParams,
    ParameterError,
    apply_overrides,
    forward,
)
from delgrad.runtime.service import run_config_from_dict

#: Every kind of drift at once, on a short time scale: walks, thermal cycle, jumps.
BUSY = DriftSpec(
    horizon_trials=2000,
    step_trials=50,
    threshold=0.1,
    tau_m=0.1,
    tau_s=0.05,
    gain=0.1,
    delay=0.3,
    thermal_amplitude=0.03,
    thermal_period_trials=700,
    jump_trials=[900, 1500],
    jump_threshold=[0.0, 0.08],
    jump_tau_m=[-0.05, 0.0],
    jump_tau_s=[0.04, 0.0],
    jump_gain=[0.0, -0.1],
    jump_delay=[0.2, 0.0],
)


def _network(rng: np.random.Generator) -> Network:
    layers = [Layer(8, 6, "axonal"), Layer(6, 3, "none")]
    w = [rng.uniform(0.3, 2.0, ly.weight_shape) for ly in layers]
    d = [rng.uniform(1.5, 4.0, layers[0].delay_shape), np.zeros(0)]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d)


def _quiet(params: BSS2Params) -> BSS2Params:
    """No trial noise, no jitter, unquantised: spike times a closed form can match."""
    return replace(
        params,
        threshold_trial_std=0.0,
        delay_jitter_std=0.0,
        quantise_weights=False,
        quantise_delays=False,
    )


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
    state = off.drift_state()  # without drift: factors of 1, the chip as calibrated
    np.testing.assert_array_equal(state.threshold_factor, np.ones(512))
    np.testing.assert_array_equal(state.threshold, off.params.threshold + off.threshold_offsets)
    np.testing.assert_array_equal(state.delay_offset[0], np.zeros(8))


@pytest.mark.parametrize(
    ("seed", "mismatch"), [(0, False), (1, False), (2, True)], ids=["0", "1", "mismatch"]
)
def test_each_neuron_fires_as_the_core_with_its_drifted_parameters_at_that_moment(seed, mismatch):
    params = BSS2Params().noiseless()
    if mismatch:  # the fixed pattern and the mismatch extension under the drift
        params = _quiet(
            replace(BSS2Params(), tau_m_mismatch_std=0.1, tau_s_mismatch_std=0.1,
                    weight_gain_std=0.1)
        )  # fmt: skip
    rng = np.random.default_rng(seed)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (60, 8))
    drv = EmulatorDriver("bss2", params, chip_seed=seed, drift=replace(BUSY, seed=seed))
    undrifted = EmulatorDriver("bss2", params, chip_seed=seed)
    drv.configure(net)
    undrifted.configure(net)
    g_l = params.neuron.g_l
    compared = 0
    for _ in range(30):  # 30 batches of 60 trials: past both jumps, around the period
        state = drv.drift_state()
        assert state.device_trials == drv.trials_run
        got = drv.run(t).times
        inputs = [t + net.d[0][None, :] + state.delay_offset[0][None, :], got[0]]
        first = 0
        for index in range(2):
            n_in, n_out = net.layers[index].n_in, net.layers[index].n_out
            for j in range(n_out):
                c = first + j
                tau_s, tau_m = state.tau_s[c], state.tau_m[c]
                # the chip's threshold keeps the nominal g_l: V = g_l theta_c
                v_th = g_l * state.threshold[c]
                one = Network(
                    [Layer(n_in, 1, "none")],
                    NeuronParams(tau_s=tau_s, tau_m=tau_m, theta=v_th * tau_m / tau_s),
                    [(net.w[index][:, j] * state.gain[index][:, j])[:, None]],
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
    # the host never learns the drift: what the driver reports is the undrifted chip's
    assert undrifted.applied is not None
    mine, theirs = drv.applied, undrifted.applied
    for a, b in zip(mine.w + mine.d, theirs.w + theirs.d, strict=True):
        np.testing.assert_array_equal(a, b)
    assert drv.applied.neuron == undrifted.applied.neuron
    assert drv.capabilities == undrifted.capabilities
    # and the drift did move every kind by the end
    end = drv.drift_state()
    for kind in ("threshold_factor", "tau_m_factor", "tau_s_factor"):
        assert np.std(getattr(end, kind)[:9]) > 0.01, kind
    assert np.std(end.gain_factor[0]) > 0.02 and np.std(end.delay_offset[0]) > 0.05


def test_walks_reach_their_spread_at_the_horizon_whatever_the_batching():
    spec = DriftSpec(
        horizon_trials=10_000, step_trials=100, threshold=0.1, tau_m=0.05, gain=0.1, delay=0.4
    )
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
    offsets = a.delay_offsets(0, 2000)
    assert abs(np.std(offsets) - 0.4) < 0.04 and abs(np.mean(offsets)) < 0.1
    other = ChipDrift(replace(spec, seed=1), 512, chip_seed=3)
    other.advance(10_000)
    assert not np.array_equal(other.neuron_factors()["threshold"], fa["threshold"])
    # halfway the spread is 1/sqrt(2) of it
    half = ChipDrift(spec, 512, chip_seed=3)
    half.advance(5000)
    assert abs(np.std(half.neuron_factors()["threshold"] - 1) - 0.1 / np.sqrt(2)) < 0.012
    with pytest.raises(ValueError, match="does not go back"):
        a.advance(9000)


def test_the_walk_spread_over_seeds_is_the_configured_one_for_every_circuit():
    # across 400 chips, each circuit's walk at the horizon has the configured spread:
    # the spread is one of the process, not an artefact of averaging over circuits
    spec = DriftSpec(horizon_trials=1000, step_trials=100, threshold=0.1)
    walks = np.empty((400, 16))
    for chip in range(400):
        drift = ChipDrift(spec, 16, chip_seed=chip)
        drift.advance(1000)
        walks[chip] = drift.neuron_factors()["threshold"] - 1.0
    per_circuit = np.std(walks, axis=0)
    assert np.all(np.abs(per_circuit - 0.1) < 0.02), per_circuit
    assert abs(np.mean(walks)) < 0.005


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
    np.testing.assert_array_equal(drift.gain_factors(0, (3, 4)), np.ones((3, 4)))
    warm = ChipDrift(DriftSpec(thermal_amplitude=0.04, thermal_period_trials=400), 300, 0)
    warm.advance(100)  # a quarter period: the peak
    f = warm.neuron_factors()
    np.testing.assert_allclose(f["threshold"], f["tau_m"])
    assert abs(np.mean(f["threshold"]) - 1.04) < 0.004 and np.std(f["threshold"]) > 0.005
    np.testing.assert_array_equal(f["tau_s"], np.ones(300))
    warm.advance(400)  # a full period: back
    np.testing.assert_allclose(warm.neuron_factors()["threshold"], 1.0, atol=1e-12)


def test_jumps_of_every_kind():
    spec = DriftSpec(
        jump_trials=[10, 20],
        jump_tau_m=[0.1, 0.1],
        jump_tau_s=[-0.2, 0.0],
        jump_gain=[0.0, 0.5],
        jump_delay=[0.3, -0.1],
    )
    drift = ChipDrift(spec, 4, chip_seed=0)
    drift.advance(10)
    f = drift.neuron_factors()
    np.testing.assert_array_equal(f["threshold"], np.ones(4))
    np.testing.assert_allclose(f["tau_m"], 1.1)
    np.testing.assert_allclose(f["tau_s"], 0.8)
    np.testing.assert_array_equal(drift.gain_factors(1, (2, 3)), np.ones((2, 3)))
    np.testing.assert_allclose(drift.delay_offsets(0, 5), 0.3)
    drift.advance(20)
    np.testing.assert_allclose(drift.neuron_factors()["tau_m"], 1.1 * 1.1)
    np.testing.assert_allclose(drift.gain_factors(1, (2, 3)), 1.5)
    np.testing.assert_allclose(drift.delay_offsets(0, 5), 0.2)


def test_the_jump_reaches_the_spikes_with_the_first_batch_that_starts_at_or_after_it():
    params = BSS2Params().noiseless()
    rng = np.random.default_rng(3)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (400, 8))
    spec = DriftSpec(jump_trials=[1000], jump_threshold=[0.08])
    drv = EmulatorDriver("bss2", params, drift=spec)
    ref = EmulatorDriver("bss2", params)
    for d in (drv, ref):
        d.configure(net)
    before = ref.run(t).times[0]
    starts = []
    for size in (400, 400, 300, 100, 100):  # batches start at 0, 400, 800, 1100, 1200
        starts.append(drv.trials_run)
        got = drv.run(t[:size]).times[0]
        same = np.array_equal(got, before[:size])
        # the batch over trials 800..1099 started before the jump: all of it unchanged
        assert same == (starts[-1] < 1000), (starts[-1], size)
    assert starts == [0, 400, 800, 1100, 1200] and drv.trials_run == 1300
    assert drv.drift_state().threshold_factor[0] == pytest.approx(1.08)
    both = np.isfinite(before[:100]) & np.isfinite(got)
    assert both.sum() > 50 and np.all(got[both] >= before[:100][both])  # fires later


def test_a_stream_clock_counts_only_the_services_stream_and_the_walk_can_start_later():
    spec = DriftSpec(horizon_trials=1000, step_trials=10, threshold=0.2, clock="stream")
    rng = np.random.default_rng(0)
    net, t = _network(rng), rng.uniform(0.0, 2.0, (100, 8))
    drv = EmulatorDriver("bss2", BSS2Params().noiseless(), drift=spec)
    drv.configure(net)
    for _ in range(5):  # re-observations: the chip does not age
        drv.run(t)
    np.testing.assert_array_equal(drv.drift_state().threshold_factor, np.ones(512))
    drv.stream_trials(1000)
    assert drv.device_trials == 1000 and drv.trials_run == 500
    assert np.std(drv.drift_state().threshold_factor) > 0.1
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


class _Clock:
    """A wall clock the test moves (Unix s)."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_a_seconds_clock_ages_the_chip_with_wall_time_and_a_fixed_origin_survives_a_restart():
    spec = DriftSpec(
        horizon_trials=10_000, step_trials=100, threshold=0.1, clock="seconds", trials_per_s=250.0
    )
    clock = _Clock(1_000_000.0)
    drv = EmulatorDriver("bss2", drift=spec, wall_clock_s=clock)
    assert drv.device_trials == 0
    clock.now_s += 10.0
    assert drv.device_trials == 2500  # 10 s x 250 trials/s, whether or not it ran
    clock.now_s -= 5.0  # the wall clock set back: the chip does not get younger
    assert drv.device_trials == 2500
    clock.now_s += 45.0  # 50 s after the start: the horizon
    assert drv.device_trials == 12_500
    state = drv.drift_state()
    assert state.device_trials == 12_500 and np.std(state.threshold_factor) > 0.08
    # a restarted process with its origin at the first start finds the chip as it is
    pinned = replace(spec, since_unix_s=1_000_000.0)
    again = EmulatorDriver("bss2", drift=pinned, wall_clock_s=clock)
    np.testing.assert_array_equal(again.drift_state().threshold_factor, state.threshold_factor)
    # without an origin, and with the trial clocks, a new driver starts a new chip clock
    fresh = EmulatorDriver("bss2", drift=spec, wall_clock_s=clock)
    assert fresh.device_trials == 0
    runs = EmulatorDriver("bss2", drift=replace(spec, clock="runs"))
    np.testing.assert_array_equal(runs.drift_state().threshold_factor, np.ones(512))


def test_the_drift_is_set_from_a_run_config_or_a_driver_option_table():
    data = apply_overrides(
        {"driver": {"name": "emulator-bss2"}},
        [
            "driver.drift.threshold=0.1",
            "driver.drift.horizon_trials=200000",
            "driver.drift.jump_trials=[30000]",
            "driver.drift.jump_threshold=[0.08]",
            "driver.drift.clock=stream",
        ],
    )
    spec = run_config_from_dict(data).driver.drift
    assert spec.active and spec.threshold == 0.1 and spec.jump_trials == [30_000]
    assert spec.clock == "stream" and spec.horizon_trials == 200_000
    drv = driver_from_config("emulator-bss2", drift={"tau_m": 0.05, "seed": 3})
    assert isinstance(drv, EmulatorDriver) and drv.drift is not None
    assert drv.drift.spec == DriftSpec(tau_m=0.05, seed=3)
    assert isinstance(drv.drift_state(), DriftState)
    with pytest.raises(ConfigError, match="wobble"):
        driver_from_config("emulator-bss2", drift={"wobble": 1})


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"threshold": -0.1}, "driver.drift.threshold must be in 0 .. 1"),
        ({"threshold": 1.5}, "threshold must be in 0 .. 1"),
        ({"gain": "big"}, "driver.drift.gain must be a number"),
        ({"tau_s": True}, "tau_s must be a number"),
        ({"delay": 11}, "delay must be in 0 .. 10"),
        ({"horizon_trials": 0}, "horizon_trials must be >= 1"),
        ({"step_trials": 2.5}, "step_trials must be an integer"),
        ({"step_trials": 2000, "horizon_trials": 1000}, r"step_trials must be in 1 \.\. horizon"),
        ({"thermal_amplitude": 0.6}, "thermal_amplitude must be in 0 .. 0.5"),
        ({"jump_trials": [10]}, "needs at least one of jump_threshold"),
        ({"jump_threshold": [0.1]}, r"jump_threshold \(1\) and jump_trials \(0\)"),
        ({"jump_trials": [10], "jump_tau_m": [0.1, 0.2]}, "must have the same length"),
        ({"jump_trials": [10, 5], "jump_threshold": [0.1, 0.1]}, "ascending"),
        ({"jump_trials": 10, "jump_threshold": [0.1]}, "jump_trials must be a list"),
        ({"jump_trials": [10], "jump_threshold": [3.0]}, "jump_threshold entries"),
        ({"jump_trials": [10], "jump_gain": [-0.9]}, r"jump_gain entries must be in -0.5 \.\. 1"),
        ({"jump_trials": [10], "jump_delay": [12.0]}, r"jump_delay entries must be in -10 \.\. 10"),
        ({"clock": "wall"}, "clock must be one of"),
        ({"trials_per_s": 0}, r"trials_per_s must be a number in \(0, 1e\+09\]"),
        ({"since_unix_s": -1}, "since_unix_s must be a Unix time >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"wobble": 0.1}, r"unknown field\(s\) wobble in \[driver.drift\]"),
    ],
)
def test_bad_drift_settings_are_refused_in_one_line(drift, message):
    with pytest.raises(ConfigError, match=message) as info:
        run_config_from_dict({"driver": {"name": "emulator-bss2", "drift": drift}})
    assert "\n" not in str(info.value)


def test_bad_settings_made_in_python_are_refused_too():
    with pytest.raises(ConfigError, match="clock must be 'runs', 'stream' or 'seconds'"):
        DriftSpec(clock="wall")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="jump_tau_s entries"):
        DriftSpec(jump_trials=[1], jump_tau_s=[True])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="jump_delay must be a list"):
        DriftSpec(jump_trials=[1], jump_delay=(0.1,))  # type: ignore[arg-type]


def test_drift_needs_the_emulated_chip():
    with pytest.raises(ConfigError, match=r"needs driver\.name = 'emulator-bss2'"):
        run_config_from_dict({"driver": {"name": "emulator-ideal", "drift": {"threshold": 0.1}}})
    with pytest.raises(ParameterError, match="mode 'bss2'"):
        EmulatorDriver("ideal", drift=DriftSpec(threshold=0.1))
    config = run_config_from_dict(
        {"driver": {"name": "emulator-bss2", "drift": {"threshold": 0.1, "seed": 4}}}
    )
    assert config.driver.drift.active and config.driver.drift.seed == 4
