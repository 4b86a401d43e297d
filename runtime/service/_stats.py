"""Bounded statistics for live metrics.

Every structure here has a fixed memory bound set at construction; older data
is overwritten or aged out, never accumulated. Statistics of nothing (an empty
buffer, no labelled trial yet, no sample in the window) are ``None``, never NaN,
so metrics serialise cleanly (``None`` -> JSON ``null``).

Times are passed in by the caller (``now_s``, seconds on a monotonic clock).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from delgrad.errors import ParameterError

__all__ = ["Counters", "LatencyTracker", "RateMeter", "RingBuffer", "SlidingAccuracy"]


def _capacity(value: object, name: str = "capacity") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


class RingBuffer:
    """The last ``capacity`` values of a stream (older values are overwritten).

    Args:
        capacity: number of values kept (>= 1); memory is ``capacity`` items.
        dtype: numpy dtype of the values.
    """

    def __init__(self, capacity: int, dtype: DTypeLike = float) -> None:
        self.capacity = _capacity(capacity)
        self._buf = np.zeros(self.capacity, dtype=dtype)
        self._head = 0  # next write position
        self._size = 0
        self.total = 0  # values ever added

    def __len__(self) -> int:
        return self._size

    def extend(self, values: ArrayLike) -> None:
        """Append values ((K,) or scalar); only the last ``capacity`` are kept."""
        v = np.asarray(values, dtype=self._buf.dtype).reshape(-1)
        k = v.size
        self.total += k
        if k >= self.capacity:
            self._buf[:] = v[k - self.capacity :]
            self._head = 0
            self._size = self.capacity
            return
        first = min(k, self.capacity - self._head)
        self._buf[self._head : self._head + first] = v[:first]
        self._buf[: k - first] = v[first:]
        self._head = (self._head + k) % self.capacity
        self._size = min(self._size + k, self.capacity)

    def values(self) -> NDArray[Any]:
        """The kept values, oldest first: a (len,) copy."""
        if self._size < self.capacity:
            return self._buf[: self._size].copy()
        return np.concatenate([self._buf[self._head :], self._buf[: self._head]])

    def mean(self) -> float | None:
        """Mean of the kept values, ``None`` when empty."""
        if self._size == 0:
            return None
        return float(np.mean(self._buf[: self._size]))

    def quantiles(self, qs: ArrayLike) -> NDArray[np.float64] | None:
        """Quantiles (linear interpolation) at ``qs`` in [0, 1]; ``None`` when empty.

        Returns:
            Array of the shape of ``qs``.
        """
        q = np.asarray(qs, dtype=np.float64)
        if not np.all((q >= 0) & (q <= 1)):
            raise ParameterError("quantile levels must lie in [0, 1]")
        if self._size == 0:
            return None
        return np.quantile(self._buf[: self._size], q)

    def clear(self) -> None:
        """Forget the kept values (``total`` stays)."""
        self._head = 0
        self._size = 0


class SlidingAccuracy:
    """Prequential accuracy and mean loss over the last ``capacity`` labelled trials.

    Args:
        capacity: number of trials in the window (>= 1).
    """

    def __init__(self, capacity: int) -> None:
        self._correct = RingBuffer(capacity, dtype=np.bool_)
        self._loss = RingBuffer(capacity, dtype=np.float64)
        self._label = RingBuffer(capacity, dtype=np.int64)  # -1: not given
        self.correct_total = 0  # correct trials ever added (with ``total``: any span's accuracy)

    @property
    def capacity(self) -> int:
        """Number of trials in the window."""
        return self._correct.capacity

    def add(self, correct: ArrayLike, loss: ArrayLike, labels: ArrayLike | None = None) -> None:
        """Add ``K`` trials: ``correct (K,)`` bool, ``loss (K,)`` float and, for the
        accuracy per class, their ``labels (K,)`` int."""
        c = np.asarray(correct).reshape(-1)
        lo = np.asarray(loss, dtype=np.float64).reshape(-1)
        lab = np.full(c.size, -1) if labels is None else np.asarray(labels).reshape(-1)
        if c.dtype != np.bool_:
            raise ParameterError(f"correct must be bool, got {c.dtype}")
        if c.size != lo.size or c.size != lab.size:
            raise ParameterError(
                f"correct ({c.size}), loss ({lo.size}) and labels ({lab.size}) differ in length"
            )
        self._correct.extend(c)
        self.correct_total += int(c.sum())
        self._loss.extend(lo)
        self._label.extend(lab.astype(np.int64, copy=False))

    def per_class(self, n_classes: int) -> list[float | None]:
        """Fraction correct in the window among the trials of each class
        ``0 .. n_classes - 1`` (``None`` for a class with no trial in the window)."""
        labels = self._label.values()
        correct = self._correct.values()
        out: list[float | None] = []
        for k in range(n_classes):
            mine = correct[labels == k]
            out.append(float(mine.mean()) if mine.size else None)
        return out

    @property
    def count(self) -> int:
        """Trials in the window (<= capacity)."""
        return len(self._correct)

    @property
    def total(self) -> int:
        """Trials ever added."""
        return self._correct.total

    @property
    def accuracy(self) -> float | None:
        """Fraction correct in the window, ``None`` when empty."""
        return self._correct.mean()

    @property
    def loss(self) -> float | None:
        """Mean of the finite losses in the window, ``None`` if there are none.

        A non-finite loss (e.g. no output spike) would make the mean useless, so
        it counts for accuracy but not here.
        """
        v = self._loss.values()
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else None


class LatencyTracker:
    """Percentiles of the last ``capacity`` end-to-end latencies.

    Args:
        capacity: number of latencies kept (>= 1).
    """

    def __init__(self, capacity: int) -> None:
        self._buf = RingBuffer(capacity, dtype=np.float64)
        self.invalid = 0  # non-finite latencies dropped

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, latencies_s: ArrayLike) -> None:
        """Add latencies in seconds ((K,) or scalar); non-finite ones are dropped
        and counted in ``invalid``. Negative values are kept (they reveal clock skew)."""
        v = np.asarray(latencies_s, dtype=np.float64).reshape(-1)
        ok = np.isfinite(v)
        self.invalid += int(v.size - np.count_nonzero(ok))
        self._buf.extend(v[ok])

    def percentiles(self) -> dict[str, float | None]:
        """``{"p50_ms", "p90_ms", "p99_ms", "max_ms"}`` in milliseconds, ``None`` when empty."""
        q = self._buf.quantiles([0.5, 0.9, 0.99, 1.0])
        keys = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
        if q is None:
            return dict.fromkeys(keys)
        return {k: float(x) * 1e3 for k, x in zip(keys, q, strict=True)}


class RateMeter:
    """Events per second over a sliding time window.

    Counts are summed into ``n_buckets`` buckets of ``window_s / n_buckets``
    seconds each, by the time of the sample that reported them; buckets older
    than the window are dropped, so memory is ``n_buckets`` entries.

    Args:
        window_s: window length in seconds (> 0).
        n_buckets: resolution of the window (>= 1).
    """

    def __init__(self, window_s: float, *, n_buckets: int = 10) -> None:
        self.window_s = _positive("window_s", window_s)
        self.n_buckets = _capacity(n_buckets, "n_buckets")
        self._bucket_s = self.window_s / self.n_buckets
        self._buckets: deque[list[int]] = deque(maxlen=self.n_buckets)  # [index, count]
        self._now = -math.inf
        self._t_first = math.inf

    def _clock(self, now_s: float) -> float:
        now = float(now_s)
        if not math.isfinite(now):
            raise ParameterError(f"now_s must be finite, got {now_s!r}")
        self._now = max(self._now, now)  # a clock going back is held at its latest value
        return self._now

    def _prune(self, index: int) -> None:
        while self._buckets and self._buckets[0][0] <= index - self.n_buckets:
            self._buckets.popleft()

    def add(self, now_s: float, count: int = 1) -> None:
        """Record ``count`` (>= 0) events reported at ``now_s``."""
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ParameterError(f"count must be an int >= 0, got {count!r}")
        now = self._clock(now_s)
        self._t_first = min(self._t_first, now)
        index = math.floor(now / self._bucket_s)
        if self._buckets and self._buckets[-1][0] == index:
            self._buckets[-1][1] += int(count)
        else:
            self._buckets.append([index, int(count)])
        self._prune(index)

    def rate(self, now_s: float) -> float | None:
        """Events per second over the window ending at ``now_s``.

        The window is the ``n_buckets`` buckets up to the current one, cut at the
        first sample; ``None`` before any sample or when it spans no time yet.
        """
        now = self._clock(now_s)
        index = math.floor(now / self._bucket_s)
        self._prune(index)
        start = max((index - self.n_buckets + 1) * self._bucket_s, self._t_first)
        span = now - start
        if not math.isfinite(span) or span <= 0:
            return None
        return sum(c for _, c in self._buckets) / span


class Counters:
    """Named, monotonically increasing integer counters.

    Args:
        max_names: bound on distinct names (>= 1); exceeding it raises, since
            names are meant to be a fixed vocabulary, not data.
    """

    def __init__(self, *, max_names: int = 1024) -> None:
        self.max_names = _capacity(max_names, "max_names")
        self._c: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, name: str) -> int:
        return self._c.get(name, 0)

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` (>= 0) to counter ``name`` (created at 0)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ParameterError(f"counter increment must be an int >= 0, got {n!r}")
        if name not in self._c:
            if not isinstance(name, str):
                raise ParameterError(f"counter name must be a str, got {name!r}")
            if len(self._c) >= self.max_names:
                raise ParameterError(f"more than {self.max_names} counter names")
            self._c[name] = 0
        self._c[name] += int(n)

    def merge(self, prefix: str, counts: Mapping[str, int]) -> None:
        """Take in a component's cumulative counters as ``prefix + name``.

        ``counts`` are totals (as from ``TrialWindower.counters()``), so merging
        the same snapshot twice changes nothing: each counter becomes
        ``max(current, counts[name])``, which keeps it monotonic even if the
        component was recreated and restarted from zero. Use :meth:`inc` for deltas.
        """
        for name, n in counts.items():
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
                raise ParameterError(f"counter {name!r} must be an int >= 0, got {n!r}")
            key = prefix + name
            self.inc(key, max(0, int(n) - self[key]))

    def as_dict(self) -> dict[str, int]:
        """A copy of all counters, sorted by name."""
        return dict(sorted(self._c.items()))
