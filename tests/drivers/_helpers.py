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

from delgrad.drivers._bss2_recipe import recipe_record, record_path, write_record
from delgrad.runtime import Layer, Network, NeuronParams

from ._fake_stack import (
    BACKEND_COORDS,
    HALCO,
    FakeCalix,
    FakeChip,
    FakeDumper,
    SpikingCalibTarget,
    chip_from_portable_binary,
    delay_element,
    operating_point,
    perfect_delay_values,
    set_field,
    to_portablebinary,
)


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


def recipe_chip(delays: bool = True) -> FakeChip:
    """A chip calibrated by the recipe (refractory 20 us on every circuit) and, with
    ``delays``, with every delay element exactly on its operating point."""
    target = SpikingCalibTarget()
    target.neuron_target.refractory_time.fill(20e-6)
    chip = FakeCalix().calibrate(target).chip
    if delays:
        for k in range(128):
            circuit = 257 + 2 * k
            neuron = chip.neuron_block.atomic_neurons[circuit]
            for key, value in perfect_delay_values(chip, circuit).items():
                set_field(neuron, key, value)
    return chip


def fake_calibration_file(name: str = "chip.pbin", kind: str = "recipe") -> Path:
    """A calibration file in the stand-in's portable-binary format.

    ``kind``: ``"recipe"`` (what ``delgrad bss2 calibrate`` makes, with its record),
    ``"no-delays"`` (the recipe's calix part and record, delay elements not calibrated),
    ``"calix-defaults"`` (a default-constructed calix target, no record: tau 10 us,
    refractory 2 us, as calix's nightly 'spiking' calibration).
    """
    path = Path(_CALIBRATION_DIR.name) / name
    if kind == "calix-defaults":
        chip = FakeCalix().calibrate(SpikingCalibTarget()).chip
    else:
        chip = recipe_chip(delays=kind == "recipe")
    dumper = FakeDumper()
    dumper.write("ChipOnDLS", chip)
    path.write_bytes(to_portablebinary(dumper.done()))
    record = record_path(path)
    if kind == "calix-defaults":
        record.unlink(missing_ok=True)
    else:
        write_record(path, recipe_record(128 if kind == "recipe" else 0))
    return path


#: Neuron circuits of a chip (halco.AtomicNeuronOnDLS.size).
FAKE_CIRCUITS = 512


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


#: Samples of an analog trace (MADC) per run; the input bump sits at samples 400..409.
TRACE_SAMPLES = 1000
_ANALOG = ("v", "adaptation")
#: pynn-brainscales cells.py, HXNeuron.validate_parameter_space (message as there)
EARLY_SET_MESSAGE = (
    "Initial config not yet applied. Parameters are not yet set (and will be overwritten "
    "during mapping). Perform `pynn.run(None, command=pynn.RunCommand.PREPARE)` to apply "
    "the initial config or run an experiment."
)
#: pynn-brainscales simulator.py, State.run (message as there)
RUN_WITHOUT_RESET_MESSAGE = (
    "Call `pynn.reset()` before calling `pynn.run()` again. BrainScales-2 emulates the "
    "behavior of neurons and synapses in continuous time. Stacking several `pynn.run` "
    "commands without calling `pynn.reset()` between runs is therefore not supported."
)


class FakePopulation:
    """A population: parameters, per-neuron recording, per-run data in segments (PyNN)."""

    def __init__(self, fake: FakePyNN, size: int, celltype: FakeCellType) -> None:
        if not isinstance(celltype, FakeCellType):
            raise FakeStackError("Population needs a cell type instance")
        self.fake = fake
        self.size = int(size)
        self.kind = celltype.kind
        self.user_parameters = dict(celltype.parameters)  # as constructed
        self.parameters = celltype.parameters  # after PREPARE: calibration, then user values
        self.recording: list[set[str]] = [set() for _ in range(self.size)]
        self.index = len(fake.populations)
        self.circuits: tuple[int, ...] = ()
        self.sets: list[dict[str, Any]] = []
        self._segments: list[dict[str, dict[int, np.ndarray]]] = []  # closed segments
        self._current: dict[str, dict[int, np.ndarray]] | None = None
        if self.kind == "HXNeuron":
            _check_hx_parameters(self.parameters, self.size)
            self.circuits = fake._place(self.size)
        elif self.kind == "SpikeSourceArray" and "spike_times" in self.parameters:
            self._check_spike_times(self.parameters["spike_times"])

    @property
    def recorded(self) -> list[str]:
        return sorted(set().union(*self.recording))

    @property
    def is_reset_compartment(self) -> bool:
        return self.kind == "HXNeuron" and bool(
            self.user_parameters.get("multicompartment_connect_right")
        )

    def param(self, name: str, i: int = 0) -> Any:
        """A parameter's value for neuron i (None when not set: the calibration's value)."""
        if name not in self.parameters:
            return None
        values = np.atleast_1d(np.asarray(self.parameters[name]))
        return values[0] if values.size == 1 else values[i]

    def __getitem__(self, index: slice) -> FakeView:
        return FakeView(self, list(range(self.size))[index])

    def _check_spike_times(self, spike_times: Any) -> None:
        trains = list(spike_times)
        if len(trains) != self.size:
            raise FakeStackError(f"spike_times: {len(trains)} trains for {self.size} sources")
        for train in trains:
            t = np.asarray(train, dtype=np.float64).ravel()
            if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
                raise FakeStackError("spike_times must be finite, >= 0 and sorted (ms)")

    def source_trains(self) -> tuple[list[np.ndarray], float]:
        """A spike source's trains (ms) and its last spike (-inf: none), cached per value."""
        spike_times = self.parameters.get("spike_times")
        if getattr(self, "_trains_of", None) is not spike_times:
            given = spike_times if spike_times is not None else [[]] * self.size
            trains = [np.asarray(t, dtype=np.float64).ravel() for t in given]
            last = max((float(t.max()) for t in trains if t.size), default=-np.inf)
            self._trains_cache, self._trains_of = (trains, last), spike_times
        return self._trains_cache

    def _apply_config(self, chip: FakeChip) -> None:
        """cells.py HXNeuron.apply_config: the calibration's values, then the user's."""
        merged: dict[str, Any] = {}
        for i, circuit in enumerate(self.circuits):
            for key, value in chip.neuron_block.atomic_neurons[circuit].flat().items():
                merged.setdefault(key, [0] * self.size)[i] = value
        for key, value in self.parameters.items():
            if key in merged:
                merged[key] = list(np.broadcast_to(np.asarray(value), (self.size,)))
            else:
                merged[key] = value
        self.parameters = merged

    def set(self, **parameters: Any) -> None:
        self._set(list(range(self.size)), parameters)

    def _set(self, indices: list[int], parameters: dict[str, Any]) -> None:
        self.fake._check_live()
        self.fake.calls.append(("Population.set", (self.index, sorted(parameters))))
        if self.kind == "HXNeuron":
            if not self.fake.prepared:
                raise RuntimeError(EARLY_SET_MESSAGE)  # real rule, not "silently overwritten"
            _check_hx_parameters(parameters, len(indices))
            for key, value in parameters.items():
                old = np.asarray(self.parameters.get(key, 0))
                full = np.array(np.broadcast_to(old, (self.size,)), dtype=object)
                full[indices] = np.broadcast_to(np.asarray(value, dtype=object), (len(indices),))
                self.parameters[key] = list(full) if len(indices) < self.size else value
        else:
            if "spike_times" in parameters:
                self._check_spike_times(parameters["spike_times"])
            self.parameters.update(parameters)
        self.sets.append(dict(parameters))

    def record(self, what: list[str] | None) -> None:
        self._record(list(range(self.size)), what)

    def _record(self, indices: list[int], what: list[str] | None) -> None:
        """PyNN: ``record(None)`` stops recording, ``record([...])`` adds variables."""
        self.fake._check_live()
        if what is not None and self.kind == "HXNeuron" and not set(what) <= {
            "spikes", "v", "exc_synin", "inh_synin", "adaptation"}:  # fmt: skip
            raise FakeStackError(f"cannot record {what}")
        for i in indices:
            self.recording[i] = set() if what is None else self.recording[i] | set(what)
        self.fake.calls.append(("record", self.index))

    def _store(self, data: dict[str, dict[int, np.ndarray]]) -> None:
        self._current = data

    def _new_segment(self) -> None:
        if self._current is not None:
            self._segments.append(self._current)
            self._current = None

    def get_data(self, what: str = "all", gather: bool = True, clear: bool = False
                 ) -> SimpleNamespace:  # fmt: skip
        return self._get_data(list(range(self.size)), what, clear)

    def _get_data(self, indices: list[int], what: str, clear: bool) -> SimpleNamespace:
        """PyNN: one segment per run between resets, all of them unless cleared."""
        self.fake._check_live()
        if not any(what in self.recording[i] for i in indices):
            raise FakeStackError(f"{what!r} was not recorded")
        segments = list(self._segments) + ([self._current] if self._current is not None else [])
        out = []
        for seg in segments:
            got = seg.get(what, {})
            if what == "spikes":
                trains = [FakeSpikeTrain.make(got[i], n) for n, i in enumerate(indices) if i in got]
                out.append(SimpleNamespace(spiketrains=trains, irregularlysampledsignals=[]))
            else:
                traces = [got[i] for i in indices if i in got]
                out.append(SimpleNamespace(spiketrains=[], irregularlysampledsignals=traces))
        if clear:
            self._segments, self._current = [], None
        return SimpleNamespace(segments=out)


class FakeView:
    """A PopulationView (``population[a:b]``): set, record and read a subset."""

    def __init__(self, parent: FakePopulation, indices: list[int]) -> None:
        self.parent, self.indices, self.size = parent, indices, len(indices)

    def set(self, **parameters: Any) -> None:
        self.parent._set(self.indices, parameters)

    def record(self, what: list[str] | None) -> None:
        self.parent._record(self.indices, what)

    def get_data(self, what: str = "all", gather: bool = True, clear: bool = False
                 ) -> SimpleNamespace:  # fmt: skip
        return self.parent._get_data(self.indices, what, clear)


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
        raw = self._broadcast(params.get("weight", 0))
        # projections.py, Connection.__init__ checks the sign of the weight as given,
        # before _set_weight rounds it: -0.3 on an excitatory receptor is refused
        self._check_sign(raw)
        self.weight = self._check_weights(raw)

    @property
    def shape(self) -> tuple[int, ...]:
        return (
            (self.pre.size,) if self.connector == "one-to-one" else (self.pre.size, self.post.size)
        )

    def _broadcast(self, weight: Any) -> np.ndarray:
        w = np.asarray(weight, dtype=np.float64)
        try:
            return np.broadcast_to(w, self.shape).copy()
        except ValueError as exc:
            raise FakeStackError(f"weights of shape {np.shape(weight)} for {self.shape}") from exc

    def _check_sign(self, w: np.ndarray) -> None:
        # projections.py, Connection.__init__ / _set_weight: positive for excitatory,
        # negative for inhibitory, else ConnectionError (test_projections.py, test_weight_sign)
        if (self.receptor == "excitatory" and np.any(w < 0)) or (
            self.receptor == "inhibitory" and np.any(w > 0)
        ):
            raise FakeConnectionError(
                "Weights must be positive for conductance-based and/or excitatory synapses "
                "and negative for inhibitory synapses"
            )

    def _check_weights(self, w: np.ndarray) -> np.ndarray:
        w = np.rint(w)  # Connection._set_weight rounds, then checks the sign again
        self._check_sign(w)
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
            self.weight = self._check_weights(self._broadcast(parameters["weight"]))
        self.fake.calls.append(("Projection.set", (self.pre.index, self.post.index, self.receptor)))


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
    * ``helper.chip_from_file`` parses the file (a portable binary, ``helper.py``) and
      ``run(None, RunCommand.PREPARE)`` applies it to every HXNeuron population, user
      parameters taking precedence (``cells.py``, ``HXNeuron.apply_config``); setting
      HXNeuron parameters before that raises RuntimeError
      (``HXNeuron.validate_parameter_space``, called by ``Population._set_parameters``).
    * HXNeuron parameters exist and are in range.
    * weights: sign by receptor (``ConnectionError``), checked on the weight as given at
      construction and on the rounded weight (``Connection.__init__`` / ``_set_weight``),
      rounded, delay 0 (``ValueError``), all-to-all weights <= 63 (stricter).
    * ``run(duration)`` in ms; a second ``run`` without ``reset`` raises RuntimeError
      (``simulator.py``, ``State.run``); every source spike must lie before the run's end
      (stricter: the stack drops later spikes with a warning); spikes recorded after
      the end are lost; data per segment, ``reset`` starts a new one.
    * delay elements (authors' wiring, src/delay_utils.py): a population with
      ``multicompartment_connect_right`` is a reset compartment on even circuits
      256 + 2k; its right neighbour 257 + 2k holds an adaptation compartment that
      receives no projection; both on the slow refractory clock; the reset compartment
      bypasses its synaptic input, has no threshold, gets exactly one one-to-one
      excitatory projection spread over several synapses and drives nothing; layer
      neurons sit on circuits 0..255.

    Delay elements are simulated from their parameters, i.e. from the calibration file
    unless set explicitly: the adaptation compartment's operating point
    (``_fake_stack.operating_point``) decides whether and when it fires; at the
    calibrated point it fires ``tref / f_slow + 2 us`` after the input (f_slow = the chip
    object's slow refractory clock, haldls neuron.h: 250 MHz / 2**(scale + 1); the 2 us
    latency is the stand-in's assumption). That is not the authors' fitted
    ``tref / 8 + 2``: at scale 4 the clock gives 7.8125 cycles per us. The recorded
    ``v`` / ``adaptation`` traces come from the same model. Other HXNeuron populations
    spike as ``responder`` says.

    Args:
        responder: population -> list of per-neuron spike time arrays (ms) of a run,
            for non-delay HXNeuron populations; default no spikes.
        fail_on_run: raise from ``run`` (to test error handling).
    """

    BACKEND_COORDS = BACKEND_COORDS
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
        self.running = False
        self.chip: FakeChip | None = None
        self.permutation: list[int] | None = None
        self.last_duration: float | None = None
        self.runs = 0
        self.cells = SimpleNamespace(
            HXNeuron=lambda **kw: FakeCellType("HXNeuron", kw),
            SpikeSourceArray=lambda **kw: FakeCellType("SpikeSourceArray", kw),
        )
        self.synapses = SimpleNamespace(StaticSynapse=lambda **kw: ("StaticSynapse", kw))
        self.helper = SimpleNamespace(
            chip_from_file=self._chip_from_file,
            chip_from_portable_binary=chip_from_portable_binary,
        )
        self.halco = HALCO
        self.errors = SimpleNamespace(ConnectionError=FakeConnectionError)
        self.RunCommand = FakeRunCommand

    # --- session --------------------------------------------------------------------

    def _chip_from_file(self, path: Path) -> FakeChip:
        with open(path, "rb") as fd:  # helper.py: reads the file (FileNotFoundError if absent)
            data = fd.read()
        self.calls.append(("chip_from_file", str(path)))
        chip = chip_from_portable_binary(data)
        chip.path = Path(path)  # type: ignore[attr-defined]
        return chip

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
        self.live, self.prepared, self.running = True, False, False

    def end(self) -> None:
        self.calls.append(("end", None))
        self.live = False

    def reset(self) -> None:
        self._check_live()
        self.calls.append(("reset", None))
        self.running = False
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

    def _structure(self) -> tuple[int, int, int]:
        return (id(self.populations), len(self.populations), len(self.projections))

    def _by_circuit(self) -> dict[int, tuple[FakePopulation, int]]:
        key = self._structure()
        if getattr(self, "_circuits_key", None) != key:
            self._circuits = {
                c: (pop, i) for pop in self.populations for i, c in enumerate(pop.circuits)
            }
            self._circuits_key = key
        return self._circuits

    def check_layout(self) -> None:
        """The authors' placement and delay-pair wiring; FakeStackError when violated
        (checked once per network structure: it depends on nothing else)."""
        if getattr(self, "_checked", None) == self._structure():
            return
        self._check_layout()
        self._checked = self._structure()

    def _check_layout(self) -> None:
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
                if pop.user_parameters.get(name) != want:
                    raise FakeStackError(f"reset compartment needs {name} = {want}")
            for c in pop.circuits:
                if c < 256 or c % 2:
                    raise FakeStackError(f"reset compartment on circuit {c}: needs 256 + 2k")
                if c + 1 not in by_circuit:
                    raise FakeStackError(f"circuit {c + 1} (neighbour of {c}) is unused")
                mate, _ = by_circuit[c + 1]
                if mate.is_reset_compartment or mate.kind != "HXNeuron":
                    raise FakeStackError(f"circuit {c + 1} must be an adaptation compartment")
                if any(pr.post is mate for pr in self.projections):
                    raise FakeStackError("an adaptation compartment receives no projection")
                for name in ("refractory_period_input_clock", "adaptation_enable"):
                    if mate.user_parameters.get(name) != {"adaptation_enable": True}.get(name, 0):
                        raise FakeStackError(f"adaptation compartment needs {name} set")
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
        if not self.prepared:
            assert self.chip is not None
            for pop in self.populations:
                if pop.kind == "HXNeuron":
                    pop._apply_config(self.chip)
            self.prepared = True
        if command is FakeRunCommand.PREPARE:
            return
        if self.running:
            raise RuntimeError(RUN_WITHOUT_RESET_MESSAGE)
        if duration is None or not (math.isfinite(duration) and duration > 0):
            raise FakeStackError(f"run needs a duration > 0 in ms, got {duration!r}")
        self.running = True
        if self.fail_on_run:
            raise OSError("no connection to the chip")
        for pop in self.populations:
            if pop.kind == "SpikeSourceArray":
                last = pop.source_trains()[1]
                if last >= duration:
                    raise FakeStackError(
                        f"source spike at {last} ms at or after the run's end "
                        f"{duration} ms (the stack drops it with only a warning)"
                    )
        self.last_duration = float(duration)
        self.runs += 1
        spikes: dict[int, list[np.ndarray]] = {}
        mates = {self._mate_of(r).index: r for r in self.populations if r.is_reset_compartment}
        for pop in self.populations:
            if pop.kind == "SpikeSourceArray":
                spikes[pop.index] = pop.source_trains()[0]
            elif pop.kind == "HXNeuron" and not pop.is_reset_compartment and pop.index not in mates:
                spikes[pop.index] = [np.asarray(t, dtype=np.float64) for t in self.responder(pop)]
        data: dict[int, dict[str, dict[int, np.ndarray]]] = {}
        for pop in self.populations:
            if pop.is_reset_compartment:
                mate = self._mate_of(pop)
                (drive,) = [pr for pr in self.projections if pr.post is pop]
                inputs = spikes[drive.pre.index]
                data[mate.index] = self._delay_elements(pop, mate, inputs)
        for pop in self.populations:
            if pop.kind != "HXNeuron" or pop.is_reset_compartment:
                continue
            got = data.get(pop.index)
            if got is None:
                trains = spikes.get(pop.index, [np.array([])] * pop.size)
                got = {"spikes": {i: trains[i] for i in range(pop.size)}}
            got["spikes"] = {  # recorded only where asked; lost after the run's end
                i: t[t < duration]
                for i, t in got.get("spikes", {}).items()
                if "spikes" in pop.recording[i]
            }
            pop._store(got)

    def _mate_of(self, reset: FakePopulation) -> FakePopulation:
        return self._by_circuit()[reset.circuits[0] + 1][0]

    def _delay_elements(self, reset: FakePopulation, mate: FakePopulation,
                        inputs: list[np.ndarray]) -> dict[str, dict]:  # fmt: skip
        """Spikes and traces of the adaptation compartments (only where recorded)."""
        assert self.chip is not None
        scale = self.chip.neuron_block.backends[self.BACKEND_COORDS[0]].clock_scale_slow
        out: dict[str, dict[int, np.ndarray]] = {"spikes": {}, "v": {}, "adaptation": {}}
        for i, times in enumerate(inputs):
            wanted = mate.recording[i]
            if not wanted:
                continue
            op = operating_point(
                mate.circuits[i],
                mate.param("adaptation_v_ref", i),
                mate.param("adaptation_v_leak", i),
                mate.param("leak_v_leak", i),
                mate.param("threshold_v_threshold", i),
            )
            tref = float(reset.param("refractory_period_refractory_time", i))
            delay_us = delay_element(
                op, tref / _clock_mhz(scale) + 2.0, bool(mate.param("threshold_enable", i))
            )
            delayed, busy_until = [], -np.inf
            if delay_us is not None:
                for t in np.sort(times):
                    if t >= busy_until:  # an input during the refractory period is lost
                        delayed.append(t + delay_us / 1000.0)
                        busy_until = t + delay_us / 1000.0
            out["spikes"][i] = np.asarray(delayed)
            trace = np.full(TRACE_SAMPLES, op.rest)
            if len(times):  # the input's bump, clipped by a threshold that fires
                top = op.threshold if delay_us is not None else op.peak
                trace[400:410] = min(top, op.peak)
            out["v"][i] = trace
            out["adaptation"][i] = np.full(TRACE_SAMPLES, op.adaptation)
        return out
