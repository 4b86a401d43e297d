"""Driver for a BrainScaleS-2 system through its public PyNN interface (pynn_brainscales).

The stack is imported lazily, only when a driver is created without an injected
``pynn_module``. What follows the DelGrad authors' setup: neurons calibrated to
tau_m = tau_s = 6 us (a calibration file from the stack's calibration tools),
signed 6-bit weights as separate excitatory and inhibitory projections, axonal
delays realised by neuron circuits whose delay is set by their refractory time,
and a batch of trials sent as one spike train with one trial window per sample.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from delgrad.drivers._bss2_io import ChipConfig, first_spikes, pack_trials, translate_network
from delgrad.drivers._contract import Capabilities, Driver, Observation
from delgrad.drivers._errors import BackendUnavailableError, CapabilityError, DriverError
from delgrad.drivers._params import BSS2Params
from delgrad.drivers._units import (
    REFRACTORY_CYCLES_PER_US,
    REFRACTORY_MAX_CYCLES,
    REFRACTORY_MIN_CYCLES,
    refractory_cycles_to_delay_us,
    us_to_model,
)
from delgrad.runtime import Network, ParameterError

#: PyNN module of the BrainScaleS-2 stack.
PYNN_MODULE = "pynn_brainscales.brainscales2"
#: HXNeuron parameter holding the refractory setting (clock cycles) of a delay element.
REFRACTORY_PARAMETER = "refractory_period_refractory_time"

_INSTALL_HINT = (
    "the BrainScaleS-2 software stack is not installed: delgrad.drivers.BrainScaleS2Driver "
    f"needs `{PYNN_MODULE}` (pynn-brainscales with its hxcomm / grenade dependencies), "
    "which is not on the Python package index. Use the EBRAINS BrainScaleS-2 service or a "
    "machine with the stack (e.g. the Electronic Visions software container, "
    "`module load ppu-toolchain` / `spack` environment of github.com/electronicvisions), "
    "or use EmulatorDriver('bss2') instead."
)


def import_pynn() -> ModuleType:
    """The stack's PyNN module, or :class:`BackendUnavailableError` saying what to install."""
    try:
        return importlib.import_module(PYNN_MODULE)
    except ImportError as exc:
        raise BackendUnavailableError(_INSTALL_HINT) from exc


class BrainScaleS2Driver(Driver):
    """Chip-in-the-loop trials on BrainScaleS-2.

    Each ``run`` sets up the PyNN session, builds the network from the settings
    written by ``configure`` (inputs as one ``SpikeSourceArray`` population,
    per layer an ``HXNeuron`` population, per axonal layer a population of delay
    neurons driven one-to-one at full weight, weights as excitatory and
    inhibitory ``StaticSynapse`` projections), runs the whole batch as one spike
    train and reads the first spike per neuron and trial window.

    Args:
        params: chip figures (time unit, weight scale, delay range, trial window).
        calibration: calibration file (``pynn.helper.chip_from_file``) targeting
            tau_m = tau_s = ``params.tau_s_us``; None: the stack's default setup.
        pynn_module: the PyNN module to use (tests inject a stand-in); default:
            import ``pynn_brainscales.brainscales2``.
        cell_parameters: extra ``HXNeuron`` parameters for the network neurons.
        delay_weight_code: 6-bit weight driving a delay neuron (63: strongest).

    Raises:
        BackendUnavailableError: no ``pynn_module`` given and the stack is missing.
    """

    def __init__(
        self,
        params: BSS2Params | None = None,
        calibration: str | Path | None = None,
        pynn_module: Any = None,
        cell_parameters: dict[str, Any] | None = None,
        delay_weight_code: int = 63,
    ) -> None:
        super().__init__()
        if params is not None and not isinstance(params, BSS2Params):
            raise ParameterError(f"params must be BSS2Params, got {type(params).__name__}")
        self.params = params if params is not None else BSS2Params()
        if not 0 < delay_weight_code <= self.params.weight_code_max:
            raise ParameterError(f"delay_weight_code must be in 1..{self.params.weight_code_max}")
        self.pynn = pynn_module if pynn_module is not None else import_pynn()
        self.calibration = None if calibration is None else Path(calibration)
        self.cell_parameters = dict(cell_parameters or {})
        self.delay_weight_code = int(delay_weight_code)
        self._config: ChipConfig | None = None
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
            max_neurons=p.n_neuron_circuits,
            nominal_neuron=p.neuron,
            noisy=True,
        )

    @property
    def capabilities(self) -> Capabilities:
        """Figures of the chip as configured by ``params`` (see docs/hardware.md)."""
        return self._caps

    @property
    def config(self) -> ChipConfig | None:
        """The chip settings written by the last ``configure``."""
        return self._config

    @property
    def applied(self) -> Network | None:
        """The nominal parameters the chip settings realise (a separate copy)."""
        return None if self._config is None else self._config.realised

    def _configure(self, network: Network) -> None:
        n_circuits = sum(ly.n_out for ly in network.layers) + sum(
            ly.n_pre for ly in network.layers if ly.delay == "axonal"
        )
        if n_circuits > self.params.n_neuron_circuits:
            raise CapabilityError(
                f"network needs {n_circuits} neurons (layers and delay elements), "
                f"the chip has {self.params.n_neuron_circuits}"
            )
        self._config = translate_network(network, self.params)

    def _run(self, t_in: np.ndarray) -> Observation:
        cfg = self._config
        assert cfg is not None and self._network is not None
        pynn = self.pynn
        p = self.params
        n_batch = t_in.shape[0]
        layers = self._network.layers
        trains, duration_ms, dropped = pack_trials(t_in, p)
        try:
            if self.calibration is not None:
                pynn.setup(initial_config=pynn.helper.chip_from_file(self.calibration))
            else:
                pynn.setup()
            source = pynn.Population(
                len(trains), pynn.cells.SpikeSourceArray(spike_times=[list(x) for x in trains])
            )
            delay_pops: list[Any] = []
            neuron_pops: list[Any] = []
            pre = source
            for layer, lc in zip(layers, cfg.layers, strict=True):
                if lc.bias_times:
                    bias_trains, _, _ = pack_trials(np.empty((n_batch, 0)), p, lc.bias_times)
                    bias = pynn.Population(
                        len(bias_trains),
                        pynn.cells.SpikeSourceArray(spike_times=[list(x) for x in bias_trains]),
                    )
                    pre_parts = [(pre, 0, layer.n_in), (bias, layer.n_in, layer.n_pre)]
                else:
                    pre_parts = [(pre, 0, layer.n_pre)]
                if lc.refractory_cycles is not None:
                    delayed = pynn.Population(
                        layer.n_pre,
                        pynn.cells.HXNeuron(
                            **{REFRACTORY_PARAMETER: [int(c) for c in lc.refractory_cycles]}
                        ),
                    )
                    delayed.record(["spikes"])
                    for part, lo, hi in pre_parts:
                        conn = np.zeros((hi - lo, layer.n_pre), dtype=np.int64)
                        conn[np.arange(hi - lo), np.arange(lo, hi)] = self.delay_weight_code
                        self._project(part, delayed, conn, "excitatory")
                    delay_pops.append(delayed)
                    pre_parts = [(delayed, 0, layer.n_pre)]
                else:
                    delay_pops.append(None)
                post = pynn.Population(layer.n_out, pynn.cells.HXNeuron(**self.cell_parameters))
                post.record(["spikes"])
                for part, lo, hi in pre_parts:
                    self._project(part, post, lc.excitatory[lo:hi], "excitatory")
                    self._project(part, post, lc.inhibitory[lo:hi], "inhibitory")
                neuron_pops.append(post)
                pre = post
            pynn.run(duration_ms)
            times, arrivals = [], []
            late = 0
            for delayed, post in zip(delay_pops, neuron_pops, strict=True):
                if delayed is None:
                    arrivals.append(None)
                else:
                    arr, n_late = first_spikes(self._spiketrains(delayed), n_batch, p)
                    arrivals.append(arr)
                    late += n_late
                out, n_late = first_spikes(self._spiketrains(post), n_batch, p)
                times.append(out)
                late += n_late
        except BackendUnavailableError:
            raise
        except Exception as exc:
            raise DriverError(f"BrainScaleS-2 run failed: {exc}") from exc
        finally:
            try:
                pynn.end()
            except Exception:
                pass
        return Observation(
            times=times,
            arrivals=arrivals,
            clipped_weights=cfg.clipped_weights,
            clipped_delays=cfg.clipped_delays,
            dropped_inputs=dropped,
            late_spikes=late,
            trials=n_batch,
        )

    def _project(self, pre: Any, post: Any, codes: np.ndarray, receptor: str) -> None:
        """Excitatory or inhibitory all-to-all projection of 6-bit magnitudes (skipped if all 0)."""
        if not np.any(codes):
            return
        pynn = self.pynn
        pynn.Projection(
            pre,
            post,
            pynn.AllToAllConnector(),
            synapse_type=pynn.synapses.StaticSynapse(weight=np.asarray(codes, dtype=np.float64)),
            receptor_type=receptor,
        )

    @staticmethod
    def _spiketrains(population: Any) -> list[np.ndarray]:
        block = population.get_data("spikes")
        return [np.asarray(st, dtype=np.float64) for st in block.segments[0].spiketrains]
