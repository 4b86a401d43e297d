"""Issue 26: a calibration that runs on today's calix, the driver's check of the file, the
router's fan-in limit, and the PyNN stand-in held to the real stack's rules.

Everything runs against the stricter stand-ins (``_helpers.FakePyNN``, ``_fake_stack``);
each test names the real source its rule was read from.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from delgrad.drivers import BrainScaleS2Driver, CapabilityError, DriverError
from delgrad.drivers._bss2_calibrate import BSS2Stack, calibrate_bss2_chip, spiking_target
from delgrad.drivers._bss2_recipe import read_record, record_path, write_record
from delgrad.drivers._bss2_routing import MAX_INPUTS_PER_LAYER, padi_bus_of
from delgrad.runtime import Layer, Network, NeuronParams
from delgrad.tools._cli import main

from ._fake_stack import HAL, HALCO, HXCOMM, STA, FakeCalix, NeuronCalibTarget, SpikingCalibTarget
from ._helpers import (
    EARLY_SET_MESSAGE,
    FakeConnectionError,
    FakePyNN,
    fake_calibration_file,
    hardware_like_network,
)

HARDWARE_MD = Path(__file__).resolve().parents[2] / "docs" / "hardware.md"


def _stack(fake: FakePyNN, calix: FakeCalix | None = None) -> BSS2Stack:
    return BSS2Stack(calix or FakeCalix(), fake, STA, HXCOMM, HAL, HALCO)


# --- 1. the calibration tool ------------------------------------------------------------------


def test_the_stand_in_calix_refuses_keywords_and_quantities():
    """calix today: ``SpikingCalibTarget.__init__(self)`` takes no arguments
    (calix src/py/calix/spiking/__init__.py), ``NeuronCalibTarget`` has only a default
    constructor (include/ccalix/neuron_calib_target.h), and a quantity assigned to a time
    constant raises TypeError (tests/sw/py/test_types.py, test_assignment)."""
    with pytest.raises(TypeError):
        SpikingCalibTarget(neuron_target=NeuronCalibTarget())  # the old docs' call
    with pytest.raises(TypeError):
        NeuronCalibTarget(leak=80, tau_mem=6e-6)  # the authors' run_calix call
    nt = NeuronCalibTarget()
    with pytest.raises(TypeError):
        nt.tau_mem[0] = np.array(6.0)  # a quantities.Quantity is an ndarray
    with pytest.raises(TypeError):
        nt.tau_mem = 6e-6  # whole fields are arrays, set by item or fill
    nt.tau_mem[3] = 6e-6
    nt.tau_syn[3].fill(6e-6)
    assert nt.tau_mem[3] == 6e-6 and nt.tau_syn.to_numpy()[3].tolist() == [6e-6, 6e-6]


def test_the_recipe_targets_are_set_field_by_field_in_seconds():
    """The targets of the authors' run_initial_calibration (JulianGoeltz/fastAndDeep
    src/delay_utils.py), built as calix's calix_generate_default_calibration.py builds its
    'spiking2' target: default-constructed, ``.fill()`` and item assignment."""
    stack = _stack(FakePyNN())
    pre = spiking_target(stack, pre=True).neuron_target
    assert set(pre.tau_mem.to_numpy()) == {15e-6} and pre.cuba_synin.i_synin_gm == 50
    full = spiking_target(stack, pre=False, gm_delay=list(range(100, 356))).neuron_target
    tau_m, tau_s = full.tau_mem.to_numpy(), full.tau_syn.to_numpy()
    assert set(tau_m[:256]) == {6e-6} and set(tau_m[256:]) == {15e-6}
    assert set(tau_s[:256].ravel()) == {6e-6} and set(tau_s[256:].ravel()) == {10e-6}
    assert set(full.refractory_time.to_numpy()) == {20e-6} and full.synapse_dac_bias == 1022
    gm = full.cuba_synin.i_synin_gm.to_numpy()[:, 0]
    assert np.all(np.abs(gm[:256] - 547) <= 20) and gm[256:].tolist() == list(range(100, 356))


def test_calibrate_writes_one_file_the_driver_accepts_with_working_delays(tmp_path):
    """calibrate_bss2_chip: calix pre-calibration and two-halves calibration (calix
    src/py/calix/calib_cache.py ``calibrate(target, ..., connection=StatefulConnection)``),
    then the delay elements bisected through PyNN as the authors' calibrate_delays
    (JulianGoeltz/fastAndDeep src/delay_utils.py), saved with
    ``builder.write(halco.ChipOnDLS(), chip)`` / ``sta.to_portablebinary`` and read back
    with pynn-brainscales ``helper.chip_from_file``."""
    fake, calix = FakePyNN(), FakeCalix()
    out = tmp_path / "chip.pbin"
    assert calibrate_bss2_chip(out, _stack(fake, calix)) == []
    assert len(calix.calls) == 2 and not fake.live  # pre + two halves; session ended
    assert read_record(out)["delay_pairs_calibrated"] == 128
    drv = BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=out)  # the check passes
    delays = drv.measure_delays((50, 250), n_trials=2)
    assert np.all(np.isfinite(delays))
    np.testing.assert_allclose(delays, np.array([[8.25], [33.25]]) + 0 * delays, atol=0.9)


def test_bss2_calibrate_without_the_stack_says_what_is_missing(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "calix", None)
    code = main(["bss2", "calibrate", "--out", str(tmp_path / "chip.pbin")])
    assert code == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "needs the BrainScaleS-2 stack (calix" in line and "\n" not in line


# --- 2. the driver's check of the calibration file -------------------------------------------


def test_a_calix_default_calibration_is_refused_naming_every_mismatch():
    """calix's defaults (neuron_calib_target.cpp: tau 10 us, refractory 2 us; the nightly
    'spiking' calibration, calix_generate_default_calibration.py) leave the adaptation
    compartments at lola's 0 (calix never writes adaptation.v_ref / v_leak)."""
    path = fake_calibration_file("defaults.pbin", kind="calix-defaults")
    with pytest.raises(DriverError) as info:
        BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=path)
    lines = str(info.value).splitlines()
    assert "does not fit the DelGrad recipe (3 problems" in lines[0]
    body = "\n".join(lines[1:])
    assert len(lines) == 4 and all("Fix:" in line for line in lines[1:])
    assert "delay elements not calibrated" in body and "128 of 128" in body
    assert re.search(r"refractory time of the layer neurons is 1\.98 us", body)
    assert "tau_m and tau_s cannot be checked" in body
    assert all("delgrad bss2 calibrate" in line for line in lines[1:])


def test_time_constants_of_the_record_are_checked_one_line_each(tmp_path):
    path = fake_calibration_file("tau10.pbin")
    record = read_record(path)
    record["network"]["tau_mem_s"] = record["network"]["tau_syn_s"] = 10e-6
    record["refractory_time_s"] = 2e-6
    write_record(path, record)
    with pytest.raises(DriverError) as info:
        BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=path)
    lines = str(info.value).splitlines()[1:]
    assert [line.split()[1] for line in lines[:2]] == ["tau_m", "tau_s"]
    assert "was calibrated to 10 us, the recipe's is 6 us" in lines[0]
    assert "refractory time of 2 us" in lines[2] and len(lines) == 3
    record_path(path).unlink()


def test_without_delay_calibration_the_delays_are_unusable_and_measure_delays_shows_it():
    """The stand-in's delay elements depend on the file: calix alone leaves the
    adaptation compartments off their operating point and they never fire."""
    path = fake_calibration_file("no-delays.pbin", kind="no-delays")
    with pytest.raises(DriverError, match="delay elements not calibrated") as info:
        BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=path)
    assert len(str(info.value).splitlines()) == 2  # only that problem
    drv = BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=path, check_calibration=False)
    assert np.all(np.isnan(drv.measure_delays((100,), n_pairs=8, n_trials=2)))


# --- 3. the router's fan-in ------------------------------------------------------------------


def test_a_784_input_network_is_refused_at_configure_time_with_the_fan_in_message():
    """grenade RoutingConstraints::check (src/grenade/vx/network/routing/greedy/
    routing_constraints.cpp): in-degree per neuron <= 256 synapse rows; each input costs
    2 synapses (excitatory + inhibitory projection; pynn-brainscales projections.py
    round_up_63 gives a zero weight one synapse)."""
    fake = FakePyNN()
    drv = BrainScaleS2Driver(pynn_module=fake, calibration=fake_calibration_file())
    layers = [Layer(784, 100), Layer(100, 10)]
    net = Network(layers, NeuronParams(tau_m=1.0, theta=2.6),
                  [np.zeros(ly.weight_shape) for ly in layers])  # fmt: skip
    with pytest.raises(CapabilityError) as info:
        drv.configure(net)
    message = str(info.value)
    assert "layer 0: 784 inputs need 1568 synapses per neuron" in message
    assert "at most 128 inputs per layer" in message and "pooled" in message
    assert "layer 1" not in message and "\n" not in message
    assert "setup" not in [c[0] for c in fake.calls]  # refused before the stack is asked
    assert MAX_INPUTS_PER_LAYER == 128
    ok = [Layer(128, 100), Layer(100, 10)]
    drv.configure(Network(ok, NeuronParams(tau_m=1.0, theta=2.6),
                          [np.zeros(ly.weight_shape) for ly in ok]))  # fmt: skip


def test_padi_buses_follow_the_source_column():
    """halco NeuronColumnOnDLS::toNeuronEventOutputOnDLS (256 columns on 8 outputs) and
    grenade InternalConnection::toPADIBusOnDLS (crossbar input % 4)."""
    assert [padi_bus_of(c) for c in (0, 31, 32, 127, 128, 159, 257, 511)] == [
        0, 0, 1, 3, 0, 0, 0, 3]  # fmt: skip


# --- 4. the stand-in's rules -------------------------------------------------------------------


def test_the_sign_is_checked_on_the_unrounded_weight_at_construction():
    """pynn-brainscales projections.py: Connection.__init__ checks parameters["weight"]
    before _set_weight rounds it; _set_weight (Projection.set) checks the rounded one."""
    fake = FakePyNN()
    fake.setup(initial_config=fake.helper.chip_from_file(fake_calibration_file()))
    pre = fake.Population(2, fake.cells.SpikeSourceArray())
    post = fake.Population(1, fake.cells.HXNeuron())
    syn = fake.synapses.StaticSynapse
    with pytest.raises(FakeConnectionError):
        fake.Projection(pre, post, "all-to-all", syn(weight=-0.3), "excitatory")
    proj = fake.Projection(pre, post, "all-to-all", syn(weight=0.0), "excitatory")
    proj.set(weight=-0.3)  # rounds to 0: accepted, as the stack does
    with pytest.raises(FakeConnectionError):
        proj.set(weight=-0.6)


def test_two_runs_without_reset_and_early_parameter_changes_raise():
    """simulator.py State.run raises RuntimeError for a second run without reset;
    cells.py HXNeuron.validate_parameter_space raises RuntimeError for a set before the
    initial config is applied (it is not silently overwritten)."""
    fake = FakePyNN()
    fake.setup(initial_config=fake.helper.chip_from_file(fake_calibration_file()))
    pop = fake.Population(2, fake.cells.HXNeuron())
    with pytest.raises(RuntimeError, match=re.escape(EARLY_SET_MESSAGE[:40])):
        pop.set(leak_i_bias=100)
    fake.run(0.1)
    with pytest.raises(RuntimeError, match=r"Call `pynn.reset\(\)` before"):
        fake.run(0.1)
    fake.reset()
    pop.set(leak_i_bias=100)
    fake.run(0.1)
    drv = BrainScaleS2Driver(pynn_module=FakePyNN(), calibration=fake_calibration_file())
    net = hardware_like_network()
    drv.configure(net)
    for _ in range(2):  # the driver resets after every run
        drv.run(np.full((2, net.n_inputs), 1.0))


# --- docs --------------------------------------------------------------------------------------


def test_the_checklist_names_no_call_current_calix_rejects():
    text = HARDWARE_MD.read_text()
    assert "delgrad bss2 calibrate --out chip.pbin" in text
    for call in re.findall(r"(?:Spiking|Neuron)CalibTarget\(([^)]*)\)", text):
        assert call == "", f"calix targets take no constructor arguments: {call!r}"
    assert "pq.us" not in text and "* pq." not in text
