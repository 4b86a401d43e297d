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
within about 1,000 trials of it.
"""

from __future__ import annotations

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

    def add(self, correct: np.ndarray, silent: np.ndarray) -> Judgement:
        """Account scored labelled trials: ``correct`` and ``silent`` (n,) booleans."""
        correct = np.asarray(correct, dtype=bool)
        silent = np.asarray(silent, dtype=bool)
        changed = False
        at = 0
        while at < len(correct):
            take = min(self.block - self._open[0], len(correct) - at)
            self._open[0] += take
            self._open[1] += int(correct[at : at + take].sum())
            self._open[2] += int(silent[at : at + take].sum())
            at += take
            if self._open[0] == self.block:
                changed |= self._close_block()
        self.last = self._judge(changed)
        return self.last

    def _close_block(self) -> bool:
        _, right, quiet = self._open
        self._open = [0, 0, 0]
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            if not self.degraded:  # frozen while degraded
                self._reference.append(oldest)
        self._recent.append((right, quiet))
        judged = self._judge(False)
        if judged.accuracy is None or judged.reference is None:
            return False
        assert judged.silent is not None and judged.silent_reference is not None
        fallen = judged.accuracy < judged.reference - self.drop
        silenced = judged.silent > judged.silent_reference + self.silent_rise
        if not self.degraded and (fallen or silenced):
            self.degraded = True
            return True
        back = judged.accuracy >= judged.reference - self.drop / 2
        quiet_again = judged.silent <= judged.silent_reference + self.silent_rise / 2
        if self.degraded and back and quiet_again:
            self.degraded = False
            return True
        return False

    def _rates(self, blocks: deque[tuple[int, int]]) -> tuple[float | None, float | None]:
        if len(blocks) < (blocks.maxlen or 0):
            return None, None
        n = len(blocks) * self.block
        return sum(b[0] for b in blocks) / n, sum(b[1] for b in blocks) / n

    def _judge(self, changed: bool) -> Judgement:
        accuracy, silent = self._rates(self._recent)
        reference, silent_reference = self._rates(self._reference)
        return Judgement(self.degraded, changed, accuracy, reference, silent, silent_reference)
