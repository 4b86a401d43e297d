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

Storage: the tables map trial id -> slot; payloads, labels and arrival times
live in preallocated slot arrays (``capacity`` each), so a waiting trial costs
no Python object beyond its table entry. Payloads are either arbitrary objects
(:meth:`LabelJoin.add_trial` / :meth:`LabelJoin.add_trials`) or rows of one 2-D
float array (:meth:`LabelJoin.join_trials`, the service's path), which are
copied into a row slab once and handed back as one array. Bulk calls take a
vectorised path when the batch is plain (no repeated id, none already waiting
on its own side or remembered); otherwise they fall back to the per-entry
rules above, so both give the same results and counters.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from delgrad.errors import ParameterError

__all__ = ["Joined", "JoinedRows", "LabelJoin"]

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

    def add_new(self, keys: list[int]) -> None:
        """Add ids none of which is in the set (same result as ``add`` one by one)."""
        ids = self._ids
        ids.update(dict.fromkeys(keys))
        for _ in range(len(ids) - self._capacity):
            ids.popitem(last=False)

    def discard(self, key: int) -> None:
        self._ids.pop(key, None)

    def isdisjoint(self, keys: list[int]) -> bool:
        return self._ids.keys().isdisjoint(keys)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class _Slots:
    """``capacity`` slots handed out and taken back in bulk (a stack of free slots)."""

    def __init__(self, capacity: int) -> None:
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int64)
        self._top = capacity  # free slots are _free[:_top]; the last is handed out first

    def take(self, n: int) -> np.ndarray:
        if n > self._top:
            raise AssertionError("join slots exhausted")  # bounded by capacity by construction
        self._top -= n
        return self._free[self._top : self._top + n][::-1].copy()

    def give(self, slots: np.ndarray | list[int]) -> None:
        arr = np.asarray(slots, dtype=np.int64)
        self._free[self._top : self._top + arr.size] = arr
        self._top += arr.size


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
        c = self.capacity
        # id -> slot; insertion order == age order.
        self._trials: OrderedDict[int, int] = OrderedDict()
        self._labels: OrderedDict[int, int] = OrderedDict()
        self._trial_slots = _Slots(c)
        self._label_slots = _Slots(c)
        self._trial_t = np.zeros(c)
        self._label_t = np.zeros(c)
        self._label_val = np.zeros(c, dtype=np.int64)
        # payload storage, chosen by the first trial added: objects or float rows
        self._objs: list[Any] | None = None
        self._rows: np.ndarray | None = None
        self._missing = _BoundedIdSet(c)
        self._labelled = _BoundedIdSet(c)
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

    def _use_objects(self) -> None:
        if self._rows is not None:
            raise ParameterError("this join holds payload rows (join_trials); not objects")
        if self._objs is None:
            self._objs = [None] * self.capacity

    def _use_rows(self, rows: np.ndarray) -> None:
        if self._objs is not None:
            raise ParameterError("this join holds payload objects (add_trials); not rows")
        if self._rows is None:
            # np.empty: pages become resident only as slots are used
            self._rows = np.empty((self.capacity, rows.shape[1]))
        elif rows.shape[1] != self._rows.shape[1]:
            raise ParameterError(f"rows must have {self._rows.shape[1]} columns, got {rows.shape}")

    def _store(self, slots: np.ndarray, payloads: Any, index: np.ndarray) -> None:
        if self._rows is not None:
            self._rows[slots] = payloads[index]
        else:
            objs = self._objs
            assert objs is not None
            for slot, i in zip(slots.tolist(), index.tolist(), strict=True):
                objs[slot] = payloads[i]

    def _release_trials(self, slots: list[int]) -> None:
        if self._objs is not None:
            for slot in slots:
                self._objs[slot] = None  # do not keep payloads alive
        self._trial_slots.give(slots)

    def _match_plain(
        self, ids: np.ndarray, keys: list[int], own: OrderedDict, other: OrderedDict
    ) -> tuple[np.ndarray, list[int], np.ndarray] | None:
        """Vectorised matching of a batch against the other side's waiting entries.

        Returns None unless the batch is plain (no repeated id, none waiting on its
        own side, none remembered as labelled or missing), which the one-by-one path
        handles. Otherwise pops the matched entries from ``other`` and returns
        (indices of joined ids, their slots on the other side, indices of the rest).
        """
        n = len(keys)
        plain = (
            len(set(keys)) == n
            and own.keys().isdisjoint(keys)
            and self._labelled.isdisjoint(keys)
            and self._missing.isdisjoint(keys)
        )
        if not plain:
            return None
        common = other.keys() & keys if other else ()
        if not common:
            return np.zeros(0, dtype=np.int64), [], np.arange(n)
        hit = np.fromiter((k in common for k in keys), dtype=bool, count=n)
        joined_idx = np.flatnonzero(hit)
        joined_keys = ids[joined_idx].tolist()
        slots = [other.pop(k) for k in joined_keys]
        self._counts["joined"] += len(joined_keys)
        self._labelled.add_new(joined_keys)
        return joined_idx, slots, np.flatnonzero(~hit)

    def _add_trials(self, ids: np.ndarray, payloads: Any, now: float) -> tuple[list, list]:
        """Returns joined (input indices, label slots); label slots are released by the caller."""
        c = self._counts
        keys = ids.tolist()
        c["trials_in"] += len(keys)
        matched = self._match_plain(ids, keys, self._trials, self._labels)
        if matched is None:
            return self._add_trials_one_by_one(keys, payloads, now)
        joined_idx, label_slots, rest = matched
        # insert the rest; the oldest waiting trials (then the first new ones) are evicted
        trials = self._trials
        over = len(trials) + rest.size - self.capacity
        if over > 0:
            old = min(over, len(trials))
            evicted = [trials.popitem(last=False) for _ in range(old)]
            self._release_trials([slot for _, slot in evicted])
            gone = [tid for tid, _ in evicted]
            if over > old:  # more new trials than capacity: the first go straight to missing
                gone += ids[rest[: over - old]].tolist()
                rest = rest[over - old :]
            c["missing_labels"] += len(gone)
            self._missing.add_new(gone)
        if rest.size:
            slots = self._trial_slots.take(rest.size)
            self._store(slots, payloads, rest)
            self._trial_t[slots] = now
            trials.update(zip(ids[rest].tolist(), slots.tolist(), strict=True))
        return joined_idx.tolist(), label_slots

    def _add_trials_one_by_one(
        self, keys: list[int], payloads: Any, now: float
    ) -> tuple[list, list]:
        c = self._counts
        trials, labels = self._trials, self._labels
        joined_idx: list[int] = []
        label_slots: list[int] = []
        for i, tid in enumerate(keys):
            if tid in trials or tid in self._labelled or tid in self._missing:
                c["duplicate_trials"] += 1
                continue
            slot = labels.pop(tid, None)
            if slot is not None:
                c["joined"] += 1
                self._labelled.add(tid)
                joined_idx.append(i)
                label_slots.append(slot)
                continue
            if len(trials) >= self.capacity:
                old, old_slot = trials.popitem(last=False)
                self._release_trials([old_slot])
                self._gone_missing(old)
            new = self._trial_slots.take(1)
            self._store(new, payloads, np.array([i]))
            self._trial_t[new] = now
            trials[tid] = int(new[0])
        return joined_idx, label_slots

    def _add_labels(self, ids: np.ndarray, lab: np.ndarray, now: float) -> tuple[list, list]:
        """Returns joined (input indices, trial slots); trial slots are released by the caller."""
        c = self._counts
        keys = ids.tolist()
        c["labels_in"] += len(keys)
        matched = self._match_plain(ids, keys, self._labels, self._trials)
        if matched is None:
            return self._add_labels_one_by_one(keys, lab, now)
        joined_idx, trial_slots, rest = matched
        labels = self._labels
        over = len(labels) + rest.size - self.capacity
        if over > 0:
            old = min(over, len(labels))
            self._label_slots.give([labels.popitem(last=False)[1] for _ in range(old)])
            if over > old:
                rest = rest[over - old :]
            c["orphan_labels"] += over
        if rest.size:
            slots = self._label_slots.take(rest.size)
            self._label_val[slots] = lab[rest]
            self._label_t[slots] = now
            labels.update(zip(ids[rest].tolist(), slots.tolist(), strict=True))
        return joined_idx.tolist(), trial_slots

    def _add_labels_one_by_one(
        self, keys: list[int], lab: np.ndarray, now: float
    ) -> tuple[list, list]:
        c = self._counts
        trials, labels = self._trials, self._labels
        values = lab.tolist()
        joined_idx: list[int] = []
        trial_slots: list[int] = []
        for i, tid in enumerate(keys):
            slot = trials.pop(tid, None)
            if slot is not None:
                c["joined"] += 1
                self._labelled.add(tid)
                joined_idx.append(i)
                trial_slots.append(slot)
            elif tid in labels or tid in self._labelled:
                c["duplicate_labels"] += 1  # the first label wins
            elif tid in self._missing:
                c["late_labels"] += 1
                self._missing.discard(tid)
                self._labelled.add(tid)  # a further label is a duplicate
            else:
                if len(labels) >= self.capacity:
                    self._label_slots.give([labels.popitem(last=False)[1]])
                    c["orphan_labels"] += 1
                new = int(self._label_slots.take(1)[0])
                self._label_val[new] = values[i]
                self._label_t[new] = now
                labels[tid] = new
        return joined_idx, trial_slots

    def _gone_missing(self, tid: int) -> None:
        self._counts["missing_labels"] += 1
        self._missing.add(tid)

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
        self._use_objects()
        idx, label_slots = self._add_trials(ids, payloads, now)
        values = self._label_val[label_slots].tolist()
        self._label_slots.give(label_slots)
        return [Joined(int(ids[i]), payloads[i], v) for i, v in zip(idx, values, strict=True)]

    def add_labels(self, trial_ids: ArrayLike, labels: ArrayLike, now_s: float) -> list[Joined]:
        """Add ``K`` labels at once (``trial_ids (K,)``, ``labels (K,)`` int).

        Returns the pairs joined, in input order.
        """
        ids, lab = self._label_arrays(trial_ids, labels)
        now = self._clock(now_s)
        idx, trial_slots = self._add_labels(ids, lab, now)
        if self._rows is not None:
            payloads: list[Any] = list(self._rows[trial_slots])
        elif self._objs is not None:
            payloads = [self._objs[s] for s in trial_slots]
        else:
            payloads = []
        self._release_trials(trial_slots)
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
        self._use_rows(arr)
        idx, label_slots = self._add_trials(ids, arr, now)
        labels = self._label_val[label_slots]
        self._label_slots.give(label_slots)
        return JoinedRows(ids[idx], arr[idx], labels)

    def join_labels(self, trial_ids: ArrayLike, labels: ArrayLike, now_s: float) -> JoinedRows:
        """Add ``K`` labels (as :meth:`add_labels`) to a join of payload rows
        (:meth:`join_trials`). Returns the pairs joined, in input order."""
        ids, lab = self._label_arrays(trial_ids, labels)
        now = self._clock(now_s)
        idx, trial_slots = self._add_labels(ids, lab, now)
        width = 0 if self._rows is None else self._rows.shape[1]
        rows = self._rows[trial_slots] if self._rows is not None else np.zeros((0, width))
        self._release_trials(trial_slots)
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
        labels = self._labels
        if not labels or not ids.size:
            return 0
        common = labels.keys() & ids.tolist()
        if common:
            self._label_slots.give([labels.pop(k) for k in common])
            self._counts["orphan_labels"] += len(common)
        return len(common)

    def expire(self, now_s: float) -> None:
        """Drop entries that have waited more than ``max_age_s`` at ``now_s``."""
        limit = self._clock(now_s) - self.max_age_s
        trials = self._trials
        gone: list[int] = []
        freed: list[int] = []
        while trials:
            tid, slot = next(iter(trials.items()))
            if self._trial_t[slot] >= limit:
                break
            del trials[tid]
            gone.append(tid)
            freed.append(slot)
        if gone:
            self._release_trials(freed)
            self._counts["missing_labels"] += len(gone)
            for tid in gone:
                self._missing.add(tid)
        labels = self._labels
        freed = []
        while labels:
            tid, slot = next(iter(labels.items()))
            if self._label_t[slot] >= limit:
                break
            del labels[tid]
            freed.append(slot)
        if freed:
            self._label_slots.give(freed)
            self._counts["orphan_labels"] += len(freed)


def _id_array(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D int array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)
