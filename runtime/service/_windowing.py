"""Cutting a continuous spike-event stream into trials (windows).

Window ``k`` is ``[s_k, s_k + length)`` with ``s_k = origin + k * period``
(:class:`WindowSpec`, ``_window_spec``). Times are model time in units of
tau_s (the caller converts microseconds).

A window is *complete* once the watermark (the latest valid event time seen)
reaches its end, i.e. ``s_k + length <= watermark``; it is then emitted with the
first spike time of each channel relative to ``s_k``. :meth:`TrialWindower.flush`
also completes the windows that have started but not ended.

Bounds and policies:

* At most ``max_open_windows = ceil(length / period) + 1`` windows are open (the
  ``+1`` absorbs float rounding at boundaries); each holds ``n_inputs`` float64.
  Nothing else grows with the stream.
* A large gap between events closes the windows in between in O(1): empty
  windows are only counted, never materialised, unless ``emit_empty``; even then
  at most ``max_empty_run`` consecutive empty windows after an occupied one are
  emitted and the rest of the run is counted in ``empty_windows_skipped``.
* Events are processed in time order within a push (a batch out of order is
  sorted first, stably). Across pushes an older event still lands in its open
  windows; an event whose windows are all complete is dropped and counted in
  ``late_events``. Events in no window at all (before ``origin`` or in a gap)
  are counted in ``unwindowed_events``; events with a channel outside
  ``[0, n_inputs)`` or a non-finite (or absurdly large, beyond 2**51
  periods from ``origin``) time in ``ignored_events``. Ignored events do not
  advance the watermark; all others do (an event in a gap shows that time
  has passed).

For a time-ordered stream the output does not depend on how the stream is split
into :meth:`~TrialWindower.push` calls.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError
from delgrad.runtime._events import _float_array, _int_array
from delgrad.runtime.service._window_spec import MAX_INDEX, WindowedTrials, WindowSpec

__all__ = ["TrialWindower", "WindowSpec", "WindowedTrials"]


def _empty_result(n_inputs: int) -> WindowedTrials:
    return WindowedTrials(
        np.zeros(0, dtype=np.int64), np.zeros((0, n_inputs)), np.zeros(0, dtype=np.float64)
    )


class TrialWindower:
    """Cut a continuous event stream into fixed windows, one trial per window.

    Args:
        n_inputs: number of input channels (>= 1).
        length: window length, model units (> 0).
        period: distance between window starts, model units (> 0).
        origin: start of window 0, model units.
        emit_empty: also emit windows without any event (all ``+inf``).
        max_empty_run: with ``emit_empty``, at most this many consecutive empty
            windows after an occupied one (or the stream start) are emitted.
    """

    def __init__(
        self,
        n_inputs: int,
        *,
        length: float,
        period: float,
        origin: float = 0.0,
        emit_empty: bool = False,
        max_empty_run: int = 1000,
    ) -> None:
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int | np.integer):
            raise ParameterError(f"n_inputs must be an int, got {n_inputs!r}")
        if n_inputs < 1:
            raise ParameterError(f"n_inputs must be >= 1, got {n_inputs}")
        if isinstance(max_empty_run, bool) or not isinstance(max_empty_run, int | np.integer):
            raise ParameterError(f"max_empty_run must be an int, got {max_empty_run!r}")
        if max_empty_run < 0:
            raise ParameterError(f"max_empty_run must be >= 0, got {max_empty_run}")
        self.n_inputs = int(n_inputs)
        self.spec = WindowSpec(length, period, origin)
        self.emit_empty = bool(emit_empty)
        self.max_empty_run = int(max_empty_run)
        m = self.spec.max_open_windows
        # Open windows live in slot k % m; -1 marks a free slot. Only windows
        # holding at least one event occupy a slot.
        self._ring = np.full((m, self.n_inputs), np.inf)
        self._ring_k = np.full(m, -1, dtype=np.int64)
        self._next = 0  # first window not yet emitted
        self._watermark = -math.inf
        self._last_occupied = -1  # newest emitted window that held an event
        self._counts = dict.fromkeys(
            (
                "events_in",
                "ignored_events",
                "late_events",
                "unwindowed_events",
                "windows_out",
                "empty_windows",
                "empty_windows_skipped",
            ),
            0,
        )

    # ---------------------------------------------------------------- state

    @property
    def max_open_windows(self) -> int:
        """Bound on open windows (``ceil(length/period) + 1``)."""
        return self._ring_k.size

    @property
    def open_windows(self) -> int:
        """Open windows that hold at least one event."""
        return int(np.count_nonzero(self._ring_k >= 0))

    @property
    def watermark(self) -> float:
        """Latest valid event time seen (model units), ``-inf`` before any."""
        return self._watermark

    @property
    def next_window(self) -> int:
        """Index of the oldest window not yet emitted."""
        return self._next

    def counters(self) -> dict[str, int]:
        """Counters: events_in, ignored_events, late_events, unwindowed_events,
        windows_out, empty_windows (all closed empty windows, emitted or not),
        empty_windows_skipped (empty windows not emitted despite ``emit_empty``)."""
        return dict(self._counts)

    # ----------------------------------------------------------------- push

    def push(self, channels: ArrayLike, times: ArrayLike) -> WindowedTrials:
        """Add events; return the windows they complete.

        Args:
            channels: (E,) int input channel per event.
            times: (E,) float event times, model units; sorted first if not
                non-decreasing.

        Returns:
            The completed windows, in increasing window order.
        """
        ch = _int_array("channels", channels, 1)
        t = _float_array("times", times, 1).astype(np.float64, copy=False)
        if ch.size != t.size:
            raise ParameterError(f"channels ({ch.size}) and times ({t.size}) differ in length")
        spec = self.spec
        self._counts["events_in"] += ch.size
        with np.errstate(invalid="ignore", over="ignore"):
            valid = (
                (ch >= 0)
                & (ch < self.n_inputs)
                & np.isfinite(t)
                & (np.abs((t - spec.origin) / spec.period) < MAX_INDEX / 2)
            )
        n_valid = int(np.count_nonzero(valid))
        self._counts["ignored_events"] += ch.size - n_valid
        if n_valid == 0:
            return _empty_result(self.n_inputs)
        if n_valid != ch.size:
            ch, t = ch[valid], t[valid]
        if t.size > 1 and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            ch, t = ch[order], t[order]

        k_hi = spec.last_started(t)
        k_lo = np.maximum(spec.first_unfinished(t), 0)
        in_some = k_lo <= k_hi
        k_lo = np.maximum(k_lo, self._next)
        accepted = k_lo <= k_hi
        n_acc = int(np.count_nonzero(accepted))
        n_some = int(np.count_nonzero(in_some))
        self._counts["unwindowed_events"] += t.size - n_some
        self._counts["late_events"] += n_some - n_acc

        # One (event, window) pair per window an accepted event lies in.
        counts = np.where(accepted, k_hi - k_lo + 1, 0)
        ev = np.repeat(np.arange(t.size, dtype=np.int64), counts)
        first = np.cumsum(counts) - counts
        pk = k_lo[ev] + (np.arange(ev.size, dtype=np.int64) - first[ev])
        pc = ch[ev]
        prel = t[ev] - spec.start(pk)

        self._watermark = max(self._watermark, float(t[-1]))
        k_close = max(int(spec.first_unfinished(self._watermark)), self._next)
        return self._close(k_close, pk, pc, prel)

    def flush(self) -> WindowedTrials:
        """Complete every started window (``start <= watermark``) now and return them."""
        if not math.isfinite(self._watermark):
            return _empty_result(self.n_inputs)
        k_end = max(int(self.spec.last_started(self._watermark)) + 1, self._next)
        none_i = np.zeros(0, dtype=np.int64)
        return self._close(k_end, none_i, none_i, np.zeros(0))

    # ------------------------------------------------------------- internal

    def _close(
        self,
        k_close: int,
        pk: NDArray[np.int64],
        pc: NDArray[np.int64],
        prel: NDArray[np.float64],
    ) -> WindowedTrials:
        """Emit windows ``[next, k_close)``; store pairs of later windows in the ring."""
        n = self.n_inputs
        m = self._ring_k.size
        closing_slots = np.flatnonzero((self._ring_k >= 0) & (self._ring_k < k_close))
        closing_pairs = pk < k_close
        occupied = np.union1d(self._ring_k[closing_slots], pk[closing_pairs])
        out = np.full((occupied.size, n), np.inf)
        if closing_slots.size:
            rows = np.searchsorted(occupied, self._ring_k[closing_slots])
            out[rows] = self._ring[closing_slots]
            self._ring[closing_slots] = np.inf
            self._ring_k[closing_slots] = -1
        if np.any(closing_pairs):
            rows = np.searchsorted(occupied, pk[closing_pairs])
            np.minimum.at(out.reshape(-1), rows * n + pc[closing_pairs], prel[closing_pairs])
        keep = ~closing_pairs
        if np.any(keep):
            slots = pk[keep] % m
            self._ring_k[slots] = pk[keep]
            np.minimum.at(self._ring.reshape(-1), slots * n + pc[keep], prel[keep])

        n_empty = k_close - self._next - occupied.size
        self._counts["empty_windows"] += n_empty
        ids, t_in = occupied, out
        if self.emit_empty and n_empty:
            empties = self._emitted_empties(occupied, k_close)
            self._counts["empty_windows_skipped"] += n_empty - empties.size
            if empties.size:
                ids = np.concatenate([occupied, empties])
                order = np.argsort(ids, kind="stable")
                ids = ids[order]
                t_in = np.concatenate([out, np.full((empties.size, n), np.inf)])[order]
        if occupied.size:
            self._last_occupied = int(occupied[-1])
        self._next = k_close
        self._counts["windows_out"] += ids.size
        return WindowedTrials(ids.astype(np.int64, copy=False), t_in, self.spec.start(ids))

    def _emitted_empties(self, occupied: NDArray[np.int64], k_close: int) -> NDArray[np.int64]:
        """Empty windows in ``[next, k_close)`` at most ``max_empty_run`` after an occupied one."""
        prev = np.concatenate([[self._last_occupied], occupied]).astype(np.int64)
        nxt = np.concatenate([occupied, [k_close]]).astype(np.int64)
        lo = np.maximum(prev + 1, self._next)
        hi = np.minimum(nxt - 1, prev + self.max_empty_run)
        counts = np.maximum(hi - lo + 1, 0)
        run = np.repeat(np.arange(counts.size), counts)
        first = np.cumsum(counts) - counts
        empties: NDArray[np.int64] = lo[run] + (np.arange(run.size, dtype=np.int64) - first[run])
        return empties
