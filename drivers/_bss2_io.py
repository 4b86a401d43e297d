"""Pure parts of the BrainScaleS-2 driver: parameter translation, circuit layout, the
delay elements' neuron settings, trial packing, read-out.

Nothing here imports the BrainScaleS-2 stack. Times on the wire to PyNN are
milliseconds of hardware time (``_ms``); the chip's own figures are in
microseconds (``_us``); the host speaks model units (tau_s).

Public sources the conventions below follow (read, not copied):

* JulianGoeltz/fastAndDeep ``src/delay_utils.py`` (the DelGrad authors' chip code):
  network neurons on circuits 0..255, each delay element a *pair* of circuits in
  the other half (reset compartment on circuit 256 + 2k with
  ``multicompartment_connect_right``, adaptation compartment on 257 + 2k, which is
  recorded and drives the next layer); the input reaches the reset compartment
  through a one-to-one projection of weight 800; the refractory setting of the
  reset compartment sets the delay, ``tref = (d_us - 2) * 8`` clipped to 50..250,
  with the slow refractory clock at scale 4 (``clock_scale_slow = 4``,
  ``clock_scale_adaptation_pulse = 8``, ``refractory_period_input_clock = 0``).
* electronicvisions/haldls ``include/haldls/vx/neuron.h``: a refractory clock of
  scale s runs at 250 MHz / 2**(s + 1); the refractory counter is 0..255.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from delgrad.drivers._chip_params import BSS2Params
from delgrad.drivers._units import (
    code_to_weight,
    delay_us_to_refractory_cycles,
    model_to_us,
    refractory_cycles_to_delay_us,
    split_signed_codes,
    us_to_model,
    weight_to_code,
)
from delgrad.errors import CapabilityError
from delgrad.runtime import Network, ParameterError

# --- circuit layout ------------------------------------------------------------------
#: Neuron circuits of one BrainScaleS-2 chip (halco.AtomicNeuronOnDLS.size).
CHIP_CIRCUITS = 512
#: Circuits for network (layer) neurons: the lower half, 0..255, as the authors place them.
NETWORK_CIRCUITS = 256
#: First circuit of the delay elements' half; pair k uses circuits 256 + 2k and 257 + 2k.
DELAY_FIRST_CIRCUIT = 256
#: Delay elements that fit: two circuits each in the upper half.
DELAY_PAIRS = (CHIP_CIRCUITS - DELAY_FIRST_CIRCUIT) // 2

# --- refractory clock ----------------------------------------------------------------
#: Reference clock of the refractory counters (haldls ``CommonNeuronBackendConfig::ClockScale``).
REFRACTORY_CLOCK_BASE_MHZ = 250.0
#: Slow-clock scale the authors set for the delay elements (their tref-to-delay map holds
#: for it): 250 MHz / 2**5 = 7.8125 MHz, i.e. 0.128 us per cycle.
DELAY_SLOW_CLOCK_SCALE = 4
#: Adaptation-pulse clock scale the authors set with it.
DELAY_ADAPTATION_PULSE_CLOCK_SCALE = 8
#: ``refractory_period_input_clock`` value selecting the slow clock (lola ``RefractoryPeriod``:
#: 0 = slow, 1 = fast). The fast clock stays as calix chose it for the network neurons.
SLOW_INPUT_CLOCK = 0

#: Weight of the one-to-one projection driving a delay element's reset compartment. Above
#: 63, pynn-brainscales spreads one connection over ceil(w / 63) synapses
#: (``projections.py``, ``Connection.round_up_63``): 800 -> 13 synapses, as the authors use.
DELAY_DRIVE_WEIGHT = 800


def refractory_clock_mhz(scale: int) -> float:
    """Frequency (MHz) of a refractory clock of the given scale: 250 / 2**(scale + 1)."""
    return REFRACTORY_CLOCK_BASE_MHZ / 2 ** (int(scale) + 1)


def synapses_per_connection(weight: float) -> int:
    """Synapses pynn-brainscales uses for one connection of this weight: ceil(|w| / 63), >= 1."""
    return max(1, math.ceil(abs(round(weight)) / 63))


# --- the delay element's two circuits ------------------------------------------------
#: Settings of the reset compartment (circuit 256 + 2k): no leak, no threshold, synaptic
#: input bypassed straight to a spike, connected to its right neighbour, slow refractory
#: clock; its ``refractory_period_refractory_time`` is the delay setting. Values as in
#: ``calibrate_delays`` of JulianGoeltz/fastAndDeep ``src/delay_utils.py``.
DELAY_RESET_PARAMETERS: Mapping[str, Any] = MappingProxyType(
    {
        "leak_i_bias": 0,
        "leak_enable_multiplication": False,
        "leak_enable_division": True,
        "reset_v_reset": 250,
        "threshold_enable": False,
        "multicompartment_connect_right": True,
        "excitatory_input_enable": False,
        "inhibitory_input_enable": False,
        "excitatory_input_enable_small_capacitance": True,
        "excitatory_input_enable_high_resistance": True,
        "excitatory_input_i_bias_gm": 0,
        "excitatory_input_i_bias_tau": 0,
        "inhibitory_input_i_bias_tau": 0,
        "refractory_period_input_clock": SLOW_INPUT_CLOCK,
        "event_routing_enable_bypass_excitatory": True,
        "membrane_capacitance_capacitance": 10,
    }
)
#: Settings of the adaptation compartment (circuit 257 + 2k), whose spike is the delayed
#: spike: no synaptic input, pulsed adaptation, threshold on, slow refractory clock.
#: The per-circuit analog values the authors' delay calibration bisects
#: (``leak_v_leak``, ``adaptation_v_ref``, ``adaptation_v_leak``, ``threshold_v_threshold``)
#: are *not* set here: they come from the calibration file (an explicit value would
#: override the calibrated one).
DELAY_ADAPTATION_PARAMETERS: Mapping[str, Any] = MappingProxyType(
    {
        "membrane_capacitance_capacitance": 0,
        "threshold_enable": True,
        "leak_i_bias": 500,
        "leak_enable_multiplication": False,
        "leak_enable_division": False,
        "excitatory_input_enable": False,
        "inhibitory_input_enable": False,
        "adaptation_i_bias_tau": 1000,
        "adaptation_i_bias_a": 1000,
        "adaptation_i_bias_b": 1000,
        "adaptation_invert_b": False,
        "adaptation_enable_pulse": True,
        "adaptation_enable": True,
        "reset_v_reset": 600,
        "refractory_period_input_clock": SLOW_INPUT_CLOCK,
        "refractory_period_refractory_time": 25,
    }
)


@dataclass(frozen=True)
class CircuitLayout:
    """Where a network's neurons and delay elements sit on the chip.

    Attributes:
        n_network: layer neurons, on circuits 0..n_network-1 (lower half).
        n_pairs: delay elements, pair k on circuits 256 + 2k (reset) and 257 + 2k
            (adaptation, recorded).
        permutation: ``neuronPermutation`` for ``pynn.setup``: the hardware circuit of
            every ``HXNeuron`` in creation order (layer populations, then all reset
            compartments, then all adaptation compartments).
    """

    n_network: int
    n_pairs: int
    permutation: tuple[int, ...]

    @property
    def reset_circuits(self) -> tuple[int, ...]:
        """Circuits of the reset compartments, in delay-element order."""
        return tuple(DELAY_FIRST_CIRCUIT + 2 * k for k in range(self.n_pairs))

    @property
    def adaptation_circuits(self) -> tuple[int, ...]:
        """Circuits of the adaptation compartments (right neighbours of the reset ones)."""
        return tuple(DELAY_FIRST_CIRCUIT + 2 * k + 1 for k in range(self.n_pairs))


def circuit_layout(net: Network) -> CircuitLayout:
    """The authors' placement of ``net``: layer neurons in the lower half, one circuit
    pair per axonal-delay input (bias inputs included) in the upper half.

    Raises:
        CapabilityError: more than 256 layer neurons or more than 128 delay elements.
    """
    n_network = sum(ly.n_out for ly in net.layers)
    n_pairs = sum(ly.n_pre for ly in net.layers if ly.delay == "axonal")
    problems = []
    if n_network > NETWORK_CIRCUITS:
        problems.append(
            f"{n_network} layer neurons, but only circuits 0..{NETWORK_CIRCUITS - 1} "
            f"({NETWORK_CIRCUITS}) hold layer neurons"
        )
    if n_pairs > DELAY_PAIRS:
        problems.append(
            f"{n_pairs} delay elements (one per input of an axonal layer, bias included), "
            f"but each takes two neighbouring circuits of "
            f"{DELAY_FIRST_CIRCUIT}..{CHIP_CIRCUITS - 1}, so at most {DELAY_PAIRS} fit"
        )
    if problems:
        raise CapabilityError("network does not fit one BrainScaleS-2 chip: " + "; ".join(problems))
    layout = CircuitLayout(n_network, n_pairs, ())
    permutation = tuple(range(n_network)) + layout.reset_circuits + layout.adaptation_circuits
    return CircuitLayout(n_network, n_pairs, permutation)


@dataclass(frozen=True)
class LayerConfig:
    """Chip-native settings of one layer.

    Attributes:
        excitatory: (n_pre, n_out) int64 6-bit magnitudes of the excitatory synapses.
        inhibitory: (n_pre, n_out) int64 6-bit magnitudes of the inhibitory synapses.
        refractory_cycles: (n_pre,) int64 refractory settings of the delay elements
            of an axonal layer, else None.
        bias_times: the layer's bias spike times (model units).
    """

    excitatory: np.ndarray
    inhibitory: np.ndarray
    refractory_cycles: np.ndarray | None
    bias_times: tuple[float, ...]


@dataclass(frozen=True)
class ChipConfig:
    """A network translated to chip settings, with what it realises.

    Attributes:
        layers: one :class:`LayerConfig` per layer.
        realised: the network the settings realise nominally (host units), a new object.
        clipped_weights: weights clipped to the 6-bit range.
        clipped_delays: delays clipped to the refractory range.
    """

    layers: tuple[LayerConfig, ...]
    realised: Network
    clipped_weights: int
    clipped_delays: int


def translate_network(net: Network, params: BSS2Params) -> ChipConfig:
    """Chip settings of ``net``: signed 6-bit weight codes and delay refractory settings.

    Weights: ``clip(round(weight_scale * w), -code_max, code_max)``, sign by row
    (excitatory / inhibitory). Axonal delays: ``tref = clip(round((d_us - 2) * 8), 50, 250)``
    with ``d_us = d * tau_s_us``. Only ``"none"`` and ``"axonal"`` layers are
    translatable (the caller refuses others).
    """
    layers = []
    w_real, d_real = [], []
    n_w = n_d = 0
    for index, layer in enumerate(net.layers):
        if layer.delay not in ("none", "axonal"):
            raise ParameterError(f"layer {index}: delay kind {layer.delay!r} is not translatable")
        codes, clipped = weight_to_code(net.w[index], params.weight_scale, params.weight_code_max)
        n_w += clipped
        exc, inh = split_signed_codes(codes)
        w_real.append(code_to_weight(codes, params.weight_scale))
        cycles = None
        if layer.delay == "axonal":
            cycles, clipped = delay_us_to_refractory_cycles(
                model_to_us(net.d[index], params.time_unit_us)
            )
            n_d += clipped
            d_real.append(us_to_model(refractory_cycles_to_delay_us(cycles), params.time_unit_us))
        else:
            d_real.append(net.d[index].copy())
        layers.append(LayerConfig(exc, inh, cycles, layer.bias_times))
    realised = Network(net.layers, params.neuron, w_real, d_real)
    return ChipConfig(tuple(layers), realised, n_w, n_d)


#: Quiet gap after each trial window (us) before the next trial starts. Spikes that a
#: trial causes after its window (inputs near the window end, through up to two delay
#: elements of <= 33.25 us and a few tau of rise) land in the gap, where they are counted
#: as late instead of being taken for the next trial's first spikes; and no spike of the
#: batch lies at or after the run's end, where PyNN drops it with only a warning.
TRIAL_GUARD_US = 90.0
#: Tolerance (model units) for a spike at exactly the window end after the ms round trip.
_WINDOW_EPS = 1e-9


def trial_period_us(params: BSS2Params, guard_us: float = TRIAL_GUARD_US) -> float:
    """Length of one trial slot in the batch spike train (us): the window plus a guard gap.

    Raises:
        ParameterError: ``guard_us`` not > 0 (a spike at t == window would then start the
            next trial's slot).
    """
    if not (math.isfinite(guard_us) and guard_us > 0):
        raise ParameterError(f"guard_us must be a finite number > 0, got {guard_us!r}")
    return params.trial_length_us + float(guard_us)


def pack_trials(
    t_in: np.ndarray,
    params: BSS2Params,
    bias_times: tuple[float, ...] = (),
    *,
    guard_us: float = TRIAL_GUARD_US,
) -> tuple[list[np.ndarray], float, int]:
    """One spike train per input channel (bias channels appended) for a whole batch.

    Trial b occupies [b * P, (b + 1) * P) with P = ``trial_period_us`` = window + guard;
    a spike at model time t of sample b is sent at ``b * P + t * tau_s_us`` (us), here
    in ms. Spikes with t <= window are sent (t == window stays inside its own slot, since
    the guard is > 0); later ones are not sent and are counted.

    Args:
        t_in: (B, n_in) input times in model units (inf = none).
        params: chip figures.
        bias_times: bias spike times (model units) sent in every trial.
        guard_us: quiet gap after each window (us), > 0.

    Returns:
        (per channel a sorted float64 array of times in ms, run duration B * P in ms,
        number of input spikes dropped for lying beyond the window).
    """
    t = np.asarray(t_in, dtype=np.float64)
    if t.ndim != 2:
        raise ParameterError(f"t_in must be (B, n_in), got shape {t.shape}")
    n_batch = t.shape[0]
    period_us = trial_period_us(params, guard_us)
    window = params.window
    offsets_us = np.arange(n_batch) * period_us
    trains = []
    dropped = 0
    columns = [t[:, i] for i in range(t.shape[1])]
    columns += [np.full(n_batch, b) for b in bias_times]
    for col in columns:
        finite = np.isfinite(col)
        keep = finite & (col <= window)
        dropped += int(np.count_nonzero(finite & ~keep))
        times_us = offsets_us[keep] + model_to_us(col[keep], params.time_unit_us)
        trains.append(np.sort(times_us) / 1000.0)
    return trains, n_batch * period_us / 1000.0, dropped


def first_spikes(
    trains_ms: list[np.ndarray],
    n_batch: int,
    params: BSS2Params,
    *,
    guard_us: float = TRIAL_GUARD_US,
) -> tuple[np.ndarray, int]:
    """First spike of each neuron in each trial window, in model units.

    A neuron whose first spike in a trial's slot lies after the window (in the guard
    gap, or after the run's end) is reported as inf and counted as late, once per
    (trial, neuron), as the emulator counts it.

    Args:
        trains_ms: per neuron, its recorded spike times in ms (any order).
        n_batch: number of trials B.
        params: chip figures.
        guard_us: the guard gap the batch was packed with (``pack_trials``).

    Returns:
        ((B, n) times relative to each trial's start, inf = no spike in the window;
        number of (trial, neuron) pairs that spiked only after the window).
    """
    period_us = trial_period_us(params, guard_us)
    window = params.window
    out = np.full((n_batch, len(trains_ms)), np.inf)
    late = 0
    if n_batch == 0:
        return out, late
    for j, train in enumerate(trains_ms):
        t_us = np.sort(np.asarray(train, dtype=np.float64).ravel() * 1000.0)
        t_us = t_us[np.isfinite(t_us) & (t_us >= 0.0)]
        # spikes after the run's end belong to the last trial (late by construction)
        slot = np.minimum(np.floor(t_us / period_us).astype(np.int64), n_batch - 1)
        if slot.size == 0:
            continue
        first = np.ones(slot.size, dtype=bool)
        first[1:] = slot[1:] != slot[:-1]
        rel = us_to_model(t_us[first] - slot[first] * period_us, params.time_unit_us)
        in_window = rel <= window + _WINDOW_EPS
        late += int(np.count_nonzero(~in_window))
        out[slot[first][in_window], j] = np.minimum(rel[in_window], window)
    return out, late
