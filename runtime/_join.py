"""Joining predicted trials with their labels.

Labels may arrive before or after their trial, or never. :class:`LabelJoin`
keeps both sides waiting in bounded, insertion-ordered tables and pairs them by
trial id.

Bounds and policies (``capacity`` = C):

* at most C waiting trials and C waiting labels; adding to a full side evicts
  its oldest entry (a trial evicted counts as ``missing_labels``, a label as
  ``orphan_labels``);
* :meth:`LabelJoin.expire` drops entries older than ``max_age_s`` with the same
  counts;
* the ids of the last C trials that went missing and of the last C trials that
  got their label are remembered, to tell a late label (``late_labels``) from an
  orphan and a repeated label or trial from a new one (``duplicate_labels``,
  ``duplicate_trials``). Older ids are forgotten: a label for a trial missing
  longer ago waits and ends as an orphan.

Every trial added ends in exactly one of joined / missing_labels /
duplicate_trials / waiting, and every label in exactly one of joined /
orphan_labels / late_labels / duplicate_labels / waiting::

    trials_in == joined + missing_labels + duplicate_trials + waiting_trials
    labels_in == joined + orphan_labels + late_labels + duplicate_labels + waiting_labels

Time ``now_s`` (seconds, any monotonic clock) is passed in by the caller; a
value below the latest seen is treated as the latest, so ages never go
negative and insertion order is age order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from delgrad.runtime._errors import ParameterError

__all__ = ["Joined", "LabelJoin"]

_COUNTERS = (
    "trials_in",
    "labels_in",
    "joined",
    "missing_labels",
    "orphan_labels",
    "late_labels",
    "duplicate_labels",
    "duplicate_trials",
)


@dataclass(frozen=True, slots=True)
class Joined:
    """A trial paired with its label.

    Attributes:
        trial_id: the trial id.
        payload: what was given with the trial (e.g. its prediction).
        label: the class label.
    """

    trial_id: int
    payload: Any
    label: int


def _as_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ParameterError(f"{name} must be an int, got {value!r}")
    return int(value)


class _BoundedIdSet:
    """Insertion-ordered set of at most ``capacity`` ids; the oldest is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: int) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def discard(self, key: int) -> None:
        self._ids.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class LabelJoin:
    """Pair trials with labels that arrive in any order, within bounded memory.

    Args:
        capacity: maximum waiting trials, and separately maximum waiting labels
            (also the size of each remembered-id set), >= 1.
        max_age_s: entries waiting longer than this are dropped by :meth:`expire`
            (seconds, > 0).
    """

    def __init__(self, *, capacity: int, max_age_s: float) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise ParameterError(f"capacity must be an int, got {capacity!r}")
        if capacity < 1:
            raise ParameterError(f"capacity must be >= 1, got {capacity}")
        if isinstance(max_age_s, bool) or not isinstance(
            max_age_s, int | float | np.integer | np.floating
        ):
            raise ParameterError(f"max_age_s must be a number, got {max_age_s!r}")
        if not (math.isfinite(max_age_s) and max_age_s > 0):
            raise ParameterError(f"max_age_s must be finite and > 0, got {max_age_s!r}")
        self.capacity = int(capacity)
        self.max_age_s = float(max_age_s)
        # id -> (arrival time, payload or label); insertion order == age order.
        self._trials: OrderedDict[int, tuple[float, Any]] = OrderedDict()
        self._labels: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._missing = _BoundedIdSet(self.capacity)
        self._labelled = _BoundedIdSet(self.capacity)
        self._now = -math.inf
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # ---------------------------------------------------------------- state

    def __len__(self) -> int:
        """Waiting entries: trials plus labels."""
        return len(self._trials) + len(self._labels)

    @property
    def waiting_trials(self) -> int:
        """Trials waiting for their label."""
        return len(self._trials)

    @property
    def waiting_labels(self) -> int:
        """Labels waiting for their trial."""
        return len(self._labels)

    def counters(self) -> dict[str, int]:
        """Cumulative counters (see the module docstring) plus waiting_trials/labels."""
        out = dict(self._counts)
        out["waiting_trials"] = len(self._trials)
        out["waiting_labels"] = len(self._labels)
        return out

    # ----------------------------------------------------------------- core

    def _clock(self, now_s: float) -> float:
        now = float(now_s)
        if math.isnan(now):
            raise ParameterError("now_s must not be NaN")
        self._now = max(self._now, now)
        return self._now

    def _trial(self, tid: int, payload: Any, now: float, out: list[Joined]) -> None:
        c = self._counts
        c["trials_in"] += 1
        if tid in self._trials or tid in self._labelled or tid in self._missing:
            c["duplicate_trials"] += 1
            return
        entry = self._labels.pop(tid, None)
        if entry is not None:
            c["joined"] += 1
            self._labelled.add(tid)
            out.append(Joined(tid, payload, entry[1]))
            return
        if len(self._trials) >= self.capacity:
            old, _ = self._trials.popitem(last=False)
            self._gone_missing(old)
        self._trials[tid] = (now, payload)

    def _label(self, tid: int, label: int, now: float, out: list[Joined]) -> None:
        c = self._counts
        c["labels_in"] += 1
        entry = self._trials.pop(tid, None)
        if entry is not None:
            c["joined"] += 1
            self._labelled.add(tid)
            out.append(Joined(tid, entry[1], label))
        elif tid in self._labels or tid in self._labelled:
            c["duplicate_labels"] += 1  # the first label wins
        elif tid in self._missing:
            c["late_labels"] += 1
            self._missing.discard(tid)
            self._labelled.add(tid)  # a further label is a duplicate
        else:
            if len(self._labels) >= self.capacity:
                self._labels.popitem(last=False)
                c["orphan_labels"] += 1
            self._labels[tid] = (now, label)

    def _gone_missing(self, tid: int) -> None:
        self._counts["missing_labels"] += 1
        self._missing.add(tid)

    # ------------------------------------------------------------------ API

    def add_trial(self, trial_id: int, payload: object, now_s: float) -> list[Joined]:
        """Add a trial; return ``[Joined]`` if its label was waiting, else ``[]``.

        A trial id already waiting or recently finished is counted in
        ``duplicate_trials`` and dropped.
        """
        out: list[Joined] = []
        self._trial(_as_id("trial_id", trial_id), payload, self._clock(now_s), out)
        return out

    def add_label(self, trial_id: int, label: int, now_s: float) -> list[Joined]:
        """Add a label; return ``[Joined]`` if its trial was waiting, else ``[]``."""
        out: list[Joined] = []
        self._label(_as_id("trial_id", trial_id), _as_id("label", label), self._clock(now_s), out)
        return out

    def add_trials(
        self, trial_ids: ArrayLike, payloads: Sequence[Any], now_s: float
    ) -> list[Joined]:
        """Add ``K`` trials at once (``trial_ids (K,)`` int, ``len(payloads) == K``).

        Returns the pairs joined, in input order.
        """
        ids = _id_array("trial_ids", trial_ids)
        if len(payloads) != ids.size:
            raise ParameterError(f"{ids.size} trial ids but {len(payloads)} payloads")
        now = self._clock(now_s)
        out: list[Joined] = []
        for tid, payload in zip(ids.tolist(), payloads, strict=True):
            self._trial(tid, payload, now, out)
        return out

    def add_labels(self, trial_ids: ArrayLike, labels: ArrayLike, now_s: float) -> list[Joined]:
        """Add ``K`` labels at once (``trial_ids (K,)``, ``labels (K,)`` int).

        Returns the pairs joined, in input order.
        """
        ids = _id_array("trial_ids", trial_ids)
        lab = _id_array("labels", labels)
        if lab.size != ids.size:
            raise ParameterError(f"{ids.size} trial ids but {lab.size} labels")
        now = self._clock(now_s)
        out: list[Joined] = []
        for tid, label in zip(ids.tolist(), lab.tolist(), strict=True):
            self._label(tid, label, now, out)
        return out

    def expire(self, now_s: float) -> None:
        """Drop entries that have waited more than ``max_age_s`` at ``now_s``."""
        limit = self._clock(now_s) - self.max_age_s
        while self._trials:
            tid, (t, _) = next(iter(self._trials.items()))
            if t >= limit:
                break
            del self._trials[tid]
            self._gone_missing(tid)
        while self._labels:
            tid, (t, _) = next(iter(self._labels.items()))
            if t >= limit:
                break
            del self._labels[tid]
            self._counts["orphan_labels"] += 1


def _id_array(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D int array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)
