"""The BrainScaleS-2 driver: pure translation, packing and read-out, and its calls into PyNN
(against a recording stand-in: no stack and no chip are available here)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from delgrad.drivers import (
    BackendUnavailableError,
    BrainScaleS2Driver,
    BSS2Params,
    CapabilityError,
    DriverError,
    first_spikes,
    import_pynn,
    pack_trials,
    translate_network,
)
from delgrad.runtime import Layer, Network, NeuronParams

from ._helpers import FakePyNN, fake_calibration_file, hardware_like_network

P = BSS2Params()
SLOT_US = 180.0 + 90.0  # trial window + guard gap (TRIAL_GUARD_US)


def _driver(fake: FakePyNN, **options) -> BrainScaleS2Driver:
    return BrainScaleS2Driver(pynn_module=fake, calibration=fake_calibration_file(), **options)


def test_missing_stack_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynn_brainscales", None)
    monkeypatch.setitem(sys.modules, "pynn_brainscales.brainscales2", None)
    with pytest.raises(BackendUnavailableError, match="pynn_brainscales") as info:
        import_pynn()
    assert isinstance(info.value, ImportError)
    assert "EmulatorDriver" in str(info.value)
    with pytest.raises(BackendUnavailableError):
        BrainScaleS2Driver()


def test_importing_drivers_never_touches_the_stack():
    code = (
        "import sys, logging, delgrad.drivers; "
        "print(any(m.startswith('pynn') for m in sys.modules), len(logging.getLogger().handlers))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False 0" and out.stderr == ""


def test_translate_network_codes_and_refractory_settings():
    layers = [Layer(3, 2, "axonal", bias_times=(0.5,)), Layer(2, 1)]
    w0 = np.array([[1.0, -0.5], [2.5, 0.0], [-3.0, 0.02], [0.1, -0.1]])
    d0 = np.array([2.0, 1.0, 5.0, 6.0])  # 12, 6, 30, 36 us
    net = Network(layers, NeuronParams(tau_m=1.0, theta=2.6), [w0, np.ones((2, 1))],
                  [d0, np.zeros(0)])  # fmt: skip
    cfg = translate_network(net, P)
    exc, inh = cfg.layers[0].excitatory, cfg.layers[0].inhibitory
    np.testing.assert_array_equal(exc, [[30, 0], [63, 0], [0, 1], [3, 0]])
    np.testing.assert_array_equal(inh, [[0, 15], [0, 0], [63, 0], [0, 3]])
    # tref = clip(round((d_us - 2) * 8), 50, 250)
    np.testing.assert_array_equal(cfg.layers[0].refractory_cycles, [80, 50, 224, 250])
    assert cfg.layers[1].refractory_cycles is None
    assert cfg.clipped_weights == 2 and cfg.clipped_delays == 2
    np.testing.assert_allclose(cfg.realised.d[0] * 6, [12.0, 8.25, 30.0, 33.25])
    np.testing.assert_array_equal(cfg.realised.w[0], (exc - inh) / 30.0)
    assert cfg.layers[0].bias_times == (0.5,)


def test_pack_trials_layout():
    t = np.array([[0.5, np.inf], [1.0, 31.0]])
    trains, duration_ms, dropped = pack_trials(t, P, bias_times=(0.25,))
    assert duration_ms == pytest.approx(2 * SLOT_US * 1e-3)
    assert dropped == 1
    np.testing.assert_allclose(trains[0], [3.0e-3, (SLOT_US + 6.0) * 1e-3])
    assert trains[1].size == 0
    np.testing.assert_allclose(trains[2], [1.5e-3, (SLOT_US + 1.5) * 1e-3])


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 6), st.integers(1, 5)),
        elements=st.one_of(st.floats(0.0, 29.99), st.just(np.inf)),
    )
)
def test_pack_then_read_out_round_trips(t):
    trains, _, dropped = pack_trials(t, P)
    assert dropped == 0
    out, late = first_spikes(trains, t.shape[0], P)
    assert late == 0
    np.testing.assert_array_equal(np.isinf(out), np.isinf(t))
    finite = np.isfinite(t)
    np.testing.assert_allclose(out[finite], t[finite], atol=1e-9)


def test_first_spikes_takes_the_first_per_window_and_counts_late_ones():
    # ms, unsorted; neuron 0: trial 0 at 10 us (and 200 us, late but not first),
    # trial 1 at 280 - 270 = 10 us; neuron 2: only after the window (190 us), and
    # after the run's end (600 us), both late
    trains = [np.array([200e-3, 280e-3, 10e-3]), np.array([]), np.array([190e-3, 600e-3])]
    out, late = first_spikes(trains, 2, P)
    np.testing.assert_allclose(out[:, 0], [10 / 6, 10 / 6])
    assert np.all(np.isinf(out[:, 1:]))
    assert late == 2


def _output_responder(offset_us: float):
    """Last layer population: neuron j fires at offset + j us in every trial (twice)."""

    def respond(pop):
        fake = pop.fake
        layers = [p for p in fake.populations if p.kind == "HXNeuron" and max(p.circuits) < 256]
        n_batch = round(fake.last_duration / (SLOT_US * 1e-3))
        if pop is layers[-1]:
            trains = []
            for j in range(pop.size):
                starts = np.arange(n_batch) * SLOT_US + offset_us + j
                trains.append(np.concatenate([starts, starts + 5.0]) / 1000.0)
            return trains
        return [np.array([]) for _ in range(pop.size)]

    return respond


def test_run_builds_the_network_and_reads_first_spikes():
    fake = FakePyNN(responder=_output_responder(12.0))
    net = hardware_like_network(0)
    drv = _driver(fake)
    drv.configure(net)
    t = np.random.default_rng(0).uniform(0.15, 2.0, (5, net.n_inputs))
    obs = drv.run(t)
    names = [c[0] for c in fake.calls]
    # the file is read once for the check at start, once for the session
    assert names[:3] == ["chip_from_file", "chip_from_file", "setup"] and names[-1] == "reset"
    setup = fake.calls[2][1]
    assert setup["initial_config"].path == drv.calibration
    assert fake.calls[-2] == ("run", pytest.approx(5 * SLOT_US * 1e-3))
    kinds = [(p.kind, p.size) for p in fake.populations]
    # inputs; layer neurons; reset compartments; adaptation compartments
    hx = [("HXNeuron", n) for n in (12, 3, 8, 12, 8, 12)]
    assert kinds == [("SpikeSourceArray", 8), *hx]
    src = fake.populations[0].parameters["spike_times"]
    np.testing.assert_allclose(np.concatenate(src), np.concatenate(pack_trials(t, P)[0]))
    cfg = drv.config
    np.testing.assert_array_equal(
        fake.populations[3].parameters["refractory_period_refractory_time"],
        cfg.layers[0].refractory_cycles,
    )
    for proj in fake.projections:
        assert proj.receptor in ("excitatory", "inhibitory")
        if proj.connector == "all-to-all":
            assert np.all(np.abs(proj.weight) <= 63)
    # layer 1 is driven by the adaptation compartments of its delay elements (pop 6)
    to_layer1 = [p for p in fake.projections if p.pre.index == 6 and p.post.index == 2]
    by_receptor = {p.receptor: p.weight for p in to_layer1}
    np.testing.assert_array_equal(by_receptor["excitatory"], cfg.layers[1].excitatory)
    np.testing.assert_array_equal(by_receptor["inhibitory"], -cfg.layers[1].inhibitory)
    drive = [p for p in fake.projections if p.pre.index == 0]
    assert len(drive) == 1 and drive[0].connector == "one-to-one" and drive[0].post.index == 3
    np.testing.assert_allclose(obs.output, np.tile((12.0 + np.arange(3)) / 6.0, (5, 1)))
    assert np.all(np.isinf(obs.times[0]))
    # the stand-in's clock (7.8125 cycles per us) against the authors' map (8): <= 0.125 tau_s
    np.testing.assert_allclose(obs.arrivals[0], t + drv.applied.d[0], atol=0.13)
    assert np.all(np.isinf(obs.arrivals[1]))  # the hidden layer never fired
    assert obs.late_spikes == 0


def test_a_failing_run_is_a_driver_error_and_ends_the_session():
    fake = FakePyNN(fail_on_run=True)
    drv = _driver(fake)
    drv.configure(hardware_like_network())
    with pytest.raises(DriverError, match="no connection"):
        drv.run(np.ones((2, 8)))
    assert fake.calls[-1][0] == "end" and not fake.live
    fake.fail_on_run = False
    drv.run(np.ones((2, 8)))  # a new session is opened for the next run
    assert [c[0] for c in fake.calls].count("setup") == 2


def test_delay_elements_count_against_their_own_circuit_budget():
    # 250 layer neurons fit the lower half, but 300 delay elements need 600 circuits
    layers = [Layer(300, 250, "axonal")]
    net = Network(layers, NeuronParams(tau_m=1.0, theta=2.6), [np.zeros((300, 250))],
                  [np.full(300, 2.0)])  # fmt: skip
    with pytest.raises(CapabilityError, match="delay elements"):
        _driver(FakePyNN()).configure(net)


def test_capabilities_state_the_chip_figures():
    caps = _driver(FakePyNN()).capabilities
    assert caps.time_unit_us == 6.0 and caps.weight_max == pytest.approx(2.1)
    assert caps.weight_resolution == pytest.approx(1 / 30)
    assert caps.delay_min * 6 == pytest.approx(8.25) and caps.delay_max * 6 == pytest.approx(33.25)
    assert caps.delay_resolution * 6 == pytest.approx(0.125)
    assert caps.delay_kinds == ("none", "axonal") and caps.max_trial_length == 30.0
    assert caps.max_neurons == 256  # layer neurons on circuits 0..255
