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

from ._helpers import FakePyNN, hardware_like_network

P = BSS2Params()


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
    assert duration_ms == pytest.approx(2 * 180e-3)
    assert dropped == 1
    np.testing.assert_allclose(trains[0], [3.0e-3, (180 + 6.0) * 1e-3])
    assert trains[1].size == 0
    np.testing.assert_allclose(trains[2], [1.5e-3, (180 + 1.5) * 1e-3])


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
    trains = [np.array([200e-3, 190e-3, 10e-3, 400e-3]), np.array([])]  # ms, unsorted
    out, late = first_spikes(trains, 2, P)
    np.testing.assert_allclose(out[:, 0], [10 / 6, 10 / 6])
    assert np.all(np.isinf(out[:, 1]))
    assert late == 1  # 400 us lies beyond the second (last) trial


def _output_responder(offset_us: float):
    """Last HXNeuron population: neuron j fires at offset + j us in every trial (twice)."""

    def respond(pop):
        fake = pop.fake
        layer_pops = [p for p in fake.populations if p.kind == "HXNeuron" and not p.parameters]
        n_batch = round(fake.calls[[c[0] for c in fake.calls].index("run")][1] / 0.18)
        if pop is layer_pops[-1]:
            trains = []
            for j in range(pop.size):
                starts = np.arange(n_batch) * 180.0 + offset_us + j
                trains.append(np.concatenate([starts, starts + 5.0]) / 1000.0)
            return trains
        return [np.array([]) for _ in range(pop.size)]

    return respond


def test_run_builds_the_network_and_reads_first_spikes():
    fake = FakePyNN(responder=_output_responder(12.0))
    net = hardware_like_network(0)
    drv = BrainScaleS2Driver(pynn_module=fake, calibration="/calib/chip.pbin")
    drv.configure(net)
    t = np.random.default_rng(0).uniform(0.15, 2.0, (5, net.n_inputs))
    obs = drv.run(t)
    names = [c[0] for c in fake.calls]
    assert names[0] == "setup" and names[-1] == "end" and names.count("run") == 1
    assert fake.calls[0][1] == {"initial_config": ("calibration", drv.calibration)}
    assert fake.calls[names.index("run")][1] == pytest.approx(5 * 0.18)
    kinds = [(p.kind, p.size) for p in fake.populations]
    assert kinds == [("SpikeSourceArray", 8), ("HXNeuron", 8), ("HXNeuron", 12),
                     ("HXNeuron", 12), ("HXNeuron", 3)]  # fmt: skip
    src = fake.populations[0].parameters["spike_times"]
    np.testing.assert_allclose(np.concatenate(src), np.concatenate(pack_trials(t, P)[0]))
    cfg = drv.config
    np.testing.assert_array_equal(
        fake.populations[1].parameters["refractory_period_refractory_time"],
        cfg.layers[0].refractory_cycles,
    )
    for proj in fake.projections:
        assert proj["receptor"] in ("excitatory", "inhibitory")
        assert np.all(proj["weight"] >= 0) and np.all(proj["weight"] <= 63)
    to_layer1 = [p for p in fake.projections if p["pre"] == 1 and p["post"] == 2]
    by_receptor = {p["receptor"]: p["weight"] for p in to_layer1}
    np.testing.assert_array_equal(by_receptor["excitatory"], cfg.layers[0].excitatory)
    if "inhibitory" in by_receptor:
        np.testing.assert_array_equal(by_receptor["inhibitory"], cfg.layers[0].inhibitory)
    drive = [p for p in fake.projections if p["pre"] == 0]
    assert len(drive) == 1 and np.array_equal(drive[0]["weight"], 63 * np.eye(8))
    np.testing.assert_allclose(obs.output, np.tile((12.0 + np.arange(3)) / 6.0, (5, 1)))
    assert np.all(np.isinf(obs.times[0])) and np.all(np.isinf(obs.arrivals[0]))


def test_a_failing_run_is_a_driver_error_and_ends_the_session():
    fake = FakePyNN(fail_on_run=True)
    drv = BrainScaleS2Driver(pynn_module=fake)
    drv.configure(hardware_like_network())
    with pytest.raises(DriverError, match="no connection"):
        drv.run(np.ones((2, 8)))
    assert fake.calls[-1][0] == "end"
    assert fake.calls[0] == ("setup", {})


def test_delay_elements_count_against_the_neuron_budget():
    layers = [Layer(300, 250, "axonal")]  # 250 neurons + 300 delay elements > 512
    net = Network(layers, NeuronParams(tau_m=1.0, theta=2.6), [np.zeros((300, 250))],
                  [np.full(300, 2.0)])  # fmt: skip
    with pytest.raises(CapabilityError, match="delay elements"):
        BrainScaleS2Driver(pynn_module=FakePyNN()).configure(net)


def test_capabilities_state_the_chip_figures():
    caps = BrainScaleS2Driver(pynn_module=FakePyNN()).capabilities
    assert caps.time_unit_us == 6.0 and caps.weight_max == pytest.approx(2.1)
    assert caps.weight_resolution == pytest.approx(1 / 30)
    assert caps.delay_min * 6 == pytest.approx(8.25) and caps.delay_max * 6 == pytest.approx(33.25)
    assert caps.delay_resolution * 6 == pytest.approx(0.125)
    assert caps.delay_kinds == ("none", "axonal") and caps.max_trial_length == 30.0
