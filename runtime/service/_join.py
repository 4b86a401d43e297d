"""Label join: pairing predicted trials with their labels.

Labels may arrive before or after their trial, or never. :class:`LabelJoin`
keeps both sides waiting in bounded, insertion-ordered tables and pairs them by
trial id. Both sides are tables of one kind run by one set of rules
(``_join_rules``); they differ only in their counters, in what a payload is (a
trial's object or float row, a label's class) and in two policies named below.

Bounds and policies (``capacity`` = C):

* at most C waiting trials and C waiting labels (or ``label_capacity`` labels);
  adding to a full side evicts
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

Storage: the tables map trial id -> slot; payloads and arrival times live in
preallocated slot arrays (``capacity`` each), so a waiting entry costs no Python
object beyond its table entry. Trial payloads are either arbitrary objects
(:meth:`LabelJoin.add_trial` / :meth:`LabelJoin.add_trials`) or rows of one 2-D
float array (:meth:`LabelJoin.join_trials`, the service's path), copied into a
row slab once and handed back as one array. A batch whose ids are plain (none
repeated, none waiting on its own side or remembered) is matched and inserted
as a whole; any other batch goes entry by entry through the same rules, so
both give the same results and counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from delgrad.errors import ParameterError
from delgrad.runtime.service._join_rules import ArrayStore, JoinTables, ObjectStore

__all__ = ["Joined", "JoinedRows", "LabelJoin"]


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


class JoinedRows(NamedTuple):
    """Pairs made by :meth:`LabelJoin.join_trials` / :meth:`LabelJoin.join_labels`.

    Attributes:
        trial_ids: (K,) int64.
        rows: (K, W) float64 payload rows (a new array).
        labels: (K,) int64.
    """

    trial_ids: np.ndarray
    rows: np.ndarray
    labels: np.ndarray


def _as_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ParameterError(f"{name} must be an int, got {value!r}")
    return int(value)


def _as_capacity(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ParameterError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ParameterError(f"{name} must be >= 1, got {value}")
    return int(value)


class LabelJoin:
    """Pair trials with labels that arrive in any order, within bounded memory.

    Args:
        capacity: maximum waiting trials, and separately maximum waiting labels
            (also the size of each remembered-id set), >= 1.
        max_age_s: entries waiting longer than this are dropped by :meth:`expire`
            (seconds, > 0).
        label_capacity: maximum waiting labels if not ``capacity`` (>= 1): the
            service keeps the labels of every trial its pending queue may hold,
            which at sensor scale is more trials than the join's row bound.
    """

    def __init__(
        self, *, capacity: int, max_age_s: float, label_capacity: int | None = None
    ) -> None:
        self.capacity = _as_capacity("capacity", capacity)
        self.label_capacity = (
            self.capacity
            if label_capacity is None
            else _as_capacity("label_capacity", label_capacity)
        )
        if isinstance(max_age_s, bool) or not isinstance(
            max_age_s, int | float | np.integer | np.floating
        ):
            raise ParameterError(f"max_age_s must be a number, got {max_age_s!r}")
        if not (math.isfinite(max_age_s) and max_age_s > 0):
            raise ParameterError(f"max_age_s must be finite and > 0, got {max_age_s!r}")
        self.max_age_s = float(max_age_s)
        self._tables = JoinTables(self.capacity, self.label_capacity)
        self._now = -math.inf

    # ---------------------------------------------------------------- state

    def __len__(self) -> int:
        """Waiting entries: trials plus labels."""
        return self.waiting_trials + self.waiting_labels

    @property
    def waiting_trials(self) -> int:
        """Trials waiting for their label."""
        return len(self._tables.trials.table)

    @property
    def waiting_labels(self) -> int:
        """Labels waiting for their trial."""
        return len(self._tables.labels.table)

    def counters(self) -> dict[str, int]:
        """Cumulative counters (see the module docstring) plus waiting_trials/labels."""
        out = dict(self._tables.counts)
        out["waiting_trials"] = self.waiting_trials
        out["waiting_labels"] = self.waiting_labels
        return out

    # ----------------------------------------------------------------- core

    def _clock(self, now_s: float) -> float:
        now = float(now_s)
        if math.isnan(now):
            raise ParameterError("now_s must not be NaN")
        self._now = max(self._now, now)
        return self._now

    def _trial_store(self, rows: np.ndarray | None) -> None:
        """Fix the trials' payload kind at first use: objects, or rows of ``rows``' width."""

        def make() -> ArrayStore | ObjectStore:
            if rows is None:
                return ObjectStore(self.capacity)
            # np.empty: pages become resident only as slots are used
            return ArrayStore(
                np.empty((self.capacity, rows.shape[1])), "payload rows (join_trials)"
            )

        store = self._tables.trials.use_store(make)
        if (rows is None) != isinstance(store, ObjectStore):
            wanted = "objects" if rows is None else "rows"
            raise ParameterError(f"this join holds {store.kind}; not {wanted}")
        if isinstance(store, ArrayStore) and rows is not None:
            width = store.data.shape[1]
            if rows.shape[1] != width:
                raise ParameterError(f"rows must have {width} columns, got {rows.shape}")

    # ------------------------------------------------------------------ API

    def add_trial(self, trial_id: int, payload: object, now_s: float) -> list[Joined]:
        """Add a trial; return ``[Joined]`` if its label was waiting, else ``[]``.

        A trial id already waiting or recently finished is counted in
        ``duplicate_trials`` and dropped.
        """
        tid = _as_id("trial_id", trial_id)
        return self.add_trials(np.array([tid], dtype=np.int64), [payload], now_s)

    def add_label(self, trial_id: int, label: int, now_s: float) -> list[Joined]:
        """Add a label; return ``[Joined]`` if its trial was waiting, else ``[]``."""
        tid = _as_id("trial_id", trial_id)
        value = _as_id("label", label)
        return self.add_labels(
            np.array([tid], dtype=np.int64), np.array([value], dtype=np.int64), now_s
        )

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
        self._trial_store(None)
        t = self._tables
        idx, label_slots = self._tables.add(t.trials, t.labels, ids, payloads, now)
        values = t.labels.take_payloads(label_slots).tolist()
        return [Joined(int(ids[i]), payloads[i], v) for i, v in zip(idx, values, strict=True)]

    def add_labels(self, trial_ids: ArrayLike, labels: ArrayLike, now_s: float) -> list[Joined]:
        """Add ``K`` labels at once (``trial_ids (K,)``, ``labels (K,)`` int).

        Returns the pairs joined, in input order.
        """
        ids, lab = self._label_arrays(trial_ids, labels)
        now = self._clock(now_s)
        t = self._tables
        idx, trial_slots = self._tables.add(t.labels, t.trials, ids, lab, now)
        payloads = list(t.trials.take_payloads(trial_slots))
        return [Joined(int(ids[i]), p, int(lab[i])) for i, p in zip(idx, payloads, strict=True)]

    def join_trials(self, trial_ids: ArrayLike, rows: np.ndarray, now_s: float) -> JoinedRows:
        """Add ``K`` trials whose payloads are the rows of ``rows (K, W)`` float.

        Same rules as :meth:`add_trials`; the rows of waiting trials are copied
        into the join's slab. Returns the pairs joined, in input order.
        """
        ids = _id_array("trial_ids", trial_ids)
        arr = np.asarray(rows, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != ids.size:
            raise ParameterError(f"{ids.size} trial ids but rows of shape {arr.shape}")
        now = self._clock(now_s)
        self._trial_store(arr)
        t = self._tables
        idx, label_slots = self._tables.add(t.trials, t.labels, ids, arr, now)
        return JoinedRows(ids[idx], arr[idx], t.labels.take_payloads(label_slots))

    def join_labels(self, trial_ids: ArrayLike, labels: ArrayLike, now_s: float) -> JoinedRows:
        """Add ``K`` labels (as :meth:`add_labels`) to a join of payload rows
        (:meth:`join_trials`). Returns the pairs joined, in input order.

        Raises:
            ParameterError: if this join holds payload objects (:meth:`add_trials`).
        """
        ids, lab = self._label_arrays(trial_ids, labels)
        t = self._tables
        store = t.trials.store
        if isinstance(store, ObjectStore):
            raise ParameterError(f"this join holds {store.kind}; not rows")
        now = self._clock(now_s)
        idx, trial_slots = self._tables.add(t.labels, t.trials, ids, lab, now)
        rows = t.trials.take_payloads(trial_slots) if store is not None else np.zeros((0, 0))
        return JoinedRows(ids[idx], rows, lab[idx])

    def _label_arrays(
        self, trial_ids: ArrayLike, labels: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = _id_array("trial_ids", trial_ids)
        lab = _id_array("labels", labels)
        if lab.size != ids.size:
            raise ParameterError(f"{ids.size} trial ids but {lab.size} labels")
        return ids, lab

    def drop_labels(self, trial_ids: ArrayLike) -> int:
        """Give up the waiting labels of trials that will never come (e.g. dropped
        for overload): they leave at once as ``orphan_labels`` instead of waiting
        for eviction or expiry. Returns how many were waiting."""
        ids = _id_array("trial_ids", trial_ids)
        labels = self._tables.labels
        table = labels.table
        if not table or not ids.size:
            return 0
        common = table.keys() & ids.tolist()
        if common:
            labels.release([table.pop(k) for k in common])
            self._tables.counts["orphan_labels"] += len(common)
        return len(common)

    def expire(self, now_s: float) -> None:
        """Drop entries that have waited more than ``max_age_s`` at ``now_s``."""
        limit = self._clock(now_s) - self.max_age_s
        for side in (self._tables.trials, self._tables.labels):
            gone = side.pop_older_than(limit)
            if gone:
                self._tables.evicted(side, gone)


def _id_array(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D int array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)
