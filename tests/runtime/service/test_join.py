"""Tests of LabelJoin: pairing trials with labels that arrive in any order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad.errors import ParameterError
from delgrad.runtime.service._join import Joined, LabelJoin


def _conserved(j: LabelJoin) -> None:
    c = j.counters()
    assert c["trials_in"] == (
        c["joined"] + c["missing_labels"] + c["duplicate_trials"] + c["waiting_trials"]
    )
    assert c["labels_in"] == (
        c["joined"]
        + c["orphan_labels"]
        + c["late_labels"]
        + c["duplicate_labels"]
        + c["waiting_labels"]
    )
    assert len(j) == c["waiting_trials"] + c["waiting_labels"]


def test_label_after_trial_and_before_trial():
    j = LabelJoin(capacity=4, max_age_s=10.0)
    assert j.add_trial(1, "p1", 0.0) == []
    assert j.add_label(1, 3, 0.1) == [Joined(1, "p1", 3)]
    assert j.add_label(2, 0, 0.2) == []
    assert j.add_trial(2, "p2", 0.3) == [Joined(2, "p2", 0)]
    assert len(j) == 0
    assert j.counters()["joined"] == 2
    _conserved(j)


def test_expiry_counts_missing_and_orphan_and_then_late():
    j = LabelJoin(capacity=4, max_age_s=1.0)
    j.add_trial(1, None, 0.0)
    j.add_label(9, 1, 0.5)
    j.expire(1.0)  # age exactly max_age_s: kept
    assert len(j) == 2
    j.expire(1.01)
    c = j.counters()
    assert c["missing_labels"] == 1 and c["orphan_labels"] == 0 and len(j) == 1
    j.expire(1.6)
    assert j.counters()["orphan_labels"] == 1 and len(j) == 0
    # The label for trial 1 arrives after the trial went missing: late, not orphan.
    assert j.add_label(1, 2, 2.0) == []
    c = j.counters()
    assert c["late_labels"] == 1 and c["waiting_labels"] == 0
    # A further label for it is a duplicate.
    j.add_label(1, 2, 2.0)
    assert j.counters()["duplicate_labels"] == 1
    _conserved(j)


def test_duplicates_keep_the_first():
    j = LabelJoin(capacity=4, max_age_s=10.0)
    j.add_label(5, 1, 0.0)
    j.add_label(5, 2, 0.0)
    assert j.add_trial(5, "a", 0.0) == [Joined(5, "a", 1)]
    j.add_trial(5, "b", 0.0)  # already joined
    j.add_label(5, 7, 0.0)  # already joined
    j.add_trial(6, "c", 0.0)
    j.add_trial(6, "d", 0.0)
    assert j.add_label(6, 0, 0.0) == [Joined(6, "c", 0)]
    c = j.counters()
    assert c["duplicate_labels"] == 2 and c["duplicate_trials"] == 2 and c["joined"] == 2
    _conserved(j)


def test_eviction_when_full_drops_oldest():
    j = LabelJoin(capacity=2, max_age_s=100.0)
    for tid in range(3):
        j.add_trial(tid, tid, float(tid))
    assert j.waiting_trials == 2 and j.counters()["missing_labels"] == 1
    assert j.add_label(1, 0, 3.0) == [Joined(1, 1, 0)]  # 1 and 2 survived, 0 was evicted
    j.add_label(0, 0, 3.0)
    assert j.counters()["late_labels"] == 1
    for tid in (10, 11, 12):
        j.add_label(tid, 1, 4.0)
    assert j.waiting_labels == 2 and j.counters()["orphan_labels"] == 1
    assert j.add_trial(10, "x", 5.0) == []  # label 10 was the oldest, evicted
    assert j.add_trial(12, "y", 5.0) == [Joined(12, "y", 1)]
    _conserved(j)


def test_clock_going_backwards_is_held():
    j = LabelJoin(capacity=4, max_age_s=1.0)
    j.add_trial(1, None, 10.0)
    j.add_trial(2, None, 5.0)  # stamped 10.0, not 5.0
    j.expire(10.5)
    assert j.waiting_trials == 2
    j.expire(11.5)
    assert j.waiting_trials == 0


def test_bulk_forms_match_single_calls():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 30, 40)
    labels = rng.integers(0, 3, 40)
    a = LabelJoin(capacity=8, max_age_s=5.0)
    b = LabelJoin(capacity=8, max_age_s=5.0)
    out_a = a.add_trials(ids[:20], [f"p{i}" for i in range(20)], 1.0)
    out_a += a.add_labels(ids[10:], labels[10:], 2.0)
    out_b = []
    for i in range(20):
        out_b += b.add_trial(int(ids[i]), f"p{i}", 1.0)
    for i in range(10, 40):
        out_b += b.add_label(ids[i], labels[i], 2.0)
    assert out_a == out_b and len(out_a) > 0
    assert a.counters() == b.counters()
    assert a.add_trials([], [], 3.0) == [] and a.add_labels([], [], 3.0) == []


def test_rejects_bad_arguments():
    for kwargs in (
        {"capacity": 0, "max_age_s": 1.0},
        {"capacity": 1.5, "max_age_s": 1.0},
        {"capacity": 2, "max_age_s": 0.0},
        {"capacity": 2, "max_age_s": float("inf")},
    ):
        with pytest.raises(ParameterError):
            LabelJoin(**kwargs)
    j = LabelJoin(capacity=2, max_age_s=1.0)
    with pytest.raises(ParameterError):
        j.add_trials([1, 2], ["a"], 0.0)
    with pytest.raises(ParameterError):
        j.add_labels([1, 2], [0], 0.0)
    with pytest.raises(ParameterError):
        j.add_labels([1.5], [0], 0.0)
    with pytest.raises(ParameterError):
        j.add_label(1, 0.5, 0.0)
    with pytest.raises(ParameterError):
        j.add_trial(1, None, float("nan"))


# ----------------------------------------------------- conservation and bounds

ops = st.lists(
    st.tuples(
        st.sampled_from(["trial", "label", "expire", "trials", "labels"]),
        st.integers(0, 25),
        st.floats(0.0, 0.6),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, capacity=st.integers(1, 6), max_age_s=st.sampled_from([0.5, 2.0, 100.0]))
def test_conservation_and_bounds(ops, capacity, max_age_s):
    j = LabelJoin(capacity=capacity, max_age_s=max_age_s)
    now = 0.0
    joined_ids = []
    for kind, tid, dt in ops:
        now += dt
        if kind == "trial":
            out = j.add_trial(tid, ("payload", tid), now)
        elif kind == "label":
            out = j.add_label(tid, tid % 3, now)
        elif kind == "trials":
            out = j.add_trials(np.array([tid, tid + 1]), [("payload", tid), None], now)
        elif kind == "labels":
            out = j.add_labels(np.array([tid, tid + 1]), np.array([0, 1]), now)
        else:
            j.expire(now)
            out = []
        for pair in out:
            assert pair.payload is None or pair.payload == ("payload", pair.trial_id)
        joined_ids += [p.trial_id for p in out]
        assert j.waiting_trials <= capacity and j.waiting_labels <= capacity
        assert len(j._tables.missing) <= capacity and len(j._tables.labelled) <= capacity
        _conserved(j)
    assert len(joined_ids) == j.counters()["joined"]
    j.expire(now + max_age_s + 1.0)
    assert len(j) == 0
    _conserved(j)


def test_bounded_under_overload():
    cap = 100
    j = LabelJoin(capacity=cap, max_age_s=1e9)
    rng = np.random.default_rng(0)
    ids = np.arange(10 * cap * 10)
    j.add_trials(ids, [None] * ids.size, 0.0)
    assert j.waiting_trials == cap and len(j._tables.missing) == cap
    assert j.counters()["missing_labels"] == ids.size - cap
    out = j.add_labels(rng.permutation(ids)[: 10 * cap], np.zeros(10 * cap, np.int64), 1.0)
    assert all(p.trial_id >= ids.size - cap for p in out)  # only the newest trials waited
    assert j.waiting_trials == cap - len(out) and j.waiting_labels <= cap
    assert len(j._tables.missing) <= cap and len(j._tables.labelled) <= cap
    c = j.counters()
    assert c["late_labels"] > 0 and c["orphan_labels"] > 0
    assert c["late_labels"] + c["orphan_labels"] + c["joined"] + c["waiting_labels"] == 10 * cap
    _conserved(j)


# ------------------------------------- vectorised paths against a reference model


class _Reference:
    """The join rules entry by entry (the original implementation, minus storage)."""

    def __init__(self, capacity, max_age_s):
        from collections import OrderedDict

        self.c, self.age = capacity, max_age_s
        self.trials, self.labels = OrderedDict(), OrderedDict()
        self.missing, self.labelled = OrderedDict(), OrderedDict()
        self.now = -np.inf
        names = "trials_in labels_in joined missing_labels orphan_labels late_labels"
        self.n = dict.fromkeys([*names.split(), "duplicate_labels", "duplicate_trials"], 0)

    def _remember(self, ids, tid):
        ids[tid] = None
        ids.move_to_end(tid)
        if len(ids) > self.c:
            ids.popitem(last=False)

    def trials_(self, ids, payloads, now):
        self.now = max(self.now, now)
        out = []
        for tid, p in zip(ids, payloads, strict=True):
            self.n["trials_in"] += 1
            if tid in self.trials or tid in self.labelled or tid in self.missing:
                self.n["duplicate_trials"] += 1
            elif tid in self.labels:
                self.n["joined"] += 1
                self._remember(self.labelled, tid)
                out.append((tid, p, self.labels.pop(tid)[1]))
            else:
                if len(self.trials) >= self.c:
                    self.n["missing_labels"] += 1
                    self._remember(self.missing, self.trials.popitem(last=False)[0])
                self.trials[tid] = (self.now, p)
        return out

    def labels_(self, ids, labels, now):
        self.now = max(self.now, now)
        out = []
        for tid, lab in zip(ids, labels, strict=True):
            self.n["labels_in"] += 1
            if tid in self.trials:
                self.n["joined"] += 1
                self._remember(self.labelled, tid)
                out.append((tid, self.trials.pop(tid)[1], lab))
            elif tid in self.labels or tid in self.labelled:
                self.n["duplicate_labels"] += 1
            elif tid in self.missing:
                self.n["late_labels"] += 1
                del self.missing[tid]
                self._remember(self.labelled, tid)
            else:
                if len(self.labels) >= self.c:
                    self.labels.popitem(last=False)
                    self.n["orphan_labels"] += 1
                self.labels[tid] = (self.now, lab)
        return out

    def expire(self, now):
        self.now = max(self.now, now)
        limit = self.now - self.age
        while self.trials and next(iter(self.trials.values()))[0] < limit:
            self.n["missing_labels"] += 1
            self._remember(self.missing, self.trials.popitem(last=False)[0])
        while self.labels and next(iter(self.labels.values()))[0] < limit:
            self.labels.popitem(last=False)
            self.n["orphan_labels"] += 1

    def counters(self):
        return {**self.n, "waiting_trials": len(self.trials), "waiting_labels": len(self.labels)}


batch_ops = st.lists(
    st.tuples(
        st.sampled_from(["trials", "labels", "expire"]),
        st.lists(st.integers(0, 40), min_size=0, max_size=12),
        st.floats(0.0, 0.6),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=batch_ops, capacity=st.integers(1, 8), rows=st.booleans())
def test_bulk_paths_match_the_entry_by_entry_rules(ops, capacity, rows):
    j = LabelJoin(capacity=capacity, max_age_s=1.0)
    ref = _Reference(capacity, 1.0)
    now = 0.0
    for kind, ids, dt in ops:
        now += dt
        ids_arr = np.array(ids, dtype=np.int64)
        if kind == "trials":
            expected = ref.trials_(ids, [float(t) for t in ids], now)
            if rows:
                got = j.join_trials(ids_arr, ids_arr[:, None].astype(float) * [1.0, -1.0], now)
                assert np.all(got.rows[:, 0] == got.trial_ids) and np.all(got.rows[:, 1] <= 0)
                pairs = list(zip(got.trial_ids.tolist(), got.labels.tolist(), strict=True))
            else:
                got = j.add_trials(ids_arr, [float(t) for t in ids], now)
                assert all(p.payload == p.trial_id for p in got)
                pairs = [(p.trial_id, p.label) for p in got]
        elif kind == "labels":
            labels = [t % 3 for t in ids]
            expected = ref.labels_(ids, labels, now)
            if rows:
                got = j.join_labels(ids_arr, np.array(labels, dtype=np.int64), now)
                if len(got.labels):
                    assert np.all(got.rows[:, 0] == got.trial_ids)
                pairs = list(zip(got.trial_ids.tolist(), got.labels.tolist(), strict=True))
            else:
                got = j.add_labels(ids_arr, np.array(labels, dtype=np.int64), now)
                assert all(p.payload == p.trial_id for p in got)
                pairs = [(p.trial_id, p.label) for p in got]
        else:
            j.expire(now)
            ref.expire(now)
            expected, pairs = [], []
        assert pairs == [(t, lab) for t, _, lab in expected]
        assert j.counters() == ref.counters()
        assert list(j._tables.missing._ids) == list(ref.missing)
        assert list(j._tables.labelled._ids) == list(ref.labelled)
        _conserved(j)


def test_rows_and_objects_do_not_mix():
    j = LabelJoin(capacity=4, max_age_s=1.0)
    j.join_trials([1], np.zeros((1, 3)), 0.0)
    with pytest.raises(ParameterError):
        j.add_trial(2, "x", 0.0)
    with pytest.raises(ParameterError):
        j.join_trials([3], np.zeros((1, 4)), 0.0)


def test_drop_labels_of_trials_that_will_not_come():
    j = LabelJoin(capacity=8, max_age_s=10.0)
    j.join_labels(np.arange(5), np.zeros(5, np.int64), 0.0)
    assert j.drop_labels(np.array([1, 3, 7])) == 2
    c = j.counters()
    assert c["orphan_labels"] == 2 and c["waiting_labels"] == 3
    assert j.drop_labels(np.array([], dtype=np.int64)) == 0
    got = j.join_trials(np.arange(5), np.ones((5, 2)), 1.0)
    assert got.trial_ids.tolist() == [0, 2, 4]
    _conserved(j)


def test_the_label_side_may_hold_more_than_the_trial_side():
    join = LabelJoin(capacity=10, max_age_s=60.0, label_capacity=25)
    ids = np.arange(25)
    join.add_labels(ids, ids % 3, 0.0)
    assert join.waiting_labels == 25 and join.counters()["orphan_labels"] == 0
    join.add_labels(np.array([25]), np.array([1]), 0.0)  # full: the oldest goes
    assert join.waiting_labels == 25 and join.counters()["orphan_labels"] == 1
    rows = np.zeros((12, 3))
    joined = join.join_trials(np.arange(1, 13), rows, 1.0)
    assert list(joined.trial_ids) == list(range(1, 13))  # more than `capacity` at once
    with pytest.raises(ParameterError, match="label_capacity must be >= 1"):
        LabelJoin(capacity=10, max_age_s=1.0, label_capacity=0)


def test_a_backlog_s_labels_are_kept_for_every_trial_the_queue_may_hold():
    from delgrad.runtime.service._limits import join_capacity, label_capacity, pending_bound
    from delgrad.runtime.service._run_config import run_config_from_dict

    config = run_config_from_dict({})
    for n_inputs in (4, 784, 2312):
        pending = pending_bound(config.ingest, n_inputs) + config.inference.max_batch
        assert label_capacity(config, n_inputs) == max(config.join.capacity, pending)
    # at 784 inputs the queue's byte bound lets it hold more trials than the join
    assert pending_bound(config.ingest, 784) > join_capacity(config.join, 784)
