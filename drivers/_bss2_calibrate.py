"""The DelGrad calibration of a BrainScaleS-2 chip: calix, then the delay elements, one file.

Written against today's calix (electronicvisions/calix): ``SpikingCalibTarget()`` and
``NeuronCalibTarget()`` have only default constructors (``include/ccalix/*_target.h``;
the Python ``SpikingCalibTarget.__init__(self)`` in ``src/py/calix/spiking/__init__.py``),
so targets are set field by field, in seconds, with ``.fill()`` or item assignment per
``halco.AtomicNeuronOnDLS`` (as calix's own ``calix_generate_default_calibration.py``
does); quantities are refused (``tests/sw/py/test_types.py``). Steps:

1. calix pre-calibration, the delay elements' targets on all circuits, one global
   ``i_synin_gm``: its per-circuit ``excitatory_input.i_bias_gm`` become the delay half's
   targets (the authors' ``run_initial_calibration``);
2. calix two-halves calibration (:mod:`delgrad.drivers._bss2_recipe`), per-circuit
   ``i_synin_gm`` as ``UncalibratedCubaSynapticInput``; applied to a builder and read back
   as a ``lola.Chip`` (pynn-brainscales ``helper.chip_from_portable_binary``);
3. the delay elements' operating points through PyNN, one pair at a time, 8-step
   bisections as the authors' ``calibrate_delays`` (adaptation_v_ref to a mean
   adaptation trace of 500; adaptation_v_leak and leak_v_leak to a resting membrane of
   600; threshold_v_threshold to halfway between rest and the peak after one input),
   with the driver's pair settings and refractory clocks;
4. the found values written into the chip object (``atomic_neurons[coord].adaptation.v_ref``
   ...) and saved with ``builder.write(halco.ChipOnDLS(), chip)`` /
   ``sta.to_portablebinary`` (what the authors' step 3 did), plus a record of the targets
   (``<file>.json``) that the driver checks at start.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.drivers._bss2 import PYNN_MODULE
from delgrad.drivers._bss2_io import (
    DELAY_ADAPTATION_PARAMETERS,
    DELAY_ADAPTATION_PULSE_CLOCK_SCALE,
    DELAY_DRIVE_WEIGHT,
    DELAY_FIRST_CIRCUIT,
    DELAY_PAIRS,
    DELAY_RESET_PARAMETERS,
    DELAY_SLOW_CLOCK_SCALE,
    NETWORK_CIRCUITS,
)
from delgrad.drivers._bss2_recipe import (
    ADAPTATION_TARGET,
    BISECTION_RANGE,
    BISECTION_STEPS,
    DELAY_TARGETS,
    MEMBRANE_CAPACITANCE,
    NETWORK_I_SYNIN_GM,
    NETWORK_I_SYNIN_GM_SPREAD,
    NETWORK_TARGETS,
    PRE_CALIBRATION_I_SYNIN_GM,
    REFRACTORY_TIME_S,
    REST_TARGET,
    SYNAPSE_DAC_BIAS,
    check_calibration,
    recipe_record,
    write_record,
)
from delgrad.errors import BackendUnavailableError

log = logging.getLogger("delgrad.bss2.calibrate")

#: Length of one measurement run (ms) and the input's time in it, as the authors use.
RUN_MS = 0.3
INPUT_MS = 0.1
#: Refractory setting of the reset compartments while calibrating (the authors': 50).
CALIBRATION_TREF = 50


@dataclass(frozen=True)
class BSS2Stack:
    """The parts of the BrainScaleS-2 stack the calibration uses (tests inject stand-ins)."""

    calix: Any  # calix: .calibrate, .spiking, .common.base
    pynn: Any  # pynn_brainscales.brainscales2
    sta: Any  # dlens_vx_v3.sta
    hxcomm: Any  # dlens_vx_v3.hxcomm
    hal: Any  # dlens_vx_v3.hal
    halco: Any  # dlens_vx_v3.halco


def load_stack() -> BSS2Stack:
    """Import the real stack, or :class:`BackendUnavailableError` saying what is missing."""
    try:
        calix = importlib.import_module("calix")
        for name in ("calix.spiking", "calix.spiking.neuron", "calix.common.base"):
            importlib.import_module(name)
        dlens = importlib.import_module("dlens_vx_v3")
        pynn = importlib.import_module(PYNN_MODULE)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"`delgrad bss2 calibrate` needs the BrainScaleS-2 stack (calix, dlens_vx_v3, "
            f"{PYNN_MODULE}), which is not installed here ({exc.name or exc}); run it on a "
            "machine with the stack, e.g. the EBRAINS BrainScaleS-2 service"
        ) from exc
    return BSS2Stack(calix, pynn, dlens.sta, dlens.hxcomm, dlens.hal, dlens.halco)


def spiking_target(stack: BSS2Stack, *, pre: bool, gm_delay: list[int] | None = None,
                   seed: int = 0) -> Any:  # fmt: skip
    """A ``SpikingCalibTarget`` with the recipe's targets, set field by field.

    Args:
        pre: the pre-calibration (delay elements' targets on every circuit, one global
            ``i_synin_gm``); else the two-halves calibration.
        gm_delay: per delay-half circuit (256 values), the pre-calibration's
            ``i_bias_gm``, used as that half's ``i_synin_gm`` (two-halves only).
        seed: draws the +-20 spread of the layer neurons' ``i_synin_gm``.
    """
    target = stack.calix.spiking.SpikingCalibTarget()
    nt = target.neuron_target
    coords = list(stack.halco.iter_all(stack.halco.AtomicNeuronOnDLS))
    for i, an in enumerate(coords):
        half = DELAY_TARGETS if pre or i >= NETWORK_CIRCUITS else NETWORK_TARGETS
        nt.leak[an] = half.leak
        nt.reset[an] = half.reset
        nt.threshold[an] = half.threshold
        nt.tau_mem[an] = half.tau_mem_s
        nt.tau_syn[an].fill(half.tau_syn_s)
    nt.membrane_capacitance.fill(MEMBRANE_CAPACITANCE)
    nt.refractory_time.fill(REFRACTORY_TIME_S)
    nt.synapse_dac_bias = SYNAPSE_DAC_BIAS
    cls = stack.calix.spiking.neuron.NeuronCalibTarget
    if pre:
        synin = cls.CalibratedMatchingCubaSynapticInput()
        synin.i_synin_gm = PRE_CALIBRATION_I_SYNIN_GM
    else:
        if gm_delay is None or len(gm_delay) != len(coords) - NETWORK_CIRCUITS:
            raise ValueError("gm_delay needs one value per delay-half circuit")
        spread = np.random.default_rng(seed).integers(
            -NETWORK_I_SYNIN_GM_SPREAD, NETWORK_I_SYNIN_GM_SPREAD, NETWORK_CIRCUITS
        )
        synin = cls.UncalibratedCubaSynapticInput()
        for i, an in enumerate(coords):
            gm = NETWORK_I_SYNIN_GM + int(spread[i]) if i < NETWORK_CIRCUITS else gm_delay[
                i - NETWORK_CIRCUITS]  # fmt: skip
            synin.i_synin_gm[an].fill(int(gm))
    nt.cuba_synin = synin  # assigned whole: the variant member is not edited in place
    return target


def calibrate_network(stack: BSS2Stack, seed: int = 0) -> Any:
    """Steps 1-2: the calix calibrations; returns the calibrated ``lola.Chip``."""
    base = stack.calix.common.base
    coords = list(stack.halco.iter_all(stack.halco.AtomicNeuronOnDLS))
    with stack.hxcomm.ManagedConnection() as handle:
        connection = base.StatefulConnection(handle)
        log.info("calix pre-calibration (delay-element targets on every circuit)")
        pre = stack.calix.calibrate(
            spiking_target(stack, pre=True), cache_paths=[], connection=connection
        )
        neurons = pre.neuron_result.neurons
        gm = [int(_value(neurons[c].excitatory_input.i_bias_gm)) for c in coords[256:]]
        log.info("calix two-halves calibration")
        result = stack.calix.calibrate(
            spiking_target(stack, pre=False, gm_delay=gm, seed=seed),
            cache_paths=[],
            connection=connection,
        )
    builder = base.WriteRecordingPlaybackProgramBuilder()
    result.apply(builder)
    return stack.pynn.helper.chip_from_portable_binary(
        stack.sta.to_portablebinary(builder.done()[1])
    )


def _value(x: Any) -> float:
    """A CapMem value or plain number as float (``hal.CapMemCell.Value.value()``)."""
    return float(x.value()) if hasattr(x, "value") else float(x)


def _bisect(pynn: Any, trial: Callable[[int], bool]) -> int:
    """8-step bisection over [200, 1000): ``trial(pivot)`` True lowers the upper end."""
    lower, upper = BISECTION_RANGE
    pivot = (lower + upper) // 2
    for _ in range(BISECTION_STEPS):
        pivot = (lower + upper) // 2
        if trial(pivot):
            upper = pivot
        else:
            lower = pivot
    return pivot


def _measure(pynn: Any, view: Any, name: str, value: int, observable: str) -> tuple[Any, Any]:
    """Set ``name`` on ``view``, run once, return (trace, spike trains); reset.

    The data is read with ``clear=True`` (PyNN ``get_data``): thousands of runs would
    otherwise keep every earlier segment.
    """
    view.set(**{name: value})
    pynn.run(RUN_MS)
    spikes = None
    if observable == "v" and "threshold" in name:
        spikes = view.get_data("spikes").segments[-1].spiketrains
    block = view.get_data(observable, clear=True)
    trace = np.asarray(block.segments[-1].irregularlysampledsignals[0])
    pynn.reset()
    return trace, spikes


def calibrate_delay_elements(
    stack: BSS2Stack, chip: Any, pairs: int = DELAY_PAIRS
) -> dict[str, list]:
    """Step 3: each pair's operating point; returns per pair the four values found."""
    pynn = stack.pynn
    halco = stack.halco
    for coord in halco.iter_all(halco.CommonNeuronBackendConfigOnDLS):
        chip.neuron_block.backends[coord].clock_scale_slow = DELAY_SLOW_CLOCK_SCALE
        chip.neuron_block.backends[
            coord
        ].clock_scale_adaptation_pulse = DELAY_ADAPTATION_PULSE_CLOCK_SCALE
    resets = [DELAY_FIRST_CIRCUIT + 2 * k for k in range(pairs)]
    pynn.setup(initial_config=chip, neuronPermutation=resets + [c + 1 for c in resets])
    found: dict[str, list] = {
        k: [] for k in ("adaptation_v_ref", "adaptation_v_leak", "leak_v_leak",
                        "threshold_v_threshold")}  # fmt: skip
    try:
        stimulus = pynn.Population(
            pairs, pynn.cells.SpikeSourceArray(spike_times=[[INPUT_MS]] * pairs)
        )
        reset_cells = pynn.cells.HXNeuron(
            **DELAY_RESET_PARAMETERS, refractory_period_refractory_time=CALIBRATION_TREF
        )
        reset_pop = pynn.Population(pairs, reset_cells)
        adaptation = pynn.Population(pairs, pynn.cells.HXNeuron(**DELAY_ADAPTATION_PARAMETERS))
        pynn.Projection(
            stimulus,
            reset_pop,
            pynn.OneToOneConnector(),
            synapse_type=pynn.synapses.StaticSynapse(weight=DELAY_DRIVE_WEIGHT),
            receptor_type="excitatory",
        )
        pynn.run(None, pynn.RunCommand.PREPARE)  # the calibration applied: set may follow
        for k in range(pairs):
            view = adaptation[k : k + 1]
            values = _calibrate_pair(pynn, view)
            for key, value in values.items():
                found[key].append(value)
            log.info("delay element %d: %s", k, values)
    finally:
        pynn.end()
    return found


def _calibrate_pair(pynn: Any, view: Any) -> dict[str, int]:
    """The authors' sequence for one adaptation compartment."""
    got: dict[str, int] = {}

    def level(name: str, observable: str, target: float) -> None:
        view.record(None)
        view.record([observable])
        got[name] = _bisect(
            pynn, lambda p: float(np.mean(_measure(pynn, view, name, p, observable)[0])) > target
        )
        view.set(**{name: got[name]})

    view.set(threshold_enable=False)
    level("adaptation_v_ref", "adaptation", ADAPTATION_TARGET)
    level("adaptation_v_leak", "v", REST_TARGET)
    level("adaptation_v_ref", "adaptation", ADAPTATION_TARGET)
    level("leak_v_leak", "v", REST_TARGET)
    level("adaptation_v_ref", "adaptation", ADAPTATION_TARGET)
    level("leak_v_leak", "v", REST_TARGET)
    view.record(None)
    view.record(["v"])
    pynn.run(RUN_MS)
    trace = np.asarray(view.get_data("v", clear=True).segments[-1].irregularlysampledsignals[0])
    pynn.reset()
    target = (float(np.mean(trace[:100])) + float(np.max(trace))) / 2
    view.set(threshold_enable=True)
    view.record(["spikes"])

    def too_high(pivot: int) -> bool:
        trace, spikes = _measure(pynn, view, "threshold_v_threshold", pivot, "v")
        return sum(len(s) for s in spikes) < 1 or float(np.max(trace)) > target

    got["threshold_v_threshold"] = _bisect(pynn, too_high)
    view.record(None)
    return got


def write_calibration(stack: BSS2Stack, chip: Any, found: dict[str, list], out: Path) -> None:
    """Step 4: the found values into the chip object, saved as one portable binary."""
    halco = stack.halco
    coords = list(halco.iter_all(halco.AtomicNeuronOnDLS))
    for k in range(len(found["adaptation_v_ref"])):
        neuron = chip.neuron_block.atomic_neurons[coords[DELAY_FIRST_CIRCUIT + 2 * k + 1]]
        neuron.adaptation.v_ref = stack.hal.CapMemCell.Value(int(found["adaptation_v_ref"][k]))
        neuron.adaptation.v_leak = stack.hal.CapMemCell.Value(int(found["adaptation_v_leak"][k]))
        neuron.leak.v_leak = stack.hal.CapMemCell.Value(int(found["leak_v_leak"][k]))
        neuron.threshold.v_threshold = stack.hal.CapMemCell.Value(
            int(found["threshold_v_threshold"][k])
        )
    dumper = stack.sta.PlaybackProgramBuilderDumper()
    dumper.write(halco.ChipOnDLS(), chip)
    out.write_bytes(stack.sta.to_portablebinary(dumper.done()))


def calibrate_bss2_chip(
    out: str | Path, stack: BSS2Stack | None = None, *, seed: int = 0
) -> list[str]:
    """Steps 1-4 into ``out`` (and ``out.json``); returns the check's remaining problems
    (empty for a good file)."""
    stack = stack if stack is not None else load_stack()
    path = Path(out)
    chip = calibrate_network(stack, seed=seed)
    found = calibrate_delay_elements(stack, chip)
    write_calibration(stack, chip, found, path)
    record = recipe_record(len(found["adaptation_v_ref"]))
    write_record(path, record)
    saved = stack.pynn.helper.chip_from_file(path)
    return check_calibration(saved, stack.halco, record)
