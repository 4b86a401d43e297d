"""Window geometry: which windows of a continuous stream a time belongs to.

Window ``k >= 0`` is the half-open interval ``[s_k, s_k + length)`` with
``s_k = origin + k * period``, both computed in float64 exactly as written
(this defines which window an event on a boundary belongs to: an event at
``s_k`` is in window ``k``; an event at ``s_k + length`` is not). Windows
overlap when ``period < length`` and leave gaps when ``period > length``.
Times are model time in units of tau_s (the caller converts microseconds).
Used by :class:`~delgrad.runtime.service._windowing.TrialWindower`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError

__all__ = ["MAX_INDEX", "WindowSpec", "WindowedTrials"]

# More overlapping windows than this is a configuration mistake (memory grows with it).
_MAX_OVERLAP = 4096
#: Window indices must stay exactly representable in float64.
MAX_INDEX = float(2**52)


class WindowedTrials(NamedTuple):
    """Trials completed by a push or flush.

    Attributes:
        window_ids: (K,) int64 window indices ``k``, increasing.
        t_in: (K, n_inputs) float64 first spike time of each channel relative to
            the window start (model units), ``+inf`` for a silent channel.
        starts: (K,) float64 window start times ``s_k`` (model units).
    """

    window_ids: NDArray[np.int64]
    t_in: NDArray[np.float64]
    starts: NDArray[np.float64]


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry (model units of tau_s).

    Attributes:
        length: window length (> 0).
        period: distance between window starts (> 0); ``period < length``
            overlaps windows, ``period > length`` leaves gaps.
        origin: start of window 0 (finite).
    """

    length: float
    period: float
    origin: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "length", _positive("length", self.length))
        object.__setattr__(self, "period", _positive("period", self.period))
        origin = self.origin
        if isinstance(origin, bool) or not isinstance(
            origin, int | float | np.integer | np.floating
        ):
            raise ParameterError(f"origin must be a number, got {origin!r}")
        if not math.isfinite(origin):
            raise ParameterError(f"origin must be finite, got {origin!r}")
        object.__setattr__(self, "origin", float(origin))
        if self.length / self.period > _MAX_OVERLAP:
            raise ParameterError(
                f"length/period = {self.length / self.period:.3g} exceeds {_MAX_OVERLAP} "
                "overlapping windows"
            )

    @property
    def max_open_windows(self) -> int:
        """Bound on simultaneously open windows: ``ceil(length/period) + 1``."""
        return math.ceil(self.length / self.period) + 1

    def start(self, k: ArrayLike) -> NDArray[np.float64]:
        """Start ``origin + k*period`` of windows ``k`` (float64, same shape)."""
        start = self.origin + np.asarray(k, dtype=np.int64) * self.period
        return cast("NDArray[np.float64]", start)

    def end(self, k: ArrayLike) -> NDArray[np.float64]:
        """End ``start(k) + length`` (exclusive) of windows ``k``."""
        return self.start(k) + self.length

    def _floor_index(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        return np.floor(np.clip(x, -MAX_INDEX, MAX_INDEX)).astype(np.int64)

    def last_started(self, t: ArrayLike) -> NDArray[np.int64]:
        """Largest ``k`` (possibly negative) with ``start(k) <= t``, for finite ``t``."""
        t = np.asarray(t, dtype=np.float64)
        k = self._floor_index((t - self.origin) / self.period)
        # The division may round across a boundary; fix up against the definition.
        k = k + (self.start(k + 1) <= t)
        return k - (self.start(k) > t)

    def first_unfinished(self, t: ArrayLike) -> NDArray[np.int64]:
        """Smallest ``k`` (possibly negative) with ``end(k) > t``, for finite ``t``."""
        t = np.asarray(t, dtype=np.float64)
        k = self._floor_index((t - self.origin - self.length) / self.period) + 1
        k = k - (self.end(k - 1) > t)
        return k + (self.end(k) <= t)
