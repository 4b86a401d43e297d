"""The DelGrad calibration recipe for BrainScaleS-2, and the check of a calibration file.

The recipe is the DelGrad authors' (JulianGoeltz/fastAndDeep ``src/delay_utils.py``,
``run_initial_calibration`` and ``calibrate_delays``): calix targets per half of the
chip (layer neurons on circuits 0..255, delay elements on 256..511), then the delay
elements' operating points. ``delgrad bss2 calibrate`` makes such a file and writes a
small record of its targets beside it (``<file>.json``), because a calibration file
holds CapMem values, not the time constants they were calibrated to.

The check reads what a file can tell (lola ``AtomicNeuron`` fields as pynn-brainscales'
``helper.get_values_of_atomic_neuron`` reads them, as floats) and the record, and names
every mismatch on its own line with its fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from delgrad.drivers._bss2_io import DELAY_FIRST_CIRCUIT, DELAY_PAIRS, NETWORK_CIRCUITS
from delgrad.errors import DriverError

#: Format tag of the record written beside a calibration file.
RECORD_FORMAT = "delgrad-bss2-calibration/1"
#: How to make a file that passes the check (named in every fix).
CALIBRATE_COMMAND = "delgrad bss2 calibrate --out chip.pbin"


@dataclass(frozen=True)
class HalfTargets:
    """calix targets of one half of the chip.

    Attributes:
        leak, reset, threshold: potentials in CADC units.
        tau_mem_s, tau_syn_s: membrane and synaptic time constants (seconds).
    """

    leak: int
    reset: int
    threshold: int
    tau_mem_s: float
    tau_syn_s: float


#: Layer neurons (circuits 0..255): tau_m = tau_s = 6 us (``targets_ttfs``).
NETWORK_TARGETS = HalfTargets(80, 80, 150, 6e-6, 6e-6)
#: Delay elements (circuits 256..511) (``targets_delays``).
DELAY_TARGETS = HalfTargets(50, 50, 75, 15e-6, 10e-6)
#: Refractory time of every circuit (s); calix's own default is 2 us.
REFRACTORY_TIME_S = 20e-6
#: Membrane capacitance (LSB, 0..63) and synapse DAC bias (CapMem) of every circuit.
MEMBRANE_CAPACITANCE = 63
SYNAPSE_DAC_BIAS = 1022
#: Synaptic input strength of the layer neurons, ``int(700 * 800 / 1022)``, spread by up
#: to +-20 per circuit (the authors: equal per-neuron targets cause CapMem crosstalk).
NETWORK_I_SYNIN_GM = 547
NETWORK_I_SYNIN_GM_SPREAD = 20
#: Global synaptic input strength of the pre-calibration, whose per-circuit results
#: become the delay half's targets.
PRE_CALIBRATION_I_SYNIN_GM = 50
#: Delay-element operating point: mean adaptation trace and resting membrane (CADC-like
#: MADC units), bisected over [200, 1000) in 8 steps (``calibrate_delays``).
ADAPTATION_TARGET = 500.0
REST_TARGET = 600.0
BISECTION_RANGE = (200, 1000)
BISECTION_STEPS = 8
#: Relative tolerance of the time-constant and refractory checks.
TOLERANCE = 0.1
#: Refractory clock base frequency (MHz) after system init (calix: ADPLL core_1).
_CLOCK_BASE_MHZ = 250.0


def record_path(calibration: str | Path) -> Path:
    """Where the record of ``calibration``'s targets lives: ``<file>.json``."""
    return Path(str(calibration) + ".json")


def recipe_record(pairs: int) -> dict[str, Any]:
    """The record ``delgrad bss2 calibrate`` writes for a file made by the recipe."""
    return {
        "format": RECORD_FORMAT,
        "network": asdict(NETWORK_TARGETS),
        "delay_elements": asdict(DELAY_TARGETS),
        "refractory_time_s": REFRACTORY_TIME_S,
        "delay_pairs_calibrated": int(pairs),
    }


def write_record(calibration: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` beside ``calibration``; returns its path."""
    path = record_path(calibration)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_record(calibration: str | Path) -> dict[str, Any] | None:
    """The record beside ``calibration``, None when there is none.

    Raises:
        DriverError: the record exists but is not one (one line).
    """
    path = record_path(calibration)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DriverError(f"calibration record {str(path)!r} is unreadable: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise DriverError(f"{str(path)!r} is not a {RECORD_FORMAT} record")
    return record


def refractory_us(
    counter: float, input_clock: float, fast_scale: float, slow_scale: float
) -> float:
    """Refractory time (us) of a circuit: (counter - 1) / f, f = 250 MHz / 2**(scale + 1).

    calix counts ``int(t * f) + 1`` cycles (the counter's last bit is the holdoff;
    ``refractory_period.py``, ``_calculate_clock_cycles``); input clock 1 is the fast
    clock, 0 the slow one (lola ``RefractoryPeriod``).
    """
    scale = fast_scale if round(input_clock) == 1 else slow_scale
    return (float(counter) - 1.0) / (_CLOCK_BASE_MHZ / 2 ** (int(scale) + 1))


def _near(value: float, want: float) -> bool:
    return math.isfinite(value) and abs(value - want) <= TOLERANCE * want


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:g} us"


def check_calibration(chip: Any, halco: Any, record: dict[str, Any] | None) -> list[str]:
    """Every way the calibration ``chip`` (a ``lola.Chip`` from ``chip_from_file``) and its
    ``record`` differ from the recipe, one line each with its fix; empty when it fits.
    """
    neurons = list(halco.iter_all(halco.AtomicNeuronOnDLS))
    backends = list(halco.iter_all(halco.CommonNeuronBackendConfigOnDLS))
    block = chip.neuron_block
    problems = []
    adaptation = [DELAY_FIRST_CIRCUIT + 2 * k + 1 for k in range(DELAY_PAIRS)]
    bare = [
        c
        for c in adaptation
        if float(block.atomic_neurons[neurons[c]].adaptation.v_ref) == 0
        or float(block.atomic_neurons[neurons[c]].adaptation.v_leak) == 0
    ]
    if bare:
        problems.append(
            f"delay elements not calibrated: adaptation_v_ref / adaptation_v_leak are 0 on "
            f"{len(bare)} of {len(adaptation)} adaptation compartments (circuits 257..511, "
            f"odd; first {bare[0]}); calix never sets them. Fix: `{CALIBRATE_COMMAND}` "
            "adds the delay-element calibration to the same file"
        )
    times = []
    for c in range(NETWORK_CIRCUITS):
        ref = block.atomic_neurons[neurons[c]].refractory_period
        backend = block.backends[backends[c * len(backends) // len(neurons)]]  # its hemisphere
        times.append(
            refractory_us(
                float(ref.refractory_time),
                float(ref.input_clock),
                float(backend.clock_scale_fast),
                float(backend.clock_scale_slow),
            )
        )
    times.sort()
    median_us = times[len(times) // 2]
    if not _near(median_us * 1e-6, REFRACTORY_TIME_S):
        problems.append(
            f"refractory time of the layer neurons is {median_us:.3g} us (median of circuits "
            f"0..255), the recipe's is {_us(REFRACTORY_TIME_S)} (calix's default, also in "
            "its 'spiking' and 'spiking2' calibrations, is 2 us). Fix: calibrate with "
            f"NeuronCalibTarget.refractory_time.fill({REFRACTORY_TIME_S:g}) "
            f"(`{CALIBRATE_COMMAND}` does)"
        )
    if record is None:
        problems.append(
            "no record of the calibration's targets beside the file (<file>.json), so "
            "tau_m and tau_s cannot be checked (calix's defaults and its nightly 'spiking' "
            "calibration use 10 us; the recipe needs 6 us on circuits 0..255 and 15 / 10 us "
            f"on the delay elements). Fix: `{CALIBRATE_COMMAND}` writes both"
        )
        return problems
    halves = (
        ("network", "layer neurons (0..255)", NETWORK_TARGETS),
        ("delay_elements", "delay elements (256..511)", DELAY_TARGETS),
    )
    for key, name, want in halves:
        got = record.get(key) or {}
        for field, label in (("tau_mem_s", "tau_m"), ("tau_syn_s", "tau_s")):
            value = float(got.get(field, math.nan))
            target = float(getattr(want, field))
            if not _near(value, target):
                problems.append(
                    f"{label} of the {name} was calibrated to {_us(value)}, the recipe's is "
                    f"{_us(target)}. Fix: NeuronCalibTarget.{field[:-2]} = {target:g} s on "
                    f"those circuits (`{CALIBRATE_COMMAND}` does)"
                )
    value = float(record.get("refractory_time_s", math.nan))
    if not _near(value, REFRACTORY_TIME_S):
        problems.append(
            f"the record gives a refractory time of {_us(value)}, the recipe's is "
            f"{_us(REFRACTORY_TIME_S)}. Fix: `{CALIBRATE_COMMAND}`"
        )
    return problems


def calibration_error(path: str | Path, problems: list[str]) -> DriverError:
    """The driver's refusal: a summary line, then one line per problem."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return DriverError(
        f"calibration file {str(path)!r} does not fit the DelGrad recipe "
        f"({len(problems)} problem{'s' if len(problems) > 1 else ''}; docs/hardware.md, "
        f"'First run on a real chip'; BrainScaleS2Driver(check_calibration=False) skips "
        f"this check):\n{lines}"
    )
