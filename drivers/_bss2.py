"""Driver for a BrainScaleS-2 system through its public PyNN interface (pynn_brainscales).

The stack is imported lazily, only when a driver is created without an injected
``pynn_module``. What follows the DelGrad authors' chip code (JulianGoeltz/fastAndDeep
``src/delay_utils.py``, ``src/networks.py``) and the rules of the current
pynn-brainscales (electronicvisions/pynn-brainscales):

* a calibration file is required (``pynn.helper.chip_from_file``, passed as
  ``initial_config``); without one the driver refuses to run, since ``HXNeuron``
  defaults to a silent neuron (``standardmodels/cells.py``);
* one PyNN session per network structure: ``setup`` once, then set-run-reset per
  batch (``Population.set`` / ``Projection.set``, ``run``, ``reset``), ``end`` on
  ``close``, as the authors' ``delay_utils.Network`` does;
* weights as separate excitatory (>= 0) and inhibitory (<= 0) all-to-all projections,
  delays 0 (``projections.py`` raises ``ConnectionError`` for a positive inhibitory
  weight and ``ValueError`` for a delay other than 0);
* every axonal-delay input goes through a delay element of two neighbouring circuits
  in the upper half of the chip, driven one-to-one at weight 800; the refractory
  clocks are set explicitly (:mod:`delgrad.drivers._bss2_io` has the layout and the
  settings, each with its source);
* a batch is one spike train: trial b in [b * P, (b + 1) * P), P = window + guard.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from delgrad.drivers._bss2_io import (
    DELAY_ADAPTATION_PARAMETERS,
    DELAY_ADAPTATION_PULSE_CLOCK_SCALE,
    DELAY_DRIVE_WEIGHT,
    DELAY_PAIRS,
    DELAY_RESET_PARAMETERS,
    DELAY_SLOW_CLOCK_SCALE,
    NETWORK_CIRCUITS,
    TRIAL_GUARD_US,
    ChipConfig,
    CircuitLayout,
    circuit_layout,
    first_spikes,
    pack_trials,
    translate_network,
    trial_period_us,
)
from delgrad.drivers._bss2_recipe import (
    CALIBRATE_COMMAND,
    calibration_error,
    check_calibration,
    read_record,
)
from delgrad.drivers._bss2_routing import check_fan_in
from delgrad.drivers._chip_params import BSS2Params
from delgrad.drivers._units import (
    REFRACTORY_CYCLES_PER_US,
    REFRACTORY_MAX_CYCLES,
    REFRACTORY_MIN_CYCLES,
    model_to_us,
    refractory_cycles_to_delay_us,
    us_to_model,
)
from delgrad.errors import BackendUnavailableError, CapabilityError, DriverError
from delgrad.runtime import Capabilities, Driver, Layer, Network, Observation, ParameterError

#: PyNN module of the BrainScaleS-2 stack.
PYNN_MODULE = "pynn_brainscales.brainscales2"
#: HXNeuron parameter holding the refractory setting (clock cycles) of a delay element.
REFRACTORY_PARAMETER = "refractory_period_refractory_time"
#: Environment variable naming the calibration file when none is passed.
CALIBRATION_ENV = "DELGRAD_BSS2_CALIBRATION"

_INSTALL_HINT = (
    "the BrainScaleS-2 software stack is not installed: delgrad.drivers.BrainScaleS2Driver "
    f"needs `{PYNN_MODULE}` (pynn-brainscales with its hxcomm / grenade dependencies), "
    "which is not on the Python package index. Use the EBRAINS BrainScaleS-2 service or a "
    "machine with the stack (e.g. the Electronic Visions software container, "
    "`module load ppu-toolchain` / `spack` environment of github.com/electronicvisions), "
    "or use EmulatorDriver('bss2') instead."
)

_CALIBRATION_HINT = (
    "Make one on the chip you will use (docs/hardware.md, 'First run on a real chip'): "
    f"`{CALIBRATE_COMMAND}` runs calix with the recipe's targets (layer neurons "
    "tau_m = tau_s = 6 us, refractory 20 us; delay elements 15 / 10 us) and the "
    "delay-element calibration, into one file plus a record of its targets (chip.pbin.json). "
    f"Then pass BrainScaleS2Driver(calibration='chip.pbin') or set ${CALIBRATION_ENV}."
)


def import_pynn() -> ModuleType:
    """The stack's PyNN module, or :class:`BackendUnavailableError` saying what to install."""
    try:
        return importlib.import_module(PYNN_MODULE)
    except ImportError as exc:
        raise BackendUnavailableError(_INSTALL_HINT) from exc


def _halco_of(pynn: Any) -> Any:
    """The coordinate module (``dlens_vx_v3.halco``) that goes with ``pynn``.

    pynn_brainscales.brainscales2 imports it at module level; a stand-in carries its own.
    """
    halco = getattr(pynn, "halco", None)
    if halco is not None:
        return halco
    try:
        return importlib.import_module("dlens_vx_v3").halco
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(_INSTALL_HINT) from exc


def resolve_calibration(calibration: str | Path | None) -> Path:
    """The calibration file to use: ``calibration``, else ``$DELGRAD_BSS2_CALIBRATION``.

    Raises:
        DriverError: none given, or the file does not exist; the message says how to
            make one. The driver never runs uncalibrated: without an initial config,
            every ``HXNeuron`` keeps its built-in defaults, which pynn-brainscales
            documents as a silent neuron (``standardmodels/cells.py``).
    """
    if calibration is None or str(calibration) == "":
        calibration = os.environ.get(CALIBRATION_ENV) or None
    if calibration is None:
        raise DriverError(
            "BrainScaleS-2 driver refuses to run uncalibrated: no calibration file given "
            f"(argument `calibration` or ${CALIBRATION_ENV}); without one every HXNeuron "
            "keeps its built-in defaults, a silent neuron. " + _CALIBRATION_HINT
        )
    path = Path(calibration)
    if not path.is_file():
        raise DriverError(
            f"BrainScaleS-2 calibration file {str(path)!r} not found. " + _CALIBRATION_HINT
        )
    return path


@dataclass
class _Part:
    """One block of a layer's presynaptic inputs: the layer's inputs, or its bias inputs.

    ``source`` is what spikes for these inputs (an input, bias or layer population);
    for an axonal layer, ``reset`` / ``adaptation`` are the delay elements' populations
    and the adaptation population is the source of the layer's weights.
    """

    lo: int
    hi: int
    source: Any
    reset: Any = None
    adaptation: Any = None
    excitatory: Any = None
    inhibitory: Any = None


@dataclass
class _Session:
    """A PyNN session holding one network structure (setup .. end)."""

    structure: tuple
    layout: CircuitLayout
    inputs: Any
    biases: list[Any]
    neurons: list[Any]
    parts: list[list[_Part]] = field(default_factory=list)


class BrainScaleS2Driver(Driver):
    """Chip-in-the-loop trials on BrainScaleS-2.

    ``configure`` opens a PyNN session for the network's structure (or updates the
    weights and delay settings of the open one with ``set``): inputs as one
    ``SpikeSourceArray`` population (bias inputs: one per layer with biases), per
    layer an ``HXNeuron`` population on circuits 0..255, per axonal layer one delay
    element per input (two circuits, 256 + 2k and 257 + 2k), weights as excitatory and
    inhibitory ``StaticSynapse`` projections. ``run`` sets the batch's spike trains,
    runs it as one, reads the first spike per neuron and trial window, and resets.

    Args:
        params: chip figures (time unit, weight scale, delay range, trial window).
        calibration: calibration file (``pynn.helper.chip_from_file``) targeting
            tau_m = tau_s = ``params.tau_s_us`` on circuits 0..255 and holding the delay
            elements' calibration on 256..511; None: ``$DELGRAD_BSS2_CALIBRATION``.
        pynn_module: the PyNN module to use (tests inject a stand-in); default:
            import ``pynn_brainscales.brainscales2``.
        cell_parameters: extra ``HXNeuron`` parameters for the network neurons.
        delay_drive_weight: weight of the one-to-one projection into a delay element
            (above 63 it is spread over ceil(w / 63) synapses; the authors use 800).
        guard_us: quiet gap after each trial window (us), where late spikes are counted.
        delay_reset_parameters, delay_adaptation_parameters: ``HXNeuron`` settings of
            the two circuits of a delay element (default: the authors' settings).
        check_calibration: check the calibration file against the recipe at start
            (:func:`~delgrad.drivers._bss2_recipe.check_calibration`); False only for a
            file checked otherwise.

    Raises:
        BackendUnavailableError: no ``pynn_module`` given and the stack is missing.
        DriverError: no calibration file (see :func:`resolve_calibration`), or one that
            does not fit the recipe (one line per mismatch, each with its fix).
    """

    def __init__(
        self,
        params: BSS2Params | None = None,
        calibration: str | Path | None = None,
        pynn_module: Any = None,
        *,
        cell_parameters: Mapping[str, Any] | None = None,
        delay_drive_weight: int = DELAY_DRIVE_WEIGHT,
        guard_us: float = TRIAL_GUARD_US,
        delay_reset_parameters: Mapping[str, Any] | None = None,
        delay_adaptation_parameters: Mapping[str, Any] | None = None,
        check_calibration: bool = True,
    ) -> None:
        super().__init__()
        if params is not None and not isinstance(params, BSS2Params):
            raise ParameterError(f"params must be BSS2Params, got {type(params).__name__}")
        self.params = params if params is not None else BSS2Params()
        if isinstance(delay_drive_weight, bool) or not isinstance(delay_drive_weight, int):
            raise ParameterError(f"delay_drive_weight must be an int, got {delay_drive_weight!r}")
        if delay_drive_weight <= 0:
            raise ParameterError(f"delay_drive_weight must be > 0, got {delay_drive_weight}")
        self.guard_us = float(guard_us)
        trial_period_us(self.params, self.guard_us)  # validates guard_us
        self.pynn = pynn_module if pynn_module is not None else import_pynn()
        self.calibration = resolve_calibration(calibration)
        if check_calibration:
            self._check_calibration_file()
        self.cell_parameters = dict(cell_parameters or {})
        self.delay_drive_weight = int(delay_drive_weight)
        self.delay_reset_parameters = dict(
            DELAY_RESET_PARAMETERS if delay_reset_parameters is None else delay_reset_parameters
        )
        self.delay_adaptation_parameters = dict(
            DELAY_ADAPTATION_PARAMETERS
            if delay_adaptation_parameters is None
            else delay_adaptation_parameters
        )
        if REFRACTORY_PARAMETER in self.delay_reset_parameters:
            raise ParameterError(
                f"delay_reset_parameters must not set {REFRACTORY_PARAMETER}: "
                "it is the delay, set from the network"
            )
        self._config: ChipConfig | None = None
        self._session: _Session | None = None
        p = self.params
        cyc_lo, cyc_hi = REFRACTORY_MIN_CYCLES, REFRACTORY_MAX_CYCLES
        self._caps = Capabilities(
            backend="brainscales2",
            time_unit_us=p.time_unit_us,
            weight_max=p.weight_max,
            weight_resolution=1.0 / p.weight_scale,
            weight_rule="clip",
            delay_kinds=("none", "axonal"),
            delay_min=float(us_to_model(refractory_cycles_to_delay_us(cyc_lo), p.time_unit_us)),
            delay_max=float(us_to_model(refractory_cycles_to_delay_us(cyc_hi), p.time_unit_us)),
            delay_resolution=float(us_to_model(1.0 / REFRACTORY_CYCLES_PER_US, p.time_unit_us)),
            delay_rule="clip",
            max_trial_length=p.window,
            max_input_spikes_per_trial=p.max_input_spikes_per_trial,
            max_neurons=min(p.n_neuron_circuits, NETWORK_CIRCUITS),
            nominal_neuron=p.neuron,
            noisy=True,
        )

    def _check_calibration_file(self) -> None:
        """Refuse a calibration file that does not fit the recipe (all mismatches at once)."""
        try:
            chip = self.pynn.helper.chip_from_file(self.calibration)
        except Exception as exc:
            raise DriverError(
                f"BrainScaleS-2 calibration file {str(self.calibration)!r} is unreadable "
                f"({exc}). " + _CALIBRATION_HINT
            ) from exc
        problems = check_calibration(chip, _halco_of(self.pynn), read_record(self.calibration))
        if problems:
            raise calibration_error(self.calibration, problems)

    @property
    def capabilities(self) -> Capabilities:
        """Figures of the chip as configured by ``params`` (see docs/hardware.md)."""
        return self._caps

    @property
    def config(self) -> ChipConfig | None:
        """The chip settings written by the last ``configure``."""
        return self._config

    @property
    def layout(self) -> CircuitLayout | None:
        """Where the configured network sits on the chip (None before ``configure``)."""
        return None if self._session is None else self._session.layout

    @property
    def applied(self) -> Network | None:
        """The nominal parameters the chip settings realise (a separate copy)."""
        return None if self._config is None else self._config.realised

    # --- configure --------------------------------------------------------------------

    def _configure(self, network: Network) -> None:
        layout = circuit_layout(network)  # CapabilityError when it does not fit
        check_fan_in(network)  # before grenade would refuse it at routing
        config = translate_network(network, self.params)
        structure = tuple(
            (ly.n_in, ly.n_out, ly.delay, len(ly.bias_times)) for ly in network.layers
        )
        try:
            if self._session is not None and self._session.structure == structure:
                self._write_parameters(self._session, config)
            else:
                self._end_session()
                self._session = self._open_session(network, config, layout, structure)
        except (BackendUnavailableError, CapabilityError):
            self._end_session()
            raise
        except Exception as exc:
            self._end_session()
            raise DriverError(f"BrainScaleS-2 configure failed: {exc}") from exc
        self._config = config

    def _open_session(
        self, network: Network, config: ChipConfig, layout: CircuitLayout, structure: tuple
    ) -> _Session:
        """``setup`` with the calibration, clocks and placement; build; prepare."""
        pynn = self.pynn
        chip = pynn.helper.chip_from_file(self.calibration)
        self._set_refractory_clocks(chip)
        pynn.setup(initial_config=chip, neuronPermutation=list(layout.permutation))
        inputs = pynn.Population(network.n_inputs, pynn.cells.SpikeSourceArray())
        biases = [
            pynn.Population(len(ly.bias_times), pynn.cells.SpikeSourceArray())
            if ly.bias_times
            else None
            for ly in network.layers
        ]
        # HXNeuron populations in the order of the permutation: layer neurons (circuits
        # 0..), then every delay element's reset compartment (256 + 2k), then its
        # adaptation compartment (257 + 2k).
        neurons = []
        for ly in network.layers:
            pop = pynn.Population(ly.n_out, pynn.cells.HXNeuron(**self.cell_parameters))
            pop.record(["spikes"])
            neurons.append(pop)
        session = _Session(structure, layout, inputs, biases, neurons)
        for index, ly in enumerate(network.layers):
            source = inputs if index == 0 else neurons[index - 1]
            parts = [_Part(0, ly.n_in, source)]
            if ly.bias_times:
                parts.append(_Part(ly.n_in, ly.n_pre, biases[index]))
            session.parts.append([pt for pt in parts if pt.hi > pt.lo])
        for lc, parts in zip(config.layers, session.parts, strict=True):
            if lc.refractory_cycles is None:
                continue
            for pt in parts:
                cycles = [int(c) for c in lc.refractory_cycles[pt.lo : pt.hi]]
                pt.reset = pynn.Population(
                    pt.hi - pt.lo,
                    pynn.cells.HXNeuron(
                        **self.delay_reset_parameters, **{REFRACTORY_PARAMETER: cycles}
                    ),
                )
        for lc, parts in zip(config.layers, session.parts, strict=True):
            if lc.refractory_cycles is None:
                continue
            for pt in parts:
                pt.adaptation = pynn.Population(
                    pt.hi - pt.lo, pynn.cells.HXNeuron(**self.delay_adaptation_parameters)
                )
                pt.adaptation.record(["spikes"])
        for post, lc, parts in zip(neurons, config.layers, session.parts, strict=True):
            for pt in parts:
                pre = pt.source
                if pt.reset is not None:
                    # the input drives the reset compartment one-to-one at a large weight
                    # (spread over several synapses); the adaptation compartment's spike
                    # is the delayed spike and drives the layer
                    pynn.Projection(
                        pt.source,
                        pt.reset,
                        pynn.OneToOneConnector(),
                        synapse_type=pynn.synapses.StaticSynapse(weight=self.delay_drive_weight),
                        receptor_type="excitatory",
                    )
                    pre = pt.adaptation
                exc, inh = self._weights(lc, pt)
                pt.excitatory = pynn.Projection(
                    pre,
                    post,
                    pynn.AllToAllConnector(),
                    synapse_type=pynn.synapses.StaticSynapse(weight=exc),
                    receptor_type="excitatory",
                )
                pt.inhibitory = pynn.Projection(
                    pre,
                    post,
                    pynn.AllToAllConnector(),
                    synapse_type=pynn.synapses.StaticSynapse(weight=inh),
                    receptor_type="inhibitory",
                )
        # Place, route and apply the calibration now: until then HXNeuron parameters are
        # not final (cells.py, HXNeuron.validate_parameter_space / apply_config), so later
        # `set` calls would be overwritten by the calibration's values.
        pynn.run(None, pynn.RunCommand.PREPARE)
        return session

    def _write_parameters(self, session: _Session, config: ChipConfig) -> None:
        """New weights and delay settings into the open session (same structure)."""
        for lc, parts in zip(config.layers, session.parts, strict=True):
            for pt in parts:
                exc, inh = self._weights(lc, pt)
                pt.excitatory.set(weight=exc)
                pt.inhibitory.set(weight=inh)
                if pt.reset is not None:
                    assert lc.refractory_cycles is not None
                    cycles = lc.refractory_cycles[pt.lo : pt.hi].astype(np.int64)
                    pt.reset.set(**{REFRACTORY_PARAMETER: cycles})

    @staticmethod
    def _weights(lc: Any, pt: _Part) -> tuple[np.ndarray, np.ndarray]:
        """(excitatory >= 0, inhibitory <= 0) weight matrices of one part, float64.

        pynn-brainscales wants the sign on the weight: ``projections.py`` raises
        ``ConnectionError`` for a positive weight on an ``"inhibitory"`` receptor (its
        ``test_projections.py::test_weight_sign`` asserts it) and sends ``abs(weight)``
        to the chip; the authors pass ``weights.clip(max=0)``.
        """
        exc = np.asarray(lc.excitatory[pt.lo : pt.hi], dtype=np.float64)
        inh = -np.asarray(lc.inhibitory[pt.lo : pt.hi], dtype=np.float64)
        return exc, inh + 0.0  # + 0.0: no negative zeros

    def _set_refractory_clocks(self, chip: Any) -> None:
        """Slow refractory clock and adaptation-pulse clock as the authors set them.

        calix picks the clock scales from its calibration targets
        (electronicvisions/calix ``src/py/calix/spiking/refractory_period.py``,
        ``calculate_settings`` / ``Settings.apply_to_chip``); the delay elements' map
        ``tref = (d_us - 2) * 8`` holds for slow scale 4 (JulianGoeltz/fastAndDeep
        ``src/delay_utils.py``, ``calibrate_delays``), so it is written here on every
        neuron backend block, the same way calix writes it. The fast clock stays as
        calix chose it for the network neurons.
        """
        halco = _halco_of(self.pynn)
        for coord in halco.iter_all(halco.CommonNeuronBackendConfigOnDLS):
            backend = chip.neuron_block.backends[coord]
            backend.clock_scale_slow = DELAY_SLOW_CLOCK_SCALE
            backend.clock_scale_adaptation_pulse = DELAY_ADAPTATION_PULSE_CLOCK_SCALE

    # --- run --------------------------------------------------------------------------

    def _run(self, t_in: np.ndarray) -> Observation:
        cfg = self._config
        assert cfg is not None and self._network is not None
        p = self.params
        n_batch = t_in.shape[0]
        layers = self._network.layers
        trains, duration_ms, dropped = pack_trials(t_in, p, guard_us=self.guard_us)
        if n_batch == 0:
            return Observation(
                times=[np.empty((0, ly.n_out)) for ly in layers],
                arrivals=[
                    np.empty((0, ly.n_pre)) if ly.delay == "axonal" else None for ly in layers
                ],
                clipped_weights=cfg.clipped_weights,
                clipped_delays=cfg.clipped_delays,
                dropped_inputs=dropped,
                trials=0,
            )
        pynn = self.pynn
        try:
            if self._session is None:  # a failed run ended the previous session
                layout = circuit_layout(self._network)
                structure = tuple(
                    (ly.n_in, ly.n_out, ly.delay, len(ly.bias_times)) for ly in layers
                )
                self._session = self._open_session(self._network, cfg, layout, structure)
            session = self._session
            session.inputs.set(spike_times=trains)
            for layer, bias in zip(layers, session.biases, strict=True):
                if bias is not None:
                    bias_trains, _, _ = pack_trials(
                        np.empty((n_batch, 0)), p, layer.bias_times, guard_us=self.guard_us
                    )
                    bias.set(spike_times=bias_trains)
            pynn.run(duration_ms)
            times: list[np.ndarray] = []
            arrivals: list[np.ndarray | None] = []
            late = 0
            for neurons, parts in zip(session.neurons, session.parts, strict=True):
                delayed = [pt.adaptation for pt in parts if pt.adaptation is not None]
                if delayed:
                    trains_ms = [st for pop in delayed for st in self._spiketrains(pop)]
                    arr, n_late = first_spikes(trains_ms, n_batch, p, guard_us=self.guard_us)
                    arrivals.append(arr)
                    late += n_late
                else:
                    arrivals.append(None)
                out, n_late = first_spikes(
                    self._spiketrains(neurons), n_batch, p, guard_us=self.guard_us
                )
                times.append(out)
                late += n_late
            pynn.reset()
        except BackendUnavailableError:
            self._end_session()
            raise
        except Exception as exc:
            self._end_session()
            raise DriverError(f"BrainScaleS-2 run failed: {exc}") from exc
        return Observation(
            times=times,
            arrivals=arrivals,
            clipped_weights=cfg.clipped_weights,
            clipped_delays=cfg.clipped_delays,
            dropped_inputs=dropped,
            late_spikes=late,
            trials=n_batch,
        )

    # --- delay check ------------------------------------------------------------------

    def measure_delays(
        self,
        cycles: tuple[int, ...] = (50, 100, 150, 200, 250),
        *,
        n_pairs: int = DELAY_PAIRS,
        n_trials: int = 20,
        t_in: float = 0.5,
    ) -> np.ndarray:
        """Delay each delay element produces per refractory setting, measured on the chip.

        Configures a one-layer axonal network of ``n_pairs`` inputs (zero weights) whose
        delays map exactly onto ``cycles``, sends every input at ``t_in`` in
        ``n_trials`` trials per setting and takes the median of the observed arrival
        minus the input time. Compare with the nominal ``cycles / 8 + 2`` us (the
        authors' map; their ``test_delays`` in JulianGoeltz/fastAndDeep
        ``src/delay_utils.py`` plots the same). This replaces the configured network:
        call ``configure`` again afterwards.

        Args:
            cycles: refractory settings to measure, each in 50..250.
            n_pairs: delay elements to measure (the first ``n_pairs`` pairs), 1..128.
            n_trials: trials per setting.
            t_in: input time (model units) in each trial.

        Returns:
            (len(cycles), n_pairs) float64 median delays in us; nan where a pair never
            fired inside the window.

        Raises:
            ParameterError: a setting or size out of range.
            DriverError: the chip run failed.
        """
        lo, hi = REFRACTORY_MIN_CYCLES, REFRACTORY_MAX_CYCLES
        if not cycles or any(int(c) != c or not lo <= c <= hi for c in cycles):
            raise ParameterError(f"cycles must be integers in {lo}..{hi}, got {cycles!r}")
        if not 1 <= n_pairs <= DELAY_PAIRS or n_trials < 1:
            raise ParameterError(f"need 1 <= n_pairs <= {DELAY_PAIRS} and n_trials >= 1")
        p = self.params
        layer = Layer(n_pairs, 1, "axonal")
        t = np.full((n_trials, n_pairs), float(t_in))
        out = np.full((len(cycles), n_pairs), np.nan)
        for k, c in enumerate(cycles):
            d = us_to_model(refractory_cycles_to_delay_us(int(c)), p.time_unit_us)
            net = Network([layer], p.neuron, [np.zeros((n_pairs, 1))], [np.full(n_pairs, d)])
            self.configure(net)
            obs = self.run(t)
            assert obs.arrivals[0] is not None
            lag_us = model_to_us(obs.arrivals[0] - t, p.time_unit_us)
            fired = np.isfinite(lag_us).any(axis=0)
            out[k, fired] = np.nanmedian(
                np.where(np.isfinite(lag_us), lag_us, np.nan)[:, fired], axis=0
            )
        return out

    # --- session end ------------------------------------------------------------------

    def _end_session(self) -> None:
        """``pynn.end()`` of the open session, if any (errors while ending are ignored)."""
        if self._session is None:
            return
        self._session = None
        try:
            self.pynn.end()
        except Exception:
            pass

    def _close(self) -> None:
        self._end_session()

    @staticmethod
    def _spiketrains(population: Any) -> list[np.ndarray]:
        """This run's spike trains (ms) of a population, in neuron order.

        ``clear=True`` and the last segment: with set-run-reset, every ``reset`` starts a
        new segment, and the recorded data of earlier runs would otherwise still be
        returned (PyNN ``Population.get_data``).
        """
        block = population.get_data("spikes", clear=True)
        trains = list(block.segments[-1].spiketrains)
        order = [
            int(getattr(st, "annotations", {}).get("source_index", i))
            for i, st in enumerate(trains)
        ]
        out: list[np.ndarray] = [np.empty(0)] * population.size
        for index, st in zip(order, trains, strict=True):
            out[index] = np.asarray(st, dtype=np.float64).ravel()
        return out
