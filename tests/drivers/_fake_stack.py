"""Stand-ins for the parts of the BrainScaleS-2 stack below PyNN: coordinates (halco),
containers (lola ``Chip`` / ``AtomicNeuron``), the portable-binary file format (sta),
connections (hxcomm) and calix, with the rules of the real ones that the project's code
depends on (cited per rule). The PyNN stand-in is ``_helpers.FakePyNN``.

The emulated chip has per-circuit offsets (``CHIP_OFFSETS``) that only a calibration
removes: a delay element fires at the recipe's delay only when its adaptation
compartment's operating point is calibrated (``delay_element``).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

N_CIRCUITS = 512
BACKEND_COORDS = ("CommonNeuronBackendConfigOnDLS(0)", "CommonNeuronBackendConfigOnDLS(1)")

# --- halco / hal ------------------------------------------------------------------------


def _iter_all(kind: str) -> Iterator[Any]:
    if kind == "AtomicNeuronOnDLS":
        return iter(range(N_CIRCUITS))
    if kind == "CommonNeuronBackendConfigOnDLS":
        return iter(BACKEND_COORDS)
    if kind == "SynapticInputOnNeuron":
        return iter((0, 1))
    raise TypeError(f"iter_all: unknown coordinate {kind!r}")


#: Coordinates: atomic neurons are 0..511 here (halco objects in the stack).
HALCO = SimpleNamespace(
    AtomicNeuronOnDLS="AtomicNeuronOnDLS",
    CommonNeuronBackendConfigOnDLS="CommonNeuronBackendConfigOnDLS",
    SynapticInputOnNeuron="SynapticInputOnNeuron",
    ChipOnDLS=lambda: "ChipOnDLS",
    iter_all=_iter_all,
)
HAL = SimpleNamespace(CapMemCell=SimpleNamespace(Value=int))

# --- lola containers ------------------------------------------------------------------------

#: The AtomicNeuron members the stand-in models (lola/vx/v3/neuron.h), all 0 by default:
#: a calix calibration leaves ``adaptation.v_ref`` / ``v_leak`` at that default.
NEURON_FIELDS = {
    "leak": ("v_leak", "i_bias"),
    "reset": ("v_reset",),
    "threshold": ("v_threshold",),
    "adaptation": ("v_ref", "v_leak"),
    "excitatory_input": ("i_bias_gm",),
    "inhibitory_input": ("i_bias_gm",),
    "refractory_period": ("refractory_time", "input_clock", "reset_holdoff"),
}


class FakeAtomicNeuron:
    """``lola.AtomicNeuron``: member groups with integer fields."""

    def __init__(self) -> None:
        for group, members in NEURON_FIELDS.items():
            setattr(self, group, SimpleNamespace(**dict.fromkeys(members, 0)))

    def flat(self) -> dict[str, int]:
        """``{group_member: value}``, as pynn-brainscales names HXNeuron parameters."""
        return {
            f"{g}_{m}": int(getattr(getattr(self, g), m))
            for g, members in NEURON_FIELDS.items()
            for m in members
        }


class FakeBackendConfig:
    """haldls ``CommonNeuronBackendConfig`` clock fields (haldls defaults: scale 0)."""

    def __init__(self) -> None:
        self.clock_scale_fast = 0
        self.clock_scale_slow = 0
        self.clock_scale_adaptation_pulse = 0
        self.clock_scale_post_pulse = 0


class FakeChip:
    """``lola.Chip``: ``neuron_block.atomic_neurons[coord]`` and ``.backends[coord]``."""

    def __init__(self) -> None:
        self.neuron_block = SimpleNamespace(
            atomic_neurons=[FakeAtomicNeuron() for _ in range(N_CIRCUITS)],
            backends={c: FakeBackendConfig() for c in BACKEND_COORDS},
        )

    def to_dict(self) -> dict[str, Any]:
        flat = [n.flat() for n in self.neuron_block.atomic_neurons]
        return {
            "neurons": {k: [f[k] for f in flat] for k in flat[0]},
            "backends": {c: vars(b) for c, b in self.neuron_block.backends.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeChip:
        chip = cls()
        for key, values in data["neurons"].items():
            group, member = _split(key)
            for neuron, value in zip(chip.neuron_block.atomic_neurons, values, strict=True):
                setattr(getattr(neuron, group), member, int(value))
        for coord, fields in data["backends"].items():
            vars(chip.neuron_block.backends[coord]).update(fields)
        return chip


def set_field(neuron: FakeAtomicNeuron, key: str, value: int) -> None:
    """Set the member named as the HXNeuron parameter ``key`` (``group_member``)."""
    group, member = _split(key)
    setattr(getattr(neuron, group), member, int(value))


def _split(key: str) -> tuple[str, str]:
    for group in NEURON_FIELDS:
        if key.startswith(group + "_"):
            return group, key[len(group) + 1 :]
    raise KeyError(key)


# --- sta: the portable binary file ------------------------------------------------------------

_MAGIC = "fake-portable-binary-cocolist/1"


class FakeDumper:
    """``sta.PlaybackProgramBuilderDumper``: records (coordinate, container) writes."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, Any]] = []

    def write(self, coord: Any, container: Any) -> None:
        self.writes.append((coord, container))

    def done(self) -> list[tuple[Any, Any]]:
        done, self.writes = self.writes, []
        return done


def to_portablebinary(dumperdone: list[tuple[Any, Any]]) -> bytes:
    """``sta.to_portablebinary``: the stand-in keeps the last whole-chip write."""
    chips = [c for coord, c in dumperdone if coord == "ChipOnDLS" and isinstance(c, FakeChip)]
    if not chips:
        raise TypeError("to_portablebinary: nothing to serialise")
    return json.dumps({"format": _MAGIC, "chip": chips[-1].to_dict()}).encode()


def chip_from_portable_binary(data: bytes) -> FakeChip:
    """pynn-brainscales ``helper.chip_from_portable_binary`` (``sta.convert_to_chip``)."""
    try:
        parsed = json.loads(data.decode())
        assert parsed["format"] == _MAGIC
    except Exception as exc:
        raise RuntimeError("not a portable binary coordinate-container list") from exc
    return FakeChip.from_dict(parsed["chip"])


STA = SimpleNamespace(PlaybackProgramBuilderDumper=FakeDumper, to_portablebinary=to_portablebinary)


# --- the emulated chip's mismatch -----------------------------------------------------------

#: Per circuit: offsets of the adaptation baseline, the resting potential and the
#: threshold (CapMem LSB), integers so that a perfect calibration exists.
CHIP_OFFSETS = np.rint(np.random.default_rng(2024).normal(0.0, 25.0, (N_CIRCUITS, 3)))


@dataclass(frozen=True)
class OperatingPoint:
    """An adaptation compartment at rest: adaptation trace, membrane, peak after one
    input (threshold off) and effective threshold, in MADC units."""

    adaptation: float
    rest: float
    peak: float
    threshold: float


def operating_point(circuit: int, v_ref: float, a_v_leak: float, v_leak: float,
                    v_threshold: float) -> OperatingPoint:  # fmt: skip
    """The stand-in's model of an adaptation compartment (its own, not the authors')."""
    a, b, c = CHIP_OFFSETS[circuit]
    adaptation = float(v_ref) - a
    rest = (float(v_leak) + float(a_v_leak)) / 2 - b - 0.5 * (500.0 - adaptation)
    return OperatingPoint(adaptation, rest, rest + 200.0, float(v_threshold) - c)


def delay_element(op: OperatingPoint, nominal_us: float, threshold_enable: bool) -> float | None:
    """Delay (us) a delay element produces, or None when it never fires.

    The nominal delay holds at the calibrated point (adaptation 500, threshold halfway
    between rest and peak); it drifts by 0.02 us per LSB of threshold error and 0.004 us
    per LSB of adaptation error. A threshold above the peak never fires; one at or below
    rest fires 1 us after the input whatever the setting.
    """
    if not threshold_enable or op.threshold >= op.peak:
        return None
    if op.threshold <= op.rest:
        return 1.0
    error = 0.02 * (op.threshold - (op.rest + 100.0)) + 0.004 * (op.adaptation - 500.0)
    return nominal_us + error


def perfect_delay_values(chip: FakeChip, circuit: int) -> dict[str, int]:
    """Analog values that put ``circuit`` exactly on the operating point (test files)."""
    a, b, c = CHIP_OFFSETS[circuit]
    leak = chip.neuron_block.atomic_neurons[circuit].leak.v_leak
    return {
        "adaptation_v_ref": int(500 + a),
        "adaptation_v_leak": int(1200 + 2 * b - leak),
        "leak_v_leak": int(leak),
        "threshold_v_threshold": int(700 + c),
    }


# --- calix --------------------------------------------------------------------------------


def _check_number(value: Any) -> float:
    # pybind11 converts only plain numbers; a quantities.Quantity (an ndarray) is refused
    # (calix tests/sw/py/test_types.py, test_assignment: TypeError for 20 * pq.us)
    if isinstance(value, bool | np.ndarray | str) or not isinstance(value, numbers.Real):
        raise TypeError(f"incompatible function arguments: {type(value).__name__} {value!r}")
    return float(value)


class TypedArray:
    """``halco::common::typed_array`` as bound by pyccalix: item assignment and ``fill``."""

    def __init__(self, shape: tuple[int, ...], default: float) -> None:
        self._data = np.full(shape, float(default))

    def __getitem__(self, coord: int) -> Any:
        if self._data.ndim > 1:
            row = TypedArray.__new__(TypedArray)
            row._data = self._data[int(coord)]  # a view: assignment reaches the target
            return row
        return self._data[int(coord)]

    def __setitem__(self, coord: int, value: Any) -> None:
        self._data[int(coord)] = _check_number(value)

    def fill(self, value: Any) -> None:
        self._data.fill(_check_number(value))

    def to_numpy(self) -> np.ndarray:
        return self._data.copy()


class _Strict:
    """Attributes fixed at construction; array fields replaced only by their own type."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        old = self.__dict__[name]
        if isinstance(old, TypedArray) and not isinstance(value, TypedArray):
            raise TypeError(f"{name}: incompatible type {type(value).__name__}")
        if isinstance(old, int | float) and not isinstance(old, bool):
            value = int(_check_number(value)) if isinstance(old, int) else _check_number(value)
        object.__setattr__(self, name, value)

    def _init(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)


class UncalibratedCubaSynapticInput(_Strict):
    """Per-neuron, per-input ``i_synin_gm`` used as given (neuron_calib_target.h)."""

    def __init__(self) -> None:
        self._init(i_synin_gm=TypedArray((N_CIRCUITS, 2), 500))


class CalibratedMatchingCubaSynapticInput(_Strict):
    """One ``i_synin_gm`` for all, calibrated to match (the default)."""

    def __init__(self) -> None:
        self._init(i_synin_gm=500)


class NeuronCalibTarget(_Strict):
    """pyccalix ``NeuronCalibTarget``: only a default constructor (neuron_calib_target.h);
    defaults as neuron_calib_target.cpp: leak 80, reset 70, threshold 125, tau 10 us,
    refractory 2 us, capacitance 63, synapse DAC bias 600. Times in seconds."""

    UncalibratedCubaSynapticInput = UncalibratedCubaSynapticInput
    CalibratedMatchingCubaSynapticInput = CalibratedMatchingCubaSynapticInput

    def __init__(self) -> None:
        self._init(
            leak=TypedArray((N_CIRCUITS,), 80),
            reset=TypedArray((N_CIRCUITS,), 70),
            threshold=TypedArray((N_CIRCUITS,), 125),
            tau_mem=TypedArray((N_CIRCUITS,), 10e-6),
            tau_syn=TypedArray((N_CIRCUITS, 2), 10e-6),
            membrane_capacitance=TypedArray((N_CIRCUITS,), 63),
            refractory_time=TypedArray((N_CIRCUITS,), 2e-6),
            holdoff_time=TypedArray((N_CIRCUITS,), 0.0),
            synapse_dac_bias=600,
            cuba_synin=CalibratedMatchingCubaSynapticInput(),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "cuba_synin" and not isinstance(
            value, UncalibratedCubaSynapticInput | CalibratedMatchingCubaSynapticInput
        ):
            raise TypeError(f"cuba_synin: incompatible type {type(value).__name__}")
        super().__setattr__(name, value)


class SpikingCalibTarget(_Strict):
    """calix.spiking ``SpikingCalibTarget``: ``__init__(self)`` takes no arguments."""

    def __init__(self) -> None:
        self._init(neuron_target=NeuronCalibTarget(), cadc_target=None, stp_target=None,
                   correlation_target=None)  # fmt: skip


def _clock_scale(min_s: float, max_s: float) -> int:
    """calix refractory_period._calculate_clock_scale (from scale 4 towards the window)."""
    max_s = max(max_s, 2 * min_s)
    scale = 4
    for _ in range(7):
        period = 2 ** (scale + 1) / 250e6
        if min_s <= period <= max_s:
            break
        scale += 1 if period < min_s else -1
    return min(max(scale, 0), 7)


def _refractory_settings(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """calix refractory_period.calculate_settings without holdoff: counters, input
    clocks, fast and slow scale."""
    fast = tau <= tau.mean()
    counters = np.zeros(tau.size, dtype=int)
    clocks = np.ones(tau.size, dtype=int)
    scales = [0, 0]
    for index, sel in ((0, fast), (1, ~fast)):
        if sel.any():
            scales[index] = _clock_scale(tau[sel].max() / 255, tau[sel].min() / 30)
            freq = 250e6 / 2 ** (scales[index] + 1)
            counters[sel] = (tau[sel] * freq).astype(int) + 1
            clocks[sel] = 1 - index
    return counters, clocks, scales[0], scales[1]


@dataclass
class FakeNeuronResult:
    neurons: dict[int, FakeAtomicNeuron]


@dataclass
class FakeSpikingCalibResult:
    """calix.spiking ``SpikingCalibResult``; ``apply`` writes the calibrated chip."""

    target: SpikingCalibTarget
    neuron_result: FakeNeuronResult
    chip: FakeChip

    def apply(self, builder: Any) -> None:
        builder.write("ChipOnDLS", self.chip)


class FakeStatefulConnection:
    """calix.common.base ``StatefulConnection(connection)``."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection


class FakeWriteRecordingBuilder:
    """calix.common.base ``WriteRecordingPlaybackProgramBuilder``: ``done()`` returns
    (program, dumperdone)."""

    def __init__(self) -> None:
        self.dumper = FakeDumper()

    def write(self, coord: Any, container: Any) -> None:
        self.dumper.write(coord, container)

    def done(self) -> tuple[Any, list[tuple[Any, Any]]]:
        return "program", self.dumper.done()


class FakeCalix:
    """``calix`` with ``calix.calibrate`` (calib_cache.py), ``calix.spiking``,
    ``calix.spiking.neuron`` and ``calix.common.base``; records every calibration."""

    def __init__(self) -> None:
        self.calls: list[SpikingCalibTarget] = []
        self.spiking = SimpleNamespace(
            SpikingCalibTarget=SpikingCalibTarget,
            neuron=SimpleNamespace(NeuronCalibTarget=NeuronCalibTarget),
        )
        self.common = SimpleNamespace(
            base=SimpleNamespace(
                StatefulConnection=FakeStatefulConnection,
                WriteRecordingPlaybackProgramBuilder=FakeWriteRecordingBuilder,
            )
        )

    def calibrate(
        self,
        target: Any,
        options: Any = None,
        cache_paths: Any = None,
        cache_read_only: bool = False,
        connection: Any = None,
    ) -> FakeSpikingCalibResult:
        if not isinstance(target, SpikingCalibTarget):
            raise TypeError("calibrate: target must be a calibration target")
        if connection is not None and not isinstance(connection, FakeStatefulConnection):
            raise RuntimeError("Only StatefulConnection is supported.")  # calib_cache.py
        self.calls.append(target)
        nt = target.neuron_target
        chip = FakeChip()
        counters, clocks, fast, slow = _refractory_settings(nt.refractory_time.to_numpy())
        for backend in chip.neuron_block.backends.values():
            backend.clock_scale_fast, backend.clock_scale_slow = fast, slow
        synin = nt.cuba_synin
        for i, neuron in enumerate(chip.neuron_block.atomic_neurons):
            off = CHIP_OFFSETS[i, 1]
            neuron.leak.v_leak = int(400 + 2 * (nt.leak[i] - 50) + off)
            neuron.reset.v_reset = int(400 + 2 * (nt.reset[i] - 50) + off)
            neuron.threshold.v_threshold = int(300 + 2 * (nt.threshold[i] - 75) + off)
            neuron.leak.i_bias = int(min(1022, 4e-3 / nt.tau_mem[i]))
            gm = (
                synin.i_synin_gm + int(CHIP_OFFSETS[i, 2])
                if isinstance(synin, CalibratedMatchingCubaSynapticInput)
                else int(synin.i_synin_gm[i][0])
            )
            neuron.excitatory_input.i_bias_gm = neuron.inhibitory_input.i_bias_gm = gm
            neuron.refractory_period.refractory_time = int(counters[i])
            neuron.refractory_period.input_clock = int(clocks[i])
        neurons = {i: n for i, n in enumerate(chip.neuron_block.atomic_neurons)}
        return FakeSpikingCalibResult(target, FakeNeuronResult(neurons), chip)


class FakeManagedConnection:
    """hxcomm ``ManagedConnection()``: a context manager yielding a connection."""

    opened = 0

    def __enter__(self) -> str:
        FakeManagedConnection.opened += 1
        return "connection"

    def __exit__(self, *exc: Any) -> None:
        return None


HXCOMM = SimpleNamespace(ManagedConnection=FakeManagedConnection)
