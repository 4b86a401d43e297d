"""Shared pieces of the driver tests: small networks and a stand-in for the PyNN module."""

from __future__ import annotations

import atexit
import math
import tempfile
from collections.abc import Callable
from enum import Enum, auto
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from delgrad.runtime import Layer, Network, NeuronParams


def hardware_like_network(seed: int = 0, n_in: int = 8, n_hidden: int = 12) -> Network:
    """A small axonal-delay network that spikes under the BSS2 recipe (tau_m = tau_s, 2.6)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(n_in, n_hidden, "axonal"), Layer(n_hidden, 3, "axonal")]
    w = [rng.uniform(0.3, 2.0, (n_in, n_hidden)), rng.uniform(-0.3, 2.0, (n_hidden, 3))]
    d = [rng.uniform(1.5, 3.0, n_in), rng.uniform(1.5, 3.0, n_hidden)]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d)


def random_network(rng: np.random.Generator, tau_m: float, kinds=("axonal", "axonal", "none"),
                   sizes=(16, 12, 8, 3), bias=(0.4,), theta=2.6) -> Network:  # fmt: skip
    """Random network with weights in the chip's range and delays in its delay range."""
    layers = [
        Layer(sizes[i], sizes[i + 1], kinds[i], bias_times=bias if i == 0 else ())
        for i in range(len(kinds))
    ]
    w = [rng.uniform(-0.6, 2.1, ly.weight_shape) for ly in layers]
    d = [rng.uniform(1.4, 5.5, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(tau_m=tau_m, theta=theta), w, d)


# ======================================================================================
# A stand-in for pynn_brainscales.brainscales2 (the BrainScaleS-2 stack is not installed
# here). It records every call and enforces the rules of the real stack the driver
# depends on, read in electronicvisions/pynn-brainscales (cited per rule), plus the
# DelGrad authors' delay-element wiring (JulianGoeltz/fastAndDeep src/delay_utils.py).
# Rules marked "stricter" are errors here where the real stack only warns or silently
# misbehaves, so that a driver regression fails a test.
# ======================================================================================

_CALIBRATION_DIR = tempfile.TemporaryDirectory(prefix="delgrad-fake-calib-")
atexit.register(_CALIBRATION_DIR.cleanup)


def fake_calibration_file(name: str = "chip.pbin") -> Path:
    """A small file standing in for a calibration dump (the stand-in only checks it exists)."""
    path = Path(_CALIBRATION_DIR.name) / name
    if not path.exists():
        path.write_bytes(b"fake calibration: calix neuron calib + delay elements\n")
    return path


#: Neuron circuits of a chip (halco.AtomicNeuronOnDLS.size).
FAKE_CIRCUITS = 512
#: The authors' measured refractory-to-delay map (src/delay_utils.py), valid at this
#: slow-clock scale: delay_us = tref / 8 + 2.
_MEASURED_AT_SCALE = 4


def _clock_mhz(scale: int) -> float:
    """haldls neuron.h: the refractory clock runs at 250 MHz / 2**(scale + 1)."""
    return 250.0 / 2 ** (scale + 1)


def _lola_parameter_names() -> frozenset[str]:
    """HXNeuron parameters: lola AtomicNeuron members flattened (haldls lola/vx/v3/neuron.h),
    minus those pynn-brainscales does not expose (cells.py HXNeuron._NOT_CONFIGURABLE)."""
    synin = ("enable", "i_bias_tau", "i_bias_coba", "i_shift_reference", "i_bias_gm",
             "v_rev_coba", "enable_small_capacitance", "enable_high_resistance",
             "enable_coba_mode")  # fmt: skip
    groups = {
        "excitatory_input": synin,
        "inhibitory_input": synin,
        "leak": ("v_leak", "i_bias", "enable_degeneration", "enable_division",
                 "enable_multiplication"),
        "reset": ("v_reset", "i_bias", "enable_degeneration", "enable_division",
                  "enable_multiplication"),
        "threshold": ("enable", "v_threshold"),
        "multicompartment": ("connect_soma", "connect_soma_right", "connect_right",
                             "connect_vertical", "enable_conductance",
                             "enable_conductance_division",
                             "enable_conductance_multiplication", "i_bias_nmda"),
        "constant_current": ("enable", "i_offset"),
        "membrane_capacitance": ("capacitance",),
        "adaptation": ("enable", "enable_pulse", "invert_a", "invert_b", "v_ref",
                       "i_bias_tau", "i_bias_a", "i_bias_b", "v_leak"),
        "exponential": ("enable", "v_exp", "i_bias"),
        "event_routing": ("enable_bypass_excitatory", "enable_bypass_inhibitory", "address",
                          "enable_post_overwrite"),
        "refractory_period": ("input_clock", "reset_holdoff", "refractory_time",
                              "enable_pause"),
        "readout": ("enable_unbuffered_access",),
    }  # fmt: skip
    return frozenset(f"{g}_{m}" for g, members in groups.items() for m in members)


HX_PARAMETERS = _lola_parameter_names()
#: Integer ranges of the HXNeuron parameters the driver sets (haldls neuron.h:
#: RefractoryTime 0..255, ResetHoldoff 0..15, InputClock 0/1; CapMem cells 0..1022;
#: membrane capacitor 0..63).
_RANGES = {
    "refractory_period_refractory_time": (0, 255),
    "refractory_period_reset_holdoff": (0, 15),
    "refractory_period_input_clock": (0, 1),
    "membrane_capacitance_capacitance": (0, 63),
}
_ANALOG_RANGE = (0, 1022)


class FakeStackError(Exception):
    """An error the real stack (or the stricter stand-in) would raise."""


class FakeConnectionError(FakeStackError):
    """pyNN.errors.ConnectionError: a weight of the wrong sign for its receptor."""


def _check_hx_parameters(parameters: dict[str, Any], size: int) -> None:
    for name, value in parameters.items():
        if name not in HX_PARAMETERS:
            raise FakeStackError(
                f"HXNeuron has no parameter {name!r}"
            )  # PyNN: NonExistentParameterError
        values = np.atleast_1d(np.asarray(value))
        if values.size not in (1, size):
            raise FakeStackError(f"{name}: {values.size} values for a population of {size}")
        if values.dtype == bool:
            continue
        if not np.all(np.isfinite(values.astype(np.float64))) or np.any(values != np.rint(values)):
            raise FakeStackError(f"{name}: hardware parameters are integers, got {value!r}")
        lo, hi = _RANGES.get(name, _ANALOG_RANGE)
        if np.any(values < lo) or np.any(values > hi):
            raise FakeStackError(f"{name}: values outside {lo}..{hi}: {value!r}")


class FakeSpikeTrain(np.ndarray):
    """A recorded spike train (ms) carrying PyNN's ``source_index`` annotation."""

    annotations: dict[str, Any]

    @classmethod
    def make(cls, times_ms: np.ndarray, index: int) -> FakeSpikeTrain:
        train = np.sort(np.asarray(times_ms, dtype=np.float64).ravel()).view(cls)
        train.annotations = {"source_index": index}
        return train

    def __array_finalize__(self, obj: Any) -> None:
        self.annotations = getattr(obj, "annotations", {})


class FakeCellType:
    """``cells.HXNeuron(**parameters)`` or ``cells.SpikeSourceArray(spike_times=...)``."""

    def __init__(self, kind: str, parameters: dict[str, Any]) -> None:
        self.kind = kind
        self.parameters = dict(parameters)


class FakePopulation:
    """A population: parameters, recording, per-run spike data in segments (PyNN style)."""

    def __init__(self, fake: FakePyNN, size: int, celltype: FakeCellType) -> None:
        if not isinstance(celltype, FakeCellType):
            raise FakeStackError("Population needs a cell type instance")
        self.fake = fake
        self.size = int(size)
        self.kind = celltype.kind
        self.parameters = celltype.parameters
        self.recorded: list[str] = []
        self.index = len(fake.populations)
        self.circuits: tuple[int, ...] = ()
        self.sets: list[dict[str, Any]] = []
        self._segments: list[list[FakeSpikeTrain]] = []  # closed segments
        self._current: list[FakeSpikeTrain] | None = None
        if self.kind == "HXNeuron":
            _check_hx_parameters(self.parameters, self.size)
            self.circuits = fake._place(self.size)
        elif self.kind == "SpikeSourceArray" and "spike_times" in self.parameters:
            self._check_spike_times(self.parameters["spike_times"])

    @property
    def is_reset_compartment(self) -> bool:
        return self.kind == "HXNeuron" and bool(
            self.parameters.get("multicompartment_connect_right")
        )

    def param(self, name: str, i: int = 0) -> Any:
        """A parameter's value for neuron i (None when not set: the calibration's value)."""
        if name not in self.parameters:
            return None
        values = np.atleast_1d(np.asarray(self.parameters[name]))
        return values[0] if values.size == 1 else values[i]

    def _check_spike_times(self, spike_times: Any) -> None:
        trains = list(spike_times)
        if len(trains) != self.size:
            raise FakeStackError(f"spike_times: {len(trains)} trains for {self.size} sources")
        for train in trains:
            t = np.asarray(train, dtype=np.float64).ravel()
            if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
                raise FakeStackError("spike_times must be finite, >= 0 and sorted (ms)")

    def set(self, **parameters: Any) -> None:
        self.fake._check_live()
        self.fake.calls.append(("Population.set", (self.index, sorted(parameters))))
        if self.kind == "HXNeuron":
            if not self.fake.prepared:
                # stricter: the real stack silently overwrites these with the calibration's
                # values when it maps the network (cells.py, HXNeuron.apply_config)
                raise FakeStackError(
                    "HXNeuron parameters set before the initial config was applied "
                    "(run(None, RunCommand.PREPARE) first)"
                )
            _check_hx_parameters(parameters, self.size)
        elif "spike_times" in parameters:
            self._check_spike_times(parameters["spike_times"])
        self.parameters.update(parameters)
        self.sets.append(dict(parameters))

    def record(self, what: list[str]) -> None:
        self.fake._check_live()
        if self.kind == "HXNeuron" and not set(what) <= {
            "spikes",
            "v",
            "exc_synin",
            "inh_synin",
            "adaptation",
        }:
            raise FakeStackError(f"cannot record {what}")
        self.recorded = list(what)
        self.fake.calls.append(("record", self.index))

    def _store(self, trains_ms: list[np.ndarray]) -> None:
        if "spikes" in self.recorded:
            self._current = [FakeSpikeTrain.make(t, i) for i, t in enumerate(trains_ms)]

    def _new_segment(self) -> None:
        if self._current is not None:
            self._segments.append(self._current)
            self._current = None

    def get_data(
        self, what: str = "all", gather: bool = True, clear: bool = False
    ) -> SimpleNamespace:
        """PyNN: one segment per run between resets, all of them unless cleared."""
        self.fake._check_live()
        if what != "spikes" or "spikes" not in self.recorded:
            raise FakeStackError(f"{what!r} was not recorded")
        segments = list(self._segments) + ([self._current] if self._current is not None else [])
        block = SimpleNamespace(
            segments=[SimpleNamespace(spiketrains=list(seg)) for seg in segments]
        )
        if clear:
            self._segments, self._current = [], None
        return block


class FakeProjection:
    """A projection with the weight rules of pynn-brainscales ``projections.py``."""

    def __init__(self, fake: FakePyNN, pre, post, connector: str, synapse_type, receptor_type):
        self.fake = fake
        self.pre, self.post = pre, post
        self.connector = connector
        self.receptor = receptor_type or "excitatory"
        if self.receptor not in ("excitatory", "inhibitory"):
            raise FakeStackError(f"unknown receptor type {receptor_type!r}")
        if post.kind != "HXNeuron":
            raise FakeStackError("projections end on neurons")
        if connector == "one-to-one" and pre.size != post.size:
            raise FakeStackError("OneToOneConnector needs populations of equal size")
        _kind, params = synapse_type
        # projections.py, Connection: "Setting the delay unequal 0 is not supported."
        if params.get("delay", 0) != 0:
            raise ValueError("Setting the delay unequal 0 is not supported.")
        self.weight = self._check_weights(params.get("weight", 0))

    @property
    def shape(self) -> tuple[int, ...]:
        return (
            (self.pre.size,) if self.connector == "one-to-one" else (self.pre.size, self.post.size)
        )

    def _check_weights(self, weight: Any) -> np.ndarray:
        w = np.asarray(weight, dtype=np.float64)
        try:
            w = np.broadcast_to(w, self.shape).copy()
        except ValueError as exc:
            raise FakeStackError(f"weights of shape {np.shape(weight)} for {self.shape}") from exc
        w = np.rint(w)  # Connection._set_weight rounds
        # projections.py, Connection.__init__ / _set_weight: positive for excitatory,
        # negative for inhibitory, else ConnectionError (test_projections.py, test_weight_sign)
        if (self.receptor == "excitatory" and np.any(w < 0)) or (
            self.receptor == "inhibitory" and np.any(w > 0)
        ):
            raise FakeConnectionError(
                "Weights must be positive for conductance-based and/or excitatory synapses "
                "and negative for inhibitory synapses"
            )
        # stricter: a network weight is one 6-bit synapse (the authors clip at 63,
        # networks.py); above 63 the stack spreads a connection over ceil(|w|/63)
        # synapses (Connection.round_up_63), which only the delay drive does on purpose
        if self.connector == "all-to-all" and np.any(np.abs(w) > 63):
            raise FakeStackError(f"all-to-all weight above 63: {np.abs(w).max():.0f}")
        return w

    @property
    def synapses_per_connection(self) -> np.ndarray:
        return np.maximum(1, np.ceil(np.abs(self.weight) / 63)).astype(np.int64)

    def set(self, **parameters: Any) -> None:
        self.fake._check_live()
        if set(parameters) - {"weight", "delay"}:
            raise FakeStackError(f"cannot set {sorted(parameters)} on a static synapse")
        if parameters.get("delay", 0) != 0:
            raise ValueError("Setting the delay unequal 0 is not supported.")
        if "weight" in parameters:
            self.weight = self._check_weights(parameters["weight"])
        self.fake.calls.append(("Projection.set", (self.pre.index, self.post.index, self.receptor)))


class FakeBackendConfig:
    """haldls CommonNeuronBackendConfig clock fields (what calix leaves: see FakeChip)."""

    def __init__(self) -> None:
        self.clock_scale_fast = 3
        self.clock_scale_slow = 0
        self.clock_scale_adaptation_pulse = 0
        self.clock_scale_post_pulse = 0


class FakeChip:
    """``lola.Chip`` read from a calibration file.

    Clocks as a calix calibration with one refractory target for all neurons leaves
    them: every neuron on the fast clock, the slow clock at scale 0
    (calix spiking/refractory_period.py, ``calculate_settings``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.neuron_block = SimpleNamespace(
            backends={coord: FakeBackendConfig() for coord in FakePyNN.BACKEND_COORDS}
        )


class FakeRunCommand(Enum):
    PREPARE = auto()
    APPEND = auto()
    EXECUTE = auto()


class FakePyNN:
    """A stand-in for ``pynn_brainscales.brainscales2`` that records every call and
    enforces the stack's rules the driver depends on.

    Rules (source in electronicvisions/pynn-brainscales unless noted):

    * ``setup`` takes only known options (``__init__.py`` raises KeyError otherwise) and
      *must* get an ``initial_config`` from ``helper.chip_from_file`` (stricter: the
      stack would run on a silent default neuron); ``neuronPermutation`` unique and
      within 0..511 (``test/sw/pynn_brainscales2_test_setup.py``); at most 512 circuits;
      every call after ``end`` fails (``end`` drops the simulator state).
    * HXNeuron parameters exist and are in range; they are set only after the initial
      config was applied (``run(None, RunCommand.PREPARE)``; stricter, see FakePopulation.set).
    * weights: sign by receptor (``ConnectionError``), rounded, delay 0 (``ValueError``),
      all-to-all weights <= 63 (stricter).
    * ``run(duration)`` in ms; every source spike must lie before the run's end
      (stricter: the stack drops later spikes with a warning); spikes recorded after the
      end are lost; data per segment, ``reset`` starts a new one.
    * delay elements (authors' wiring, src/delay_utils.py): a population with
      ``multicompartment_connect_right`` is a reset compartment on even circuits
      256 + 2k; its right neighbour 257 + 2k holds a recorded adaptation compartment
      that receives no projection; both on the slow refractory clock; the reset
      compartment bypasses its synaptic input, has no threshold, gets exactly one
      one-to-one excitatory projection spread over several synapses and drives nothing;
      layer neurons sit on circuits 0..255.

    Delay elements are simulated: the adaptation compartment spikes
    ``tref / 8 + 2`` us (the authors' map, measured at slow clock scale 4; stretched
    by the clock ratio at another scale) after each input spike. Other HXNeuron
    populations spike as ``responder`` says.

    Args:
        responder: population -> list of per-neuron spike time arrays (ms) of a run,
            for non-delay HXNeuron populations; default no spikes.
        fail_on_run: raise from ``run`` (to test error handling).
    """

    BACKEND_COORDS = ("CommonNeuronBackendConfigOnDLS(0)", "CommonNeuronBackendConfigOnDLS(1)")
    _SETUP_OPTIONS = frozenset(
        {"timestep", "min_delay", "max_delay", "neuronPermutation", "backgroundPermutation",
         "enable_neuron_bypass", "initial_config", "injected_config", "injected_readout",
         "calibration_cache", "injected_calib_target", "injected_calib_options"}
    )  # fmt: skip

    def __init__(
        self,
        responder: Callable[[FakePopulation], list[np.ndarray]] | None = None,
        fail_on_run: bool = False,
    ) -> None:
        self.responder = responder or (lambda pop: [np.array([]) for _ in range(pop.size)])
        self.fail_on_run = fail_on_run
        self.calls: list[tuple[str, Any]] = []
        self.populations: list[FakePopulation] = []
        self.projections: list[FakeProjection] = []
        self.live = False
        self.prepared = False
        self.chip: FakeChip | None = None
        self.permutation: list[int] | None = None
        self.last_duration: float | None = None
        self.runs = 0
        self.cells = SimpleNamespace(
            HXNeuron=lambda **kw: FakeCellType("HXNeuron", kw),
            SpikeSourceArray=lambda **kw: FakeCellType("SpikeSourceArray", kw),
        )
        self.synapses = SimpleNamespace(StaticSynapse=lambda **kw: ("StaticSynapse", kw))
        self.helper = SimpleNamespace(chip_from_file=self._chip_from_file)
        self.halco = SimpleNamespace(
            CommonNeuronBackendConfigOnDLS="CommonNeuronBackendConfigOnDLS",
            iter_all=lambda kind: [c for c in self.BACKEND_COORDS if c.startswith(kind)],
        )
        self.errors = SimpleNamespace(ConnectionError=FakeConnectionError)
        self.RunCommand = FakeRunCommand

    # --- session --------------------------------------------------------------------

    def _chip_from_file(self, path: Path) -> FakeChip:
        with open(path, "rb") as fd:  # helper.py: reads the file (FileNotFoundError if absent)
            fd.read()
        self.calls.append(("chip_from_file", str(path)))
        return FakeChip(Path(path))

    def _check_live(self) -> None:
        if not self.live:
            raise FakeStackError("no PyNN session (setup not called, or end called)")

    def setup(self, **kwargs: Any) -> None:
        self.calls.append(("setup", kwargs))
        unknown = set(kwargs) - self._SETUP_OPTIONS
        if unknown:
            raise KeyError(f"unhandled extra_params in call to pynn.setup(...):{unknown}")
        chip = kwargs.get("initial_config")
        if not isinstance(chip, FakeChip):
            raise FakeStackError(
                "stand-in rule: setup without a calibration (initial_config from "
                "helper.chip_from_file) leaves every HXNeuron silent"
            )
        perm = kwargs.get("neuronPermutation")
        if perm is not None:
            perm = [int(n) for n in perm]
            if len(set(perm)) != len(perm):
                raise ValueError("neuronPermutation entries must be unique")
            if any(n < 0 for n in perm):
                raise TypeError("neuronPermutation entries must be >= 0")
            if len(perm) > FAKE_CIRCUITS or any(n >= FAKE_CIRCUITS for n in perm):
                raise OverflowError(f"the chip has {FAKE_CIRCUITS} neuron circuits")
        self.chip, self.permutation = chip, perm
        self.populations, self.projections = [], []
        self.live, self.prepared = True, False

    def end(self) -> None:
        self.calls.append(("end", None))
        self.live = False

    def reset(self) -> None:
        self._check_live()
        self.calls.append(("reset", None))
        for pop in self.populations:
            pop._new_segment()

    def _place(self, size: int) -> tuple[int, ...]:
        used = sum(len(p.circuits) for p in self.populations)
        order = self.permutation if self.permutation is not None else list(range(FAKE_CIRCUITS))
        if used + size > len(order):
            raise FakeStackError(f"{used + size} neuron circuits requested, {len(order)} available")
        return tuple(order[used : used + size])

    # --- network --------------------------------------------------------------------

    def Population(self, size: int, celltype: FakeCellType) -> FakePopulation:
        self._check_live()
        pop = FakePopulation(self, size, celltype)
        self.populations.append(pop)
        self.calls.append(("Population", (size, pop.kind)))
        return pop

    def AllToAllConnector(self) -> str:
        return "all-to-all"

    def OneToOneConnector(self) -> str:
        return "one-to-one"

    def Projection(self, pre, post, connector, synapse_type=None, receptor_type=None):
        self._check_live()
        proj = FakeProjection(self, pre, post, connector, synapse_type, receptor_type)
        self.projections.append(proj)
        self.calls.append(("Projection", receptor_type))
        return proj

    # --- checks of the delay-element wiring -----------------------------------------

    def _by_circuit(self) -> dict[int, tuple[FakePopulation, int]]:
        return {c: (pop, i) for pop in self.populations for i, c in enumerate(pop.circuits)}

    def check_layout(self) -> None:
        """The authors' placement and delay-pair wiring; FakeStackError when violated."""
        by_circuit = self._by_circuit()
        resets = [p for p in self.populations if p.is_reset_compartment]
        partners: set[int] = set()
        for pop in resets:
            incoming = [pr for pr in self.projections if pr.post is pop]
            if (
                len(incoming) != 1
                or incoming[0].connector != "one-to-one"
                or (incoming[0].receptor != "excitatory")
            ):
                raise FakeStackError("a reset compartment takes one one-to-one excitatory input")
            if np.any(incoming[0].synapses_per_connection < 2):
                raise FakeStackError("the delay drive is spread over several synapses (w > 63)")
            if any(pr.pre is pop for pr in self.projections):
                raise FakeStackError("a reset compartment drives nothing; its neighbour does")
            for name, want in (("refractory_period_input_clock", 0), ("threshold_enable", False),
                               ("event_routing_enable_bypass_excitatory", True)):  # fmt: skip
                if any(pop.param(name, i) != want for i in range(pop.size)):
                    raise FakeStackError(f"reset compartment needs {name} = {want}")
            for c in pop.circuits:
                if c < 256 or c % 2:
                    raise FakeStackError(f"reset compartment on circuit {c}: needs 256 + 2k")
                if c + 1 not in by_circuit:
                    raise FakeStackError(f"circuit {c + 1} (neighbour of {c}) is unused")
                mate, j = by_circuit[c + 1]
                if mate.is_reset_compartment or "spikes" not in mate.recorded:
                    raise FakeStackError(
                        f"circuit {c + 1} must be a recorded adaptation compartment"
                    )
                if any(pr.post is mate for pr in self.projections):
                    raise FakeStackError("an adaptation compartment receives no projection")
                wanted = (("refractory_period_input_clock", 0), ("adaptation_enable", True),
                          ("threshold_enable", True))  # fmt: skip
                for name, want in wanted:
                    if mate.param(name, j) != want:
                        raise FakeStackError(f"adaptation compartment needs {name} = {want}")
                partners.add(c + 1)
        for pop in self.populations:
            if pop.kind == "HXNeuron" and not pop.is_reset_compartment:
                for c in pop.circuits:
                    if c not in partners and c >= 256:
                        raise FakeStackError(
                            f"layer neuron on circuit {c}: layer neurons use 0..255"
                        )

    # --- running --------------------------------------------------------------------

    def run(self, duration: float | None, command: FakeRunCommand = FakeRunCommand.EXECUTE) -> None:
        self._check_live()
        self.calls.append(("run", duration))
        self.check_layout()
        if command is FakeRunCommand.PREPARE:
            self.prepared = True  # the initial config is applied to the populations
            return
        if duration is None or not (math.isfinite(duration) and duration > 0):
            raise FakeStackError(f"run needs a duration > 0 in ms, got {duration!r}")
        self.prepared = True
        if self.fail_on_run:
            raise OSError("no connection to the chip")
        for pop in self.populations:
            if pop.kind == "SpikeSourceArray":
                for train in pop.parameters.get("spike_times", []):
                    t = np.asarray(train, dtype=np.float64)
                    if t.size and t.max() >= duration:
                        raise FakeStackError(
                            f"source spike at {t.max()} ms at or after the run's end "
                            f"{duration} ms (the stack drops it with only a warning)"
                        )
        self.last_duration = float(duration)
        self.runs += 1
        spikes: dict[int, list[np.ndarray]] = {}
        for pop in self.populations:
            if pop.kind == "SpikeSourceArray":
                trains = pop.parameters.get("spike_times", [[] for _ in range(pop.size)])
                spikes[pop.index] = [np.asarray(t, dtype=np.float64) for t in trains]
            elif (
                pop.kind == "HXNeuron"
                and not pop.is_reset_compartment
                and not any(
                    r.is_reset_compartment and self._mate_of(r) is pop for r in self.populations
                )
            ):
                spikes[pop.index] = [np.asarray(t, dtype=np.float64) for t in self.responder(pop)]
        for pop in self.populations:
            if pop.is_reset_compartment:
                mate = self._mate_of(pop)
                (drive,) = [pr for pr in self.projections if pr.post is pop]
                spikes[mate.index] = self._delay(pop, spikes[drive.pre.index], duration)
        for pop in self.populations:
            if pop.index in spikes and pop.kind == "HXNeuron":
                pop._store([t[t < duration] for t in spikes[pop.index]])  # lost after the end

    def _mate_of(self, reset: FakePopulation) -> FakePopulation:
        return self._by_circuit()[reset.circuits[0] + 1][0]

    def _delay(self, reset: FakePopulation, inputs: list[np.ndarray], duration: float):
        assert self.chip is not None
        scale = self.chip.neuron_block.backends[self.BACKEND_COORDS[0]].clock_scale_slow
        stretch = _clock_mhz(_MEASURED_AT_SCALE) / _clock_mhz(scale)
        out = []
        for i, times in enumerate(inputs):
            tref = float(reset.param("refractory_period_refractory_time", i))
            delay_ms = (tref / 8.0 * stretch + 2.0) / 1000.0
            delayed, busy_until = [], -np.inf
            for t in np.sort(times):
                if t >= busy_until:  # an input during the refractory period is lost
                    delayed.append(t + delay_ms)
                    busy_until = t + delay_ms
            out.append(np.asarray(delayed))
        return out
