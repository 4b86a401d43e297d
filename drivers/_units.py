"""Chip-native units, only inside ``delgrad.drivers``: microseconds, 6-bit weight codes,
refractory clock cycles. Every conversion has a name; ``_us`` marks microseconds.

All functions are pure and vectorised (numpy in, numpy out).
"""

from __future__ import annotations

import numpy as np

#: Refractory-counter clock of a BrainScaleS-2 neuron circuit as the DelGrad authors use
#: it for delay elements: tref = (d_us - 2) * 8, i.e. 8 cycles per microsecond.
REFRACTORY_CYCLES_PER_US = 8.0
#: Fixed part of a delay element's delay that the refractory time does not set, in us.
DELAY_OFFSET_US = 2.0
#: Range of the refractory setting used for delay elements (cycles).
REFRACTORY_MIN_CYCLES, REFRACTORY_MAX_CYCLES = 50, 250


def model_to_us(t: np.ndarray | float, time_unit_us: float) -> np.ndarray:
    """Model time (units of tau_s) to microseconds of chip time."""
    return np.asarray(t, dtype=np.float64) * time_unit_us


def us_to_model(t_us: np.ndarray | float, time_unit_us: float) -> np.ndarray:
    """Microseconds of chip time to model time (units of tau_s)."""
    return np.asarray(t_us, dtype=np.float64) / time_unit_us


def weight_to_code(w: np.ndarray, scale: float, code_max: int) -> tuple[np.ndarray, int]:
    """Signed integer weight codes ``clip(round(scale * w), -code_max, code_max)``.

    Args:
        w: weights in model units, any shape.
        scale: codes per model weight unit (30 on BrainScaleS-2 as the authors use it).
        code_max: largest magnitude of a code (63 for 6-bit synapses).

    Returns:
        (codes as int64 of ``w``'s shape, number of entries that were clipped).
        The sign selects the excitatory or the inhibitory synapse row; the magnitude
        is the 6-bit synapse weight.
    """
    raw = np.rint(np.asarray(w, dtype=np.float64) * scale)
    clipped = int(np.count_nonzero(np.abs(raw) > code_max))
    return np.clip(raw, -code_max, code_max).astype(np.int64), clipped


def code_to_weight(codes: np.ndarray, scale: float) -> np.ndarray:
    """Model weights of signed integer codes, ``codes / scale``."""
    return np.asarray(codes, dtype=np.float64) / scale


def split_signed_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(excitatory, inhibitory) magnitudes (both >= 0) of signed codes, same shape."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes > 0, codes, 0), np.where(codes < 0, -codes, 0)


def delay_us_to_refractory_cycles(d_us: np.ndarray | float) -> tuple[np.ndarray, int]:
    """Refractory setting of a delay element: ``clip(round((d_us - 2) * 8), 50, 250)``.

    Returns:
        (int64 cycles of ``d_us``'s shape, number of entries that were clipped).
    """
    raw = np.rint((np.asarray(d_us, dtype=np.float64) - DELAY_OFFSET_US) * REFRACTORY_CYCLES_PER_US)
    clipped = int(np.count_nonzero((raw < REFRACTORY_MIN_CYCLES) | (raw > REFRACTORY_MAX_CYCLES)))
    return np.clip(raw, REFRACTORY_MIN_CYCLES, REFRACTORY_MAX_CYCLES).astype(np.int64), clipped


def refractory_cycles_to_delay_us(cycles: np.ndarray | int) -> np.ndarray:
    """Nominal delay (us) of a delay element with the given refractory setting."""
    return np.asarray(cycles, dtype=np.float64) / REFRACTORY_CYCLES_PER_US + DELAY_OFFSET_US


def quantise_delay_us(
    d_us: np.ndarray, d_min_us: float, d_max_us: float, step_us: float, quantise: bool = True
) -> tuple[np.ndarray, int]:
    """Delays clipped to [d_min_us, d_max_us] and rounded to the ``step_us`` grid from d_min_us.

    Returns:
        (float64 delays in us, number of entries that were clipped).
    """
    d = np.asarray(d_us, dtype=np.float64)
    clipped = int(np.count_nonzero((d < d_min_us) | (d > d_max_us)))
    d = np.clip(d, d_min_us, d_max_us)
    if quantise:
        d = d_min_us + np.rint((d - d_min_us) / step_us) * step_us
        d = np.minimum(d, d_max_us)
    return d, clipped
