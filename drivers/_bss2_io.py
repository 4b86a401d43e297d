"""Pure parts of the BrainScaleS-2 driver: parameter translation, trial packing, read-out.

Nothing here imports the BrainScaleS-2 stack. Times on the wire to PyNN are
milliseconds of hardware time (``_ms``); the chip's own figures are in
microseconds (``_us``); the host speaks model units (tau_s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad.drivers._params import BSS2Params
from delgrad.drivers._units import (
    code_to_weight,
    delay_us_to_refractory_cycles,
    model_to_us,
    refractory_cycles_to_delay_us,
    split_signed_codes,
    us_to_model,
    weight_to_code,
)
from delgrad.runtime import Network, ParameterError


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


def trial_period_us(params: BSS2Params) -> float:
    """Length of one trial slot in the batch spike train (us): one window per sample."""
    return params.trial_length_us


def pack_trials(
    t_in: np.ndarray, params: BSS2Params, bias_times: tuple[float, ...] = ()
) -> tuple[list[np.ndarray], float, int]:
    """One spike train per input channel (bias channels appended) for a whole batch.

    Trial b occupies [b * P, (b + 1) * P) with P = ``trial_period_us``; a spike at
    model time t of sample b is sent at ``b * P + t * tau_s_us`` (us), here in ms.
    Spikes later than the window are not sent.

    Args:
        t_in: (B, n_in) input times in model units (inf = none).
        params: chip figures.
        bias_times: bias spike times (model units) sent in every trial.

    Returns:
        (per channel a sorted float64 array of times in ms, run duration in ms,
        number of input spikes dropped for lying beyond the window).
    """
    t = np.asarray(t_in, dtype=np.float64)
    if t.ndim != 2:
        raise ParameterError(f"t_in must be (B, n_in), got shape {t.shape}")
    n_batch = t.shape[0]
    period_us = trial_period_us(params)
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
    trains_ms: list[np.ndarray], n_batch: int, params: BSS2Params
) -> tuple[np.ndarray, int]:
    """First spike of each neuron in each trial window, in model units.

    Args:
        trains_ms: per neuron, its recorded spike times in ms (any order).
        n_batch: number of trials B.
        params: chip figures.

    Returns:
        ((B, n) times relative to each trial's start, inf = no spike; number of
        recorded spikes beyond the last trial's window).
    """
    period_us = trial_period_us(params)
    out = np.full((n_batch, len(trains_ms)), np.inf)
    late = 0
    for j, train in enumerate(trains_ms):
        t_us = np.sort(np.asarray(train, dtype=np.float64).ravel() * 1000.0)
        t_us = t_us[np.isfinite(t_us) & (t_us >= 0.0)]
        slot = np.floor(t_us / period_us).astype(np.int64)
        late += int(np.count_nonzero(slot >= n_batch))
        inside = slot < n_batch
        t_us, slot = t_us[inside], slot[inside]
        if slot.size == 0:
            continue
        first = np.ones(slot.size, dtype=bool)
        first[1:] = slot[1:] != slot[:-1]
        rel_us = t_us[first] - slot[first] * period_us
        out[slot[first], j] = us_to_model(rel_us, params.time_unit_us)
    return out, late
