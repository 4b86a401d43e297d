"""Degradation detector: has the device got worse than it was? Pure and synchronous.

Labelled trials arrive scored (correct or not, silent or not). They are summed in
blocks of ``block`` trials. The *recent* window is the last ``window`` trials; the
*reference* is the ``reference`` trials before it, moving on while the device is
healthy and frozen while it is degraded (recovery is judged against the level before
the fall). The detector fires when, with both windows full,

* the recent accuracy is more than ``drop`` below the reference accuracy, or
* the recent silent-label rate (trials whose output never spiked) is more than
  ``silent_rise`` above the reference rate,

and clears when the recent accuracy is back within ``drop / 2`` of the reference and
the silent rate within ``silent_rise / 2`` (hysteresis: no flapping at the edge).

Why these defaults: with a window of 2,000 trials the binomial spread of an accuracy
near 93 % is 0.6 points, so a 7-point drop is eleven spreads; a device that learns
also moves its accuracy by itself (a few points over thousands of trials, measured
with ``delgrad bench drift``: with a 1,000-trial window and a 5-point drop the
learning arm raised alarms before any drift). A stationary stream judged every 100
trials raises no alarm in 1 M trials (tested), and a fall of 15 points is seen
within about 1,000 trials of it, a fall of 10 points within 2,000 (one window).

Its history is kept in checkpoints (:meth:`DegradationDetector.state_arrays`), so a
restart goes on judging against the level before it, an episode included.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["DegradationDetector", "Judgement"]


@dataclass(frozen=True)
class Judgement:
    """The detector's view after an update.

    Attributes:
        degraded: whether the alarm holds.
        changed: whether it fired or cleared with this update.
        accuracy: recent accuracy (0 .. 1), or None before the window is full.
        reference: reference accuracy, or None before it is full.
        silent: recent silent-label rate, or None.
        silent_reference: reference silent-label rate, or None.
    """

    degraded: bool
    changed: bool
    accuracy: float | None
    reference: float | None
    silent: float | None
    silent_reference: float | None

    def text(self) -> str:
        """One line for the log, the status and the alarm."""
        if self.accuracy is None or self.reference is None:
            return "not judged yet"
        line = (
            f"sliding accuracy {100 * self.accuracy:.1f} % against "
            f"{100 * self.reference:.1f} % before"
        )
        if self.silent is not None and self.silent_reference is not None:
            line += (
                f", silent labels {100 * self.silent:.1f} % against "
                f"{100 * self.silent_reference:.1f} %"
            )
        return line


class DegradationDetector:
    """See the module doc.

    Args:
        window: trials in the recent window (a multiple of ``block``).
        reference: trials in the reference window (a multiple of ``block``).
        drop: accuracy drop that fires (fraction, e.g. 0.05 = 5 points).
        silent_rise: rise of the silent-label rate that fires (fraction).
        block: trials per block (the detector judges once per full block).
    """

    def __init__(
        self,
        *,
        window: int = 2000,
        reference: int = 10_000,
        drop: float = 0.07,
        silent_rise: float = 0.07,
        block: int = 100,
    ) -> None:
        if block < 1 or window < block or reference < block:
            raise ValueError("need block >= 1 and window, reference >= block")
        self.drop = float(drop)
        self.silent_rise = float(silent_rise)
        self.block = int(block)
        self._recent: deque[tuple[int, int]] = deque(maxlen=window // block)
        self._reference: deque[tuple[int, int]] = deque(maxlen=reference // block)
        self._open = [0, 0, 0]  # trials, correct, silent of the block being filled
        self.degraded = False
        self.last = Judgement(False, False, None, None, None, None)
        # the event loop adds, the worker thread saves checkpoints
        self._lock = threading.Lock()

    def add(self, correct: np.ndarray, silent: np.ndarray) -> list[Judgement]:
        """Account scored labelled trials: ``correct`` and ``silent`` (n,) booleans.

        Returns:
            Each change among them, in order (the alarm fired or cleared; ``changed``
            true), judged at the block where it happened: a batch may hold several
            blocks, even a whole short episode. :attr:`last` is the view after them.
        """
        with self._lock:
            return self._add(np.asarray(correct, dtype=bool), np.asarray(silent, dtype=bool))

    def _add(self, correct: np.ndarray, silent: np.ndarray) -> list[Judgement]:
        changes = []
        at = 0
        while at < len(correct):
            take = min(self.block - self._open[0], len(correct) - at)
            self._open[0] += take
            self._open[1] += int(correct[at : at + take].sum())
            self._open[2] += int(silent[at : at + take].sum())
            at += take
            if self._open[0] == self.block and (change := self._close_block()) is not None:
                changes.append(change)
        self.last = self._judge(False)
        return changes

    def _shape(self) -> np.ndarray:
        return np.array(
            [self.block, self._recent.maxlen or 0, self._reference.maxlen or 0], dtype=np.int64
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The detector's history for a checkpoint (``degradation.*`` int64 arrays)."""
        with self._lock:
            return {
                "degradation.shape": self._shape(),
                "degradation.recent": np.array(self._recent, dtype=np.int64).reshape(-1, 2),
                "degradation.reference": np.array(self._reference, dtype=np.int64).reshape(-1, 2),
                "degradation.open": np.array([*self._open, self.degraded], dtype=np.int64),
            }

    def restore(self, arrays: dict[str, np.ndarray]) -> bool:
        """Take a checkpoint's history back if it was kept with the same block and
        windows; returns whether (else the detector starts afresh)."""
        try:
            shape = np.asarray(arrays["degradation.shape"], dtype=np.int64)
            recent = np.asarray(arrays["degradation.recent"], dtype=np.int64)
            reference = np.asarray(arrays["degradation.reference"], dtype=np.int64)
            state = np.asarray(arrays["degradation.open"], dtype=np.int64)
        except KeyError:
            return False
        fits = (
            np.array_equal(shape, self._shape())
            and recent.ndim == reference.ndim == 2
            and recent.shape[1] == reference.shape[1] == 2
            and len(recent) <= shape[1]
            and len(reference) <= shape[2]
            and state.shape == (4,)
            and 0 <= state[0] < self.block
            and state[1] <= state[0]
            and state[2] <= state[0]
            and bool(np.all(recent >= 0) and np.all(reference >= 0) and np.all(state >= 0))
            and bool(np.all(recent <= self.block) and np.all(reference <= self.block))
        )
        if not fits:
            return False
        with self._lock:
            self._recent.clear()
            self._recent.extend((int(a), int(b)) for a, b in recent)
            self._reference.clear()
            self._reference.extend((int(a), int(b)) for a, b in reference)
            self._open = [int(v) for v in state[:3]]
            self.degraded = bool(state[3])
            self.last = self._judge(False)
        return True

    def _close_block(self) -> Judgement | None:
        _, right, quiet = self._open
        self._open = [0, 0, 0]
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            if not self.degraded:  # frozen while degraded
                self._reference.append(oldest)
        self._recent.append((right, quiet))
        judged = self._judge(False)
        if judged.accuracy is None or judged.reference is None:
            return None
        assert judged.silent is not None and judged.silent_reference is not None
        fallen = judged.accuracy < judged.reference - self.drop
        silenced = judged.silent > judged.silent_reference + self.silent_rise
        back = judged.accuracy >= judged.reference - self.drop / 2
        quiet_again = judged.silent <= judged.silent_reference + self.silent_rise / 2
        flips = (back and quiet_again) if self.degraded else (fallen or silenced)
        if not flips:
            return None
        self.degraded = not self.degraded
        return self._judge(True)

    def _rates(self, blocks: deque[tuple[int, int]]) -> tuple[float | None, float | None]:
        if len(blocks) < (blocks.maxlen or 0):
            return None, None
        n = len(blocks) * self.block
        return sum(b[0] for b in blocks) / n, sum(b[1] for b in blocks) / n

    def _judge(self, changed: bool) -> Judgement:
        accuracy, silent = self._rates(self._recent)
        reference, silent_reference = self._rates(self._reference)
        return Judgement(self.degraded, changed, accuracy, reference, silent, silent_reference)
