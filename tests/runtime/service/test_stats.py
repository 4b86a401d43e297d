"""Tests of the bounded live statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad.errors import ParameterError
from delgrad.runtime.service._stats import (
    Counters,
    LatencyTracker,
    RateMeter,
    RingBuffer,
    SlidingAccuracy,
)

# ----------------------------------------------------------------- RingBuffer


@settings(max_examples=100, deadline=None)
@given(
    capacity=st.integers(1, 12),
    chunks=st.lists(st.lists(st.integers(-100, 100), max_size=30), max_size=10),
)
def test_ring_buffer_keeps_the_last_values(capacity, chunks):
    rb = RingBuffer(capacity)
    seen: list[float] = []
    for chunk in chunks:
        rb.extend(np.array(chunk, dtype=float))
        seen += chunk
        expect = seen[-capacity:]
        assert len(rb) == len(expect) <= capacity
        np.testing.assert_array_equal(rb.values(), expect)
        assert rb.total == len(seen)
        if expect:
            assert rb.mean() == pytest.approx(np.mean(expect))
            np.testing.assert_allclose(
                rb.quantiles([0.0, 0.5, 1.0]), np.quantile(expect, [0.0, 0.5, 1.0])
            )
        else:
            assert rb.mean() is None and rb.quantiles([0.5]) is None
    assert rb._buf.size == capacity


def test_ring_buffer_details():
    rb = RingBuffer(3, dtype=np.int64)
    rb.extend(5)  # a scalar
    rb.extend([1, 2, 3, 4])
    np.testing.assert_array_equal(rb.values(), [2, 3, 4])
    assert rb.values().dtype == np.int64
    v = rb.values()
    v[0] = 99  # a copy
    assert rb.values()[0] == 2
    with pytest.raises(ParameterError):
        rb.quantiles([1.5])
    rb.clear()
    assert len(rb) == 0 and rb.mean() is None and rb.total == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ParameterError):
            RingBuffer(bad)


# ------------------------------------------------------------ SlidingAccuracy


def test_sliding_accuracy_window():
    acc = SlidingAccuracy(4)
    assert acc.accuracy is None and acc.loss is None and acc.count == 0
    acc.add(np.array([True, False]), np.array([1.0, 3.0]))
    assert acc.accuracy == 0.5 and acc.loss == 2.0 and acc.count == 2
    acc.add(np.array([True, True, True, True]), np.array([0.5, 0.5, np.inf, 0.5]))
    assert acc.accuracy == 1.0 and acc.count == 4 and acc.total == 6
    assert acc.correct_total == 5  # every trial ever added, not only the window's
    assert acc.loss == 0.5  # the non-finite loss is left out of the mean
    with pytest.raises(ParameterError):
        acc.add(np.array([1, 0]), np.array([0.0, 0.0]))
    with pytest.raises(ParameterError):
        acc.add(np.array([True]), np.array([0.0, 0.0]))


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(1, 20), n=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_sliding_accuracy_matches_tail(capacity, n, seed):
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < 0.6
    loss = rng.uniform(0, 2, n)
    acc = SlidingAccuracy(capacity)
    for a in range(0, n, 7):
        acc.add(correct[a : a + 7], loss[a : a + 7])
    if n:
        assert acc.accuracy == pytest.approx(correct[-capacity:].mean())
        assert acc.loss == pytest.approx(loss[-capacity:].mean())
    assert acc.count == min(n, capacity)


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(1, 30), n=st.integers(0, 120), seed=st.integers(0, 2**32 - 1))
def test_accuracy_per_class_is_the_windows_tail_per_class(capacity, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    correct = rng.random(n) < np.array([0.9, 0.5, 0.1])[labels]
    acc = SlidingAccuracy(capacity)
    for a in range(0, n, 7):
        acc.add(correct[a : a + 7], np.zeros(len(correct[a : a + 7])), labels[a : a + 7])
    tail_labels, tail_correct = labels[-capacity:] if n else labels, correct[-capacity:]
    for k, value in enumerate(acc.per_class(4)):
        mine = tail_correct[tail_labels == k] if n else tail_correct[:0]
        assert value == (pytest.approx(mine.mean()) if mine.size else None)


def test_accuracy_per_class_without_labels_and_bad_lengths():
    acc = SlidingAccuracy(4)
    acc.add(np.array([True, False]), np.zeros(2))  # no labels: in no class
    assert acc.per_class(2) == [None, None] and acc.accuracy == 0.5
    with pytest.raises(ParameterError, match="labels"):
        acc.add(np.array([True]), np.zeros(1), np.array([0, 1]))


# ------------------------------------------------------------- LatencyTracker


def test_latency_percentiles_in_ms():
    lt = LatencyTracker(1000)
    assert lt.percentiles() == {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    lt.add(np.arange(1, 101) * 1e-3)  # 1 .. 100 ms
    lt.add([np.nan, np.inf])
    p = lt.percentiles()
    assert p["p50_ms"] == pytest.approx(50.5)
    assert p["p90_ms"] == pytest.approx(90.1)
    assert p["p99_ms"] == pytest.approx(99.01)
    assert p["max_ms"] == pytest.approx(100.0)
    assert lt.invalid == 2 and len(lt) == 100


def test_latency_tracker_is_bounded():
    lt = LatencyTracker(10)
    lt.add(np.full(100, 5.0))
    lt.add(np.full(10, 0.001))
    assert len(lt) == 10 and lt.percentiles()["max_ms"] == pytest.approx(1.0)


# ------------------------------------------------------------------ RateMeter


def test_rate_meter_steady_rate():
    rm = RateMeter(1.0, n_buckets=10)
    assert rm.rate(0.0) is None
    t = 0.0
    for _ in range(500):  # 1000 events/s, one sample each 10 ms
        t += 0.01
        rm.add(t, 10)
    assert rm.rate(t) == pytest.approx(1000.0, rel=0.1)
    assert len(rm._buckets) <= 10
    # Nothing for longer than the window: the rate falls to zero.
    assert rm.rate(t + 5.0) == 0.0
    assert len(rm._buckets) == 0


def test_rate_meter_start_up_and_clock():
    rm = RateMeter(10.0, n_buckets=5)
    rm.add(100.0, 50)
    assert rm.rate(100.0) is None  # no time spanned yet
    assert rm.rate(101.0) == pytest.approx(50.0)  # only the second since the first sample
    rm.add(99.0, 50)  # clock going back: held at 101
    assert rm.rate(102.0) == pytest.approx(50.0)
    with pytest.raises(ParameterError):
        rm.add(103.0, -1)
    with pytest.raises(ParameterError):
        rm.rate(float("nan"))
    with pytest.raises(ParameterError):
        RateMeter(0.0)


@settings(max_examples=50, deadline=None)
@given(
    samples=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(0, 1000)), max_size=60),
    window=st.sampled_from([0.5, 1.0, 4.0]),
)
def test_rate_meter_bounded_and_counts_only_recent(samples, window):
    rm = RateMeter(window, n_buckets=4)
    t = 0.0
    times = []
    for dt, n in samples:
        t += dt
        times.append(t)
        rm.add(t, n)
        assert len(rm._buckets) <= 4
    now = t + 0.25
    r = rm.rate(now)
    if not samples:
        assert r is None
        return
    # Reference: every sample whose bucket is one of the last 4 at `now`, over the
    # time from the oldest such bucket's start (or the first sample) to now.
    bucket = window / 4
    b_now = math.floor(now / bucket)
    recent = sum(
        n for ts, (_, n) in zip(times, samples, strict=True) if math.floor(ts / bucket) > b_now - 4
    )
    start = max((b_now - 3) * bucket, times[0])
    assert r == pytest.approx(recent / (now - start))


# ------------------------------------------------------------------- Counters


def test_counters():
    c = Counters()
    c.inc("b")
    c.inc("a", 5)
    c.inc("b", np.int64(2))
    assert c.as_dict() == {"a": 5, "b": 3}
    assert list(c.as_dict()) == ["a", "b"]
    assert c["missing"] == 0
    with pytest.raises(ParameterError):
        c.inc("a", -1)
    with pytest.raises(ParameterError):
        c.inc("a", 1.5)


def test_counters_merge_takes_cumulative_snapshots():
    c = Counters()
    c.merge("win.", {"events_in": 10, "late_events": 0})
    c.merge("win.", {"events_in": 10, "late_events": 0})  # same snapshot: no change
    assert c.as_dict() == {"win.events_in": 10, "win.late_events": 0}
    c.merge("win.", {"events_in": 25, "late_events": 1})
    assert c["win.events_in"] == 25
    c.merge("win.", {"events_in": 3})  # the component restarted: never decreases
    assert c["win.events_in"] == 25
    with pytest.raises(ParameterError):
        c.merge("x.", {"n": -1})


def test_counters_bounded_names():
    c = Counters(max_names=3)
    for name in "abc":
        c.inc(name)
    c.inc("a")  # existing name is fine
    with pytest.raises(ParameterError):
        c.inc("d")
    assert len(c) == 3
