"""Replay buffer: a bounded sample of past labelled trials to rehearse (issue 18).

A device that sees each sample once forgets what it does not see again. The buffer
keeps input spike times and labels of past labelled trials, at most ``max_mb`` MiB
(preallocated: ``capacity`` trials of ``n_inputs`` float64 times and one int64 label),
and hands back a random sample to learn from beside the new trials. Replayed trials
are observed again on the chip before the step (``learning.refresh``), so they are
learned at the spike times of today's parameters and today's chip.

Policies when full:

* ``"reservoir"``: every labelled trial seen so far has the same chance,
  ``capacity / seen``, of being in the buffer (Vitter's algorithm R);
* ``"balanced"``: each class has ``capacity // n_classes`` slots, filled the same way
  among that class's trials, so a rare or late class is not crowded out.

Thread-safe (the event loop adds and samples, the worker thread saves checkpoints).
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

__all__ = ["ReplayBuffer", "ReplayPolicy"]

ReplayPolicy = Literal["reservoir", "balanced"]
_NO_SPIKE = -1.0  # how a missing input spike is kept in a checkpoint (finite arrays only)


def replay_capacity(max_mb: float, n_inputs: int) -> int:
    """Trials that fit in ``max_mb`` MiB for ``n_inputs`` inputs (times and a label)."""
    return int(max_mb * (1 << 20) // (8 * n_inputs + 8))


class ReplayBuffer:
    """See the module doc.

    Args:
        max_mb: the bound (MiB).
        n_inputs: input channels per trial.
        n_classes: classes (labels 0 .. n_classes - 1).
        policy: ``"reservoir"`` or ``"balanced"``.
        seed: the sampling stream.
    """

    def __init__(
        self,
        max_mb: float,
        n_inputs: int,
        n_classes: int,
        *,
        policy: ReplayPolicy = "reservoir",
        seed: int = 0,
    ) -> None:
        self.capacity = replay_capacity(max_mb, n_inputs)
        if self.capacity < 1:
            raise ValueError(f"{max_mb} MiB hold no trial of {n_inputs} inputs")
        self.n_inputs = int(n_inputs)
        self.n_classes = int(n_classes)
        self.policy: ReplayPolicy = policy
        self._times = np.empty((self.capacity, self.n_inputs))
        self._labels = np.full(self.capacity, -1, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        if policy == "balanced":
            quota = self.capacity // self.n_classes
            if quota < 1:
                raise ValueError(f"{self.capacity} trials cannot hold one per class")
            self._slots = [np.arange(c * quota, (c + 1) * quota) for c in range(self.n_classes)]
        else:
            self._slots = [np.arange(self.capacity)]
        self._seen = np.zeros(len(self._slots), dtype=np.int64)  # trials offered per part

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer (its bound, preallocated)."""
        return int(self._times.nbytes + self._labels.nbytes)

    @property
    def size(self) -> int:
        """Trials held."""
        return int(np.count_nonzero(self._labels >= 0))

    def add(self, times: np.ndarray, labels: np.ndarray) -> None:
        """Offer labelled trials: ``times`` (n, n_inputs) input spike times (inf: none),
        ``labels`` (n,)."""
        with self._lock:
            for row, label in zip(times, labels, strict=True):
                part = int(label) if self.policy == "balanced" else 0
                if not 0 <= part < len(self._slots):
                    continue
                slots = self._slots[part]
                seen = int(self._seen[part])
                self._seen[part] += 1
                if seen < len(slots):
                    at = slots[seen]
                else:
                    j = int(self._rng.integers(0, seen + 1))
                    if j >= len(slots):
                        continue
                    at = slots[j]
                self._times[at] = row
                self._labels[at] = label

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` trials drawn uniformly (with replacement) from those held: (times
        (k, n_inputs), labels (k,)); fewer (none) while the buffer is empty."""
        with self._lock:
            held = np.flatnonzero(self._labels >= 0)
            if not len(held) or k <= 0:
                return np.empty((0, self.n_inputs)), np.empty(0, dtype=np.int64)
            pick = held[self._rng.integers(0, len(held), size=k)]
            return self._times[pick].copy(), self._labels[pick].copy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The buffer for a checkpoint (finite arrays: a missing spike is -1)."""
        with self._lock:
            held = np.flatnonzero(self._labels >= 0)
            times = self._times[held]
            return {
                "replay.times": np.where(np.isfinite(times), times, _NO_SPIKE),
                "replay.labels": self._labels[held].copy(),
                "replay.slots": held.astype(np.int64),
                "replay.seen": self._seen.copy(),
            }

    def restore(self, arrays: dict[str, np.ndarray]) -> bool:
        """Take a checkpoint's buffer back if it fits this one; returns whether."""
        try:
            times = np.asarray(arrays["replay.times"], dtype=np.float64)
            labels = np.asarray(arrays["replay.labels"], dtype=np.int64)
            slots = np.asarray(arrays["replay.slots"], dtype=np.int64)
            seen = np.asarray(arrays["replay.seen"], dtype=np.int64)
        except KeyError:
            return False
        fits = (
            times.ndim == 2
            and times.shape[1] == self.n_inputs
            and len(labels) == len(slots) == len(times)
            and seen.shape == self._seen.shape
            and (not len(slots) or (slots.min() >= 0 and slots.max() < self.capacity))
        )
        if not fits:
            return False
        with self._lock:
            self._labels[:] = -1
            self._times[slots] = np.where(times < 0, np.inf, times)
            self._labels[slots] = labels
            self._seen[:] = seen
        return True
