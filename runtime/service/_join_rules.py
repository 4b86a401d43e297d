"""The label join's rules on two bounded tables, one code path for both sides.

:class:`JoinTables` holds the waiting trials and the waiting labels as two
:class:`Side` objects of one kind, the remembered ids (trials gone missing,
trials labelled) and the counters, and applies the rules documented in
:mod:`delgrad.runtime.service._join` to a batch added to either side. The sides
differ only in data: their counter names, what a payload is, and two policies
(:class:`Side`). Validation and the public results live in ``_join``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

COUNTERS = tuple(
    "trials_in labels_in joined missing_labels orphan_labels late_labels"
    " duplicate_labels duplicate_trials".split()
)


class BoundedIdSet:
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


class ArrayStore:
    """Payloads in one preallocated array ``data``, (capacity,) or (capacity, W): one
    entry per slot; ``kind`` names them in error messages."""

    def __init__(self, data: np.ndarray, kind: str) -> None:
        self.data = data
        self.kind = kind

    def put(self, slots: np.ndarray, values: Any, index: np.ndarray) -> None:
        self.data[slots] = values[index]

    def get(self, slots: list[int]) -> np.ndarray:
        return self.data[slots]

    def clear(self, slots: list[int]) -> None:
        pass  # array entries hold no references


class ObjectStore:
    """Arbitrary payload objects, one per slot; released slots drop their reference."""

    kind = "payload objects (add_trials)"

    def __init__(self, capacity: int) -> None:
        self.data: list[Any] = [None] * capacity

    def put(self, slots: np.ndarray, values: Any, index: np.ndarray) -> None:
        for slot, i in zip(slots.tolist(), index.tolist(), strict=True):
            self.data[slot] = values[i]

    def get(self, slots: list[int]) -> list[Any]:
        return [self.data[s] for s in slots]

    def clear(self, slots: list[int]) -> None:
        for slot in slots:
            self.data[slot] = None  # do not keep payloads alive


class Side:
    """One side of the join: waiting entries (id -> slot, oldest first), their
    arrival times and payloads, and what its events count as.

    Args:
        capacity: most entries waiting.
        received / duplicate / evicted / after_missing: counter names for an entry
            added, a repeated one, one evicted or expired, and one whose trial is
            remembered as missing.
        remembers_evicted: evicted ids are remembered as missing (the trial side).
        settles_missing: an entry for a missing trial moves its id to the labelled
            ones, so a further entry is a duplicate (the label side).
        store: the payload storage, or None until the first entry fixes its kind.
    """

    def __init__(
        self,
        capacity: int,
        *,
        received: str,
        duplicate: str,
        evicted: str,
        after_missing: str,
        remembers_evicted: bool,
        settles_missing: bool,
        store: ArrayStore | ObjectStore | None = None,
    ) -> None:
        self.capacity = capacity
        self.table: OrderedDict[int, int] = OrderedDict()
        self._slots = _Slots(capacity)
        self._t = np.zeros(capacity)
        self.store = store
        self.received = received
        self.duplicate = duplicate
        self.evicted = evicted
        self.after_missing = after_missing
        self.remembers_evicted = remembers_evicted
        self.settles_missing = settles_missing

    def use_store(self, make: Callable[[], ArrayStore | ObjectStore]) -> ArrayStore | ObjectStore:
        """The payload store; the first call fixes it to ``make()``."""
        if self.store is None:
            self.store = make()
        return self.store

    def insert(self, ids: np.ndarray, values: Any, index: np.ndarray, now: float) -> None:
        """Add entries ``ids[index]`` with payloads ``values[index]`` (room is made)."""
        assert self.store is not None
        slots = self._slots.take(index.size)
        self.store.put(slots, values, index)
        self._t[slots] = now
        self.table.update(zip(ids[index].tolist(), slots.tolist(), strict=True))

    def release(self, slots: list[int]) -> None:
        """Free slots of entries already out of the table."""
        if self.store is not None:
            self.store.clear(slots)
        self._slots.give(slots)

    def pop_oldest(self, n: int) -> list[int]:
        """Remove the ``n`` oldest entries; returns their ids."""
        popped = [self.table.popitem(last=False) for _ in range(n)]
        self.release([slot for _, slot in popped])
        return [key for key, _ in popped]

    def pop_older_than(self, limit: float) -> list[int]:
        """Remove the entries that arrived before ``limit``; returns their ids."""
        gone: list[int] = []
        freed: list[int] = []
        table = self.table
        while table:
            key, slot = next(iter(table.items()))
            if self._t[slot] >= limit:
                break
            del table[key]
            gone.append(key)
            freed.append(slot)
        if freed:
            self.release(freed)
        return gone

    def take_payloads(self, slots: list[int]) -> Any:
        """The payloads of ``slots`` (entries already out of the table); frees the slots."""
        values = self.store.get(slots) if self.store is not None else []
        self.release(slots)
        return values


class JoinTables:
    """Waiting trials and labels, remembered ids and counters of one join.

    Args:
        capacity: most waiting entries per side, and most ids per remembered set.
        label_capacity: most waiting labels, if not ``capacity``.
    """

    def __init__(self, capacity: int, label_capacity: int | None = None) -> None:
        labels = capacity if label_capacity is None else label_capacity
        self.trials = Side(
            capacity,
            received="trials_in",
            duplicate="duplicate_trials",
            evicted="missing_labels",
            after_missing="duplicate_trials",
            remembers_evicted=True,
            settles_missing=False,
        )
        self.labels = Side(
            labels,
            received="labels_in",
            duplicate="duplicate_labels",
            evicted="orphan_labels",
            after_missing="late_labels",
            remembers_evicted=False,
            settles_missing=True,
            store=ArrayStore(np.zeros(labels, dtype=np.int64), "labels"),
        )
        self.missing = BoundedIdSet(capacity)  # trials evicted or expired, not yet labelled
        self.labelled = BoundedIdSet(capacity)  # trials joined (or closed by a late label)
        self.counts = dict.fromkeys(COUNTERS, 0)

    def add(
        self, own: Side, other: Side, ids: np.ndarray, values: Any, now: float
    ) -> tuple[list[int], list[int]]:
        """Add entries ``ids`` with payloads ``values`` to ``own`` (either side).

        Returns the input indices joined and their slots on ``other`` (still
        taken: the caller reads their payloads with :meth:`Side.take_payloads`).
        """
        keys: list[int] = ids.tolist()
        self.counts[own.received] += len(keys)
        plain = (
            len(set(keys)) == len(keys)
            and own.table.keys().isdisjoint(keys)
            and self.labelled.isdisjoint(keys)
            and self.missing.isdisjoint(keys)
        )
        if plain:
            return self._add_plain(own, other, ids, keys, values, now)
        joined: list[int] = []
        slots: list[int] = []
        for i, key in enumerate(keys):
            slot = other.table.pop(key, None)
            if slot is not None:
                self.counts["joined"] += 1
                self.labelled.add(key)
                joined.append(i)
                slots.append(slot)
            elif key in own.table or key in self.labelled:
                self.counts[own.duplicate] += 1  # the first one wins
            elif key in self.missing:
                self.counts[own.after_missing] += 1
                if own.settles_missing:
                    self.missing.discard(key)
                    self.labelled.add(key)
            else:
                if len(own.table) >= own.capacity:
                    self.evicted(own, own.pop_oldest(1))
                own.insert(ids, values, np.array([i]), now)
        return joined, slots

    def _add_plain(
        self, own: Side, other: Side, ids: np.ndarray, keys: list[int], values: Any, now: float
    ) -> tuple[list[int], list[int]]:
        """:meth:`add` for a plain batch (no id repeated, waiting on ``own`` or
        remembered): every entry joins or waits, so the batch goes as a whole."""
        n = len(keys)
        common = other.table.keys() & keys if other.table else set()
        slots: list[int] = []
        joined = np.zeros(0, dtype=np.int64)
        rest = np.arange(n)
        if common:
            hit = np.fromiter((k in common for k in keys), dtype=bool, count=n)
            joined, rest = np.flatnonzero(hit), np.flatnonzero(~hit)
            joined_keys = ids[joined].tolist()
            slots = [other.table.pop(k) for k in joined_keys]
            self.counts["joined"] += len(joined_keys)
            self.labelled.add_new(joined_keys)
        # insert the rest; the oldest waiting entries (then the first new ones) are evicted
        over = len(own.table) + rest.size - own.capacity
        if over > 0:
            old = min(over, len(own.table))
            gone = own.pop_oldest(old)
            if over > old:  # more new entries than capacity: the first are evicted at once
                gone += ids[rest[: over - old]].tolist()
                rest = rest[over - old :]
            self.counts[own.evicted] += len(gone)
            if own.remembers_evicted:
                self.missing.add_new(gone)
        if rest.size:
            own.insert(ids, values, rest, now)
        return joined.tolist(), slots

    def evicted(self, side: Side, gone: list[int]) -> None:
        """Count entries evicted or expired from ``side`` (and remember them if it does)."""
        self.counts[side.evicted] += len(gone)
        if side.remembers_evicted:
            for key in gone:
                self.missing.add(key)
