"""Spike-event layout conversions.

Two layouts of a batch of ``T`` trials are in use:

* **CSR** (on the wire): ``offsets (T+1,)`` int64 with ``offsets[0] == 0``,
  non-decreasing, ``offsets[-1] == E``; the events of trial ``i`` are
  ``channels[offsets[i]:offsets[i+1]]`` and ``times[offsets[i]:offsets[i+1]]``.
* **Padded** (the NIR event-data convention, recorded event files):
  ``channels (T, N)`` and ``times (T, N)``; empty slots hold channel ``-1`` and
  time ``+inf``.

:func:`first_spike_inputs` reduces CSR events to the network's input layout,
``(T, n_inputs)`` first-spike times with ``+inf`` for a silent channel, and
:func:`inputs_to_events` goes back (one event per finite input time).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError

__all__ = [
    "CsrEvents",
    "FirstSpikes",
    "PaddedEvents",
    "csr_to_padded",
    "first_spike_inputs",
    "inputs_to_events",
    "padded_to_csr",
]


class FirstSpikes(NamedTuple):
    """Result of :func:`first_spike_inputs`.

    Attributes:
        t_in: (T, n_inputs) float64 first spike time per trial and channel
            (scaled by ``time_scale``), ``+inf`` where the channel is silent.
        ignored: number of events dropped for a channel outside ``[0, n_inputs)``
            or a non-finite or negative time.
    """

    t_in: NDArray[np.float64]
    ignored: int


class CsrEvents(NamedTuple):
    """Events of ``T`` trials in CSR layout.

    Attributes:
        offsets: (T+1,) int64 row offsets.
        channels: (E,) int64 input channel per event.
        times: (E,) float event times.
    """

    offsets: NDArray[np.int64]
    channels: NDArray[np.int64]
    times: NDArray[np.floating]


class PaddedEvents(NamedTuple):
    """Events of ``T`` trials in the padded NIR layout.

    Attributes:
        channels: (T, N) int64, ``-1`` in empty slots.
        times: (T, N) float, ``+inf`` in empty slots.
    """

    channels: NDArray[np.int64]
    times: NDArray[np.floating]


# ----------------------------------------------------------------- validation


def _int_array(name: str, values: ArrayLike, ndim: int) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # np.asarray([]) is float64; an empty list is fine
    if arr.dtype.kind not in "iu":
        raise ParameterError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ParameterError(f"{name} holds values beyond the int64 range")
    return arr.astype(np.int64, copy=False)


def _float_array(name: str, values: ArrayLike, ndim: int) -> NDArray[np.floating]:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind != "f"):
        arr = arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise ParameterError(f"{name} must be floating point, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _check_offsets(offsets: ArrayLike, n_events: int) -> NDArray[np.int64]:
    off = _int_array("offsets", offsets, 1)
    if off.size == 0 or off[0] != 0 or off[-1] != n_events:
        raise ParameterError(
            f"offsets must have T+1 >= 1 entries from 0 to n_events={n_events}, "
            f"got {off.size} entries" + (f" from {off[0]} to {off[-1]}" if off.size else "")
        )
    if np.any(np.diff(off) < 0):
        raise ParameterError("offsets must be non-decreasing")
    return off


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ParameterError(f"time_scale must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"time_scale must be finite and > 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- conversions


def first_spike_inputs(
    offsets: ArrayLike,
    channels: ArrayLike,
    times: ArrayLike,
    n_inputs: int,
    *,
    time_scale: float = 1.0,
) -> FirstSpikes:
    """First (earliest) spike time per trial and input channel.

    Args:
        offsets: (T+1,) int CSR offsets (0 first, E last, non-decreasing).
        channels: (E,) int input channel per event.
        times: (E,) float event times, in any unit; multiplied by ``time_scale``
            (e.g. ``1/6`` to turn microseconds into model units of tau_s).
        n_inputs: number of input channels of the network.
        time_scale: positive finite factor applied to the times.

    Returns:
        ``FirstSpikes(t_in (T, n_inputs) float64, ignored: int)``; ``t_in`` is
        ``+inf`` for channels without a valid event. Events with a channel outside
        ``[0, n_inputs)`` or a non-finite or negative time are skipped and counted
        in ``ignored``.

    Raises:
        ParameterError: bad shapes, dtypes, offsets, ``n_inputs`` or ``time_scale``.
    """
    n = _check_count("n_inputs", n_inputs)
    scale = _check_scale(time_scale)
    ch = _int_array("channels", channels, 1)
    t = _float_array("times", times, 1)
    if t.size != ch.size:
        raise ParameterError(f"channels ({ch.size}) and times ({t.size}) differ in length")
    off = _check_offsets(offsets, ch.size)
    n_trials = off.size - 1
    out = np.full((n_trials, n), np.inf)
    if ch.size == 0:
        return FirstSpikes(out, 0)
    trial = np.repeat(np.arange(n_trials, dtype=np.int64), np.diff(off))
    valid = (ch >= 0) & (ch < n) & np.isfinite(t) & (t >= 0)
    n_valid = int(np.count_nonzero(valid))
    if n_valid:
        flat = trial[valid] * n + ch[valid]
        # ufunc.at has a fast path for simple dtypes since numpy 1.25.
        np.minimum.at(out.reshape(-1), flat, t[valid].astype(np.float64, copy=False))
        if scale != 1.0:
            out *= scale  # min commutes with a positive factor; inf stays inf
    return FirstSpikes(out, ch.size - n_valid)


def inputs_to_events(t_in: ArrayLike, *, time_scale: float = 1.0) -> CsrEvents:
    """One event per finite input time: the inverse of :func:`first_spike_inputs`.

    Within a trial the events are ordered by time, ties by channel, as a sensor
    would emit them.

    Args:
        t_in: (T, n_inputs) float input spike times, ``+inf`` (or NaN) for no spike;
            finite times must be >= 0.
        time_scale: positive finite factor applied to the times (e.g. ``6.0`` to
            turn model units of tau_s = 6 us into microseconds).

    Returns:
        ``CsrEvents(offsets (T+1,) int64, channels (E,) int64, times (E,) float64)``.

    Raises:
        ParameterError: ``t_in`` is not 2-D float, or holds a finite negative time
            (which :func:`first_spike_inputs` would drop).
    """
    scale = _check_scale(time_scale)
    t = _float_array("t_in", t_in, 2).astype(np.float64, copy=False)
    finite = np.isfinite(t)
    if np.any(t[finite] < 0):
        raise ParameterError("t_in must not hold negative finite times")
    rows, cols = np.nonzero(finite)
    times = t[rows, cols]
    order = np.lexsort((cols, times, rows))
    offsets = np.zeros(t.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(finite, axis=1), out=offsets[1:])
    return CsrEvents(offsets, cols[order].astype(np.int64), times[order] * scale)


def padded_to_csr(channels: ArrayLike, times: ArrayLike) -> CsrEvents:
    """Padded NIR layout to CSR.

    A slot holds an event iff its channel is >= 0 and its time is not ``+inf``;
    all other slots are padding. Events keep their order within a row.

    Args:
        channels: (T, N) int channels, ``-1`` in empty slots.
        times: (T, N) float times, ``+inf`` in empty slots.

    Returns:
        ``CsrEvents(offsets (T+1,) int64, channels (E,) int64, times (E,))`` with
        the dtype of ``times`` kept.

    Raises:
        ParameterError: shapes differ or are not 2-D, or wrong dtypes.
    """
    ch = _int_array("channels", channels, 2)
    t = _float_array("times", times, 2)
    if ch.shape != t.shape:
        raise ParameterError(f"channels {ch.shape} and times {t.shape} differ in shape")
    present = (ch >= 0) & (t != np.inf)
    offsets = np.zeros(ch.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(present, axis=1), out=offsets[1:])
    # Boolean indexing walks row-major, which keeps the per-row event order.
    return CsrEvents(offsets, ch[present], t[present])


def csr_to_padded(
    offsets: ArrayLike,
    channels: ArrayLike,
    times: ArrayLike,
    *,
    n_slots: int | None = None,
) -> PaddedEvents:
    """CSR to the padded NIR layout (the inverse of :func:`padded_to_csr`).

    Args:
        offsets: (T+1,) int CSR offsets.
        channels: (E,) int channels, >= 0.
        times: (E,) float times.
        n_slots: row width ``N``; default the longest row. Must be >= the longest row.

    Returns:
        ``PaddedEvents(channels (T, N) int64, times (T, N))``, events left-aligned,
        ``-1`` / ``+inf`` in the empty slots; the dtype of ``times`` is kept.

    Raises:
        ParameterError: bad offsets, shapes or dtypes, a negative channel, or
            ``n_slots`` too small.
    """
    ch = _int_array("channels", channels, 1)
    t = _float_array("times", times, 1)
    if t.size != ch.size:
        raise ParameterError(f"channels ({ch.size}) and times ({t.size}) differ in length")
    off = _check_offsets(offsets, ch.size)
    if ch.size and ch.min() < 0:
        raise ParameterError("channels must be >= 0 (-1 marks padding in the padded layout)")
    counts = np.diff(off)
    longest = int(counts.max()) if counts.size else 0
    if n_slots is None:
        width = longest
    elif isinstance(n_slots, bool) or not isinstance(n_slots, int | np.integer):
        raise ParameterError(f"n_slots must be an int, got {n_slots!r}")
    else:
        width = int(n_slots)
    if width < longest:
        raise ParameterError(f"n_slots={n_slots} is less than the longest row ({longest})")
    n_trials = off.size - 1
    out_ch = np.full((n_trials, width), -1, dtype=np.int64)
    out_t = np.full((n_trials, width), np.inf, dtype=t.dtype)
    row = np.repeat(np.arange(n_trials, dtype=np.int64), counts)
    col = np.arange(ch.size, dtype=np.int64) - off[row]
    out_ch[row, col] = ch
    out_t[row, col] = t
    return PaddedEvents(out_ch, out_t)
