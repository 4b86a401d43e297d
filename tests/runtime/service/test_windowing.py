"""Tests of TrialWindower: cutting an event stream into trial windows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad.errors import ParameterError
from delgrad.runtime.service._windowing import TrialWindower, WindowSpec

# --------------------------------------------------------------- slow reference


class SlowWindower:
    """Event-by-event reference: one Python dict of open windows, closes after each event."""

    def __init__(self, n, length, period, origin=0.0, emit_empty=False, max_empty_run=1000):
        self.n, self.length, self.period, self.origin = n, length, period, origin
        self.emit_empty, self.max_empty_run = emit_empty, max_empty_run
        self.open: dict[int, list[float]] = {}
        self.next = 0
        self.watermark = -math.inf
        self.last_occupied = -1
        self.c = dict.fromkeys(
            [
                "events_in",
                "ignored_events",
                "late_events",
                "unwindowed_events",
                "windows_out",
                "empty_windows",
                "empty_windows_skipped",
            ],
            0,
        )

    def start(self, k):
        return self.origin + np.int64(k) * self.period

    def containing(self, t):
        guess = int((t - self.origin) // self.period)
        span = int(self.length // self.period) + 3
        return [
            k
            for k in range(guess - span, guess + 3)
            if k >= 0 and self.start(k) <= t < self.start(k) + self.length
        ]

    def _emit(self, k, out):
        row = self.open.pop(k, None)
        if row is not None:
            self.last_occupied = k
            out.append((k, row))
            self.c["windows_out"] += 1
            return
        self.c["empty_windows"] += 1
        if self.emit_empty and k - self.last_occupied <= self.max_empty_run:
            out.append((k, [math.inf] * self.n))
            self.c["windows_out"] += 1
        elif self.emit_empty:
            self.c["empty_windows_skipped"] += 1

    def push(self, channels, times):
        self.c["events_in"] += len(times)
        events = [
            (float(t), int(c))
            for c, t in zip(channels, times, strict=True)
            if 0 <= c < self.n and math.isfinite(t)
        ]
        self.c["ignored_events"] += len(times) - len(events)
        events.sort(key=lambda e: e[0])  # stable
        out = []
        for t, c in events:
            ks = self.containing(t)
            if not ks:
                self.c["unwindowed_events"] += 1
            elif all(k < self.next for k in ks):
                self.c["late_events"] += 1
            for k in ks:
                if k >= self.next:
                    row = self.open.setdefault(k, [math.inf] * self.n)
                    row[c] = min(row[c], t - float(self.start(k)))
            self.watermark = max(self.watermark, t)
            while self.start(self.next) + self.length <= self.watermark:
                self._emit(self.next, out)
                self.next += 1
        return out

    def flush(self):
        out = []
        while self.start(self.next) <= self.watermark:
            self._emit(self.next, out)
            self.next += 1
        return out


def _as_pairs(res):
    assert res.window_ids.dtype == np.int64
    assert res.t_in.shape == (res.window_ids.size, res.t_in.shape[1])
    return [(int(k), list(row)) for k, row in zip(res.window_ids, res.t_in, strict=True)]


def _check_starts(w, res):
    np.testing.assert_array_equal(res.starts, w.spec.origin + res.window_ids * w.spec.period)


# ------------------------------------------------------------------ examples


def test_overlapping_windows_example():
    w = TrialWindower(3, length=2.0, period=1.0)
    res = w.push([0, 1, 2, 0], [0.5, 1.5, 2.5, 3.0])
    # The event at 3.0 ends window 1 ([1, 3)) exactly: half-open, so it is complete.
    assert _as_pairs(res) == [(0, [0.5, 1.5, math.inf]), (1, [math.inf, 0.5, 1.5])]
    _check_starts(w, res)
    res = w.flush()
    assert _as_pairs(res) == [(2, [1.0, math.inf, 0.5]), (3, [0.0, math.inf, math.inf])]
    assert w.counters()["windows_out"] == 4


def test_boundaries_are_half_open():
    w = TrialWindower(2, length=1.0, period=1.0, origin=10.0)
    # 10.0 opens window 0; 11.0 is window 1's start and window 0's (exclusive) end.
    res = w.push([0, 1], [10.0, 11.0])
    assert _as_pairs(res) == [(0, [0.0, math.inf])]
    res = w.push([0], [11.999])
    assert res.window_ids.size == 0  # window 1 not complete until an event at >= 12
    res = w.push([1], [12.0])
    assert _as_pairs(res) == [(1, [pytest.approx(0.999), 0.0])]


def test_gapped_windows_count_unwindowed_events():
    w = TrialWindower(1, length=1.0, period=3.0)
    res = w.push([0, 0, 0, 0], [0.5, 1.0, 2.0, 3.25])
    assert _as_pairs(res) == [(0, [0.5])]
    c = w.counters()
    assert c["unwindowed_events"] == 2 and c["late_events"] == 0
    assert _as_pairs(w.flush()) == [(1, [0.25])]


def test_events_before_origin_and_bad_events():
    w = TrialWindower(2, length=1.0, period=1.0, origin=5.0)
    w.push([0, 1, 2, -1, 0, 0], [4.0, 5.5, 5.5, 5.5, np.nan, np.inf])
    c = w.counters()
    assert c["events_in"] == 6
    assert c["unwindowed_events"] == 1
    assert c["ignored_events"] == 4
    assert _as_pairs(w.flush()) == [(0, [math.inf, 0.5])]


def test_out_of_order_batch_is_sorted_and_late_events_are_dropped():
    w = TrialWindower(1, length=1.0, period=1.0)
    res = w.push([0, 0], [2.5, 0.5])  # sorted first: 0.5 lands in window 0
    assert _as_pairs(res) == [(0, [0.5])]
    res = w.push([0, 0], [0.7, 2.1])  # 0.7 belongs to the emitted window 0: late
    assert res.window_ids.size == 0
    assert w.counters()["late_events"] == 1
    assert _as_pairs(w.flush()) == [(2, [pytest.approx(0.1)])]
    assert w.counters()["empty_windows"] == 1  # window 1


def test_older_event_still_lands_in_open_window():
    w = TrialWindower(2, length=4.0, period=4.0)
    w.push([0], [3.0])
    w.push([1], [1.0])  # older than the watermark but window 0 is still open
    assert _as_pairs(w.flush()) == [(0, [3.0, 1.0])]
    assert w.counters()["late_events"] == 0


def test_all_events_in_one_channel():
    w = TrialWindower(4, length=1.0, period=0.5)
    first = w.push(np.full(5, 2), [0.9, 0.2, 0.6, 0.1, 1.2])
    assert [k for k, _ in _as_pairs(first)] == [0]  # [0, 1) ends at 1.0 <= 1.2
    res = w.flush()
    assert [k for k, _ in _as_pairs(res)] == [1, 2]
    np.testing.assert_allclose(first.t_in[:, 2], [0.1])
    np.testing.assert_allclose(res.t_in[:, 2], [0.1, 0.2])
    assert np.all(np.isinf(res.t_in[:, [0, 1, 3]]))


def test_empty_push_and_empty_flush():
    w = TrialWindower(2, length=1.0, period=1.0)
    assert w.push([], []).t_in.shape == (0, 2)
    assert w.flush().window_ids.size == 0
    assert w.counters()["events_in"] == 0


def test_flush_then_continue():
    w = TrialWindower(1, length=2.0, period=1.0)
    w.push([0], [0.5])
    assert [k for k, _ in _as_pairs(w.flush())] == [0]
    res = w.push([0, 0], [1.2, 3.5])  # 1.2 is in window 0 (emitted) and 1 (open)
    assert _as_pairs(res) == [(1, [pytest.approx(0.2)])]
    w.push([0], [0.9])  # only in window 0, flushed: late
    assert w.counters()["late_events"] == 1


def test_huge_gap_is_skipped_in_constant_time():
    w = TrialWindower(2, length=1.0, period=1.0)
    w.push([0], [0.5])
    res = w.push([1, 0], [1e12 + 0.25, 1e12 + 2.0])
    assert _as_pairs(res) == [(0, [0.5, math.inf]), (10**12, [math.inf, 0.25])]
    # windows 1 .. 10**12 - 1 and 10**12 + 1 ([1e12 + 1, 1e12 + 2) ends at the watermark)
    assert w.counters()["empty_windows"] == 10**12
    assert w.open_windows == 1


def test_huge_gap_with_emit_empty_is_bounded():
    w = TrialWindower(1, length=1.0, period=1.0, emit_empty=True, max_empty_run=5)
    w.push([0], [0.5])
    res = w.push([0], [1e9 + 0.5])
    # window 0 (occupied), then 5 empty windows; the rest of the run is skipped.
    np.testing.assert_array_equal(res.window_ids, np.arange(6))
    assert np.all(np.isinf(res.t_in[1:]))
    c = w.counters()
    assert c["empty_windows"] == 10**9 - 1
    assert c["empty_windows_skipped"] == 10**9 - 6


def test_emit_empty_small_gap():
    w = TrialWindower(1, length=1.0, period=1.0, emit_empty=True)
    res = w.push([0, 0], [0.5, 3.5])
    np.testing.assert_array_equal(res.window_ids, [0, 1, 2])
    np.testing.assert_array_equal(res.t_in[:, 0], [0.5, np.inf, np.inf])


def test_rejects_bad_settings_and_arguments():
    for kwargs in (
        {"length": 0.0, "period": 1.0},
        {"length": 1.0, "period": -1.0},
        {"length": math.inf, "period": 1.0},
        {"length": 1.0, "period": 1.0, "origin": math.nan},
        {"length": 1e6, "period": 1e-3},
        {"length": 1.0, "period": 1.0, "max_empty_run": -1},
    ):
        with pytest.raises(ParameterError):
            TrialWindower(2, **kwargs)
    with pytest.raises(ParameterError):
        TrialWindower(0, length=1.0, period=1.0)
    w = TrialWindower(2, length=1.0, period=1.0)
    with pytest.raises(ParameterError):
        w.push([0, 1], [0.0])
    with pytest.raises(ParameterError):
        w.push([0.5], [0.0])


# ------------------------------------------------------- window index helpers


@settings(max_examples=80, deadline=None)
@given(
    length=st.sampled_from([0.1, 0.3, 1.0, 2.5, 7.0]),
    period=st.sampled_from([0.1, 0.2, 0.7, 1.0, 3.0]),
    origin=st.sampled_from([0.0, -1.3, 1e6]),
    t=st.floats(-50, 50),
    k0=st.integers(-40, 40),
)
def test_window_index_helpers_match_definition(length, period, origin, t, k0):
    spec = WindowSpec(length, period, origin)
    for x in (origin + t, float(spec.start(k0)), float(spec.end(k0))):
        k = int(spec.last_started(x))
        assert spec.start(k) <= x < spec.start(k + 1)
        k = int(spec.first_unfinished(x))
        assert spec.end(k - 1) <= x < spec.end(k)


# ------------------------------------------------- properties vs the reference


def _stream(draw_rng, n_events, n_inputs, grid, t_max, disorder):
    times = draw_rng.integers(0, int(t_max / grid) + 1, n_events) * grid
    times = np.sort(times.astype(np.float64))
    if disorder:
        # Swap some neighbours across pushes to create out-of-order (and late) events.
        jitter = draw_rng.uniform(-disorder, disorder, n_events)
        times = np.maximum(times + jitter, -0.5)
    channels = draw_rng.integers(-1, n_inputs + 1, n_events)
    return channels, times


def _split(rng, n, n_cuts):
    cuts = np.sort(rng.integers(0, n + 1, n_cuts))
    return [0, *cuts.tolist(), n]


geometry = st.sampled_from(
    [(1.0, 1.0), (2.0, 1.0), (1.0, 0.5), (1.0, 1.5), (0.75, 0.25), (3.0, 1.25), (0.3, 0.1)]
)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    geom=geometry,
    origin=st.sampled_from([0.0, 0.5, -2.0]),
    n_inputs=st.integers(1, 4),
    n_events=st.integers(0, 60),
    n_cuts=st.integers(0, 6),
    disorder=st.sampled_from([0.0, 0.0, 0.6, 3.0]),
    emit_empty=st.booleans(),
    max_empty_run=st.integers(0, 3),
)
def test_matches_slow_reference(
    seed, geom, origin, n_inputs, n_events, n_cuts, disorder, emit_empty, max_empty_run
):
    rng = np.random.default_rng(seed)
    length, period = geom
    ch, t = _stream(rng, n_events, n_inputs, 0.25, 15.0, disorder)
    kw = {"emit_empty": emit_empty, "max_empty_run": max_empty_run}
    w = TrialWindower(n_inputs, length=length, period=period, origin=origin, **kw)
    ref = SlowWindower(n_inputs, length, period, origin, **kw)
    cuts = _split(rng, n_events, n_cuts)
    for a, b in itertools.pairwise(cuts):
        res = w.push(ch[a:b], t[a:b])
        _check_starts(w, res)
        assert _as_pairs(res) == ref.push(ch[a:b], t[a:b])
        assert w.open_windows <= w.max_open_windows
    assert _as_pairs(w.flush()) == ref.flush()
    assert w.counters() == ref.c


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    geom=geometry,
    n_events=st.integers(0, 80),
    emit_empty=st.booleans(),
)
def test_result_independent_of_push_split(seed, geom, n_events, emit_empty):
    rng = np.random.default_rng(seed)
    length, period = geom
    ch, t = _stream(rng, n_events, 3, 0.05, 20.0, 0.0)
    t = t + rng.uniform(0, 0.01, n_events) * (rng.random(n_events) < 0.5)
    t = np.sort(t)
    results = []
    for n_cuts in (0, 3, n_events):
        w = TrialWindower(3, length=length, period=period, emit_empty=emit_empty, max_empty_run=2)
        cuts = _split(rng, n_events, n_cuts) if n_cuts < n_events else list(range(n_events + 1))
        pairs = []
        for a, b in itertools.pairwise(cuts):
            pairs += _as_pairs(w.push(ch[a:b], t[a:b]))
        pairs += _as_pairs(w.flush())
        assert w.counters()["late_events"] == 0  # time-ordered: nothing is late
        results.append((pairs, w.counters()))
    assert results[0] == results[1] == results[2]


# --------------------------------------------------------------------- bounds


@pytest.mark.parametrize("geom", [(1.0, 1.0), (3.0, 1.0), (1.0, 0.3), (0.5, 2.0)])
def test_state_stays_bounded_under_overload(geom):
    length, period = geom
    rng = np.random.default_rng(7)
    w = TrialWindower(8, length=length, period=period)
    bound = math.ceil(length / period) + 1
    assert w.max_open_windows == bound
    total_events = 0
    t0 = 0.0
    # 10x more events per window than inputs, in bursts spanning several windows,
    # with jittered (out-of-order) pushes and bad channels.
    for _ in range(200):
        n = 10 * 8 * 3
        t = t0 + rng.uniform(-2 * length - period, 3 * period, n)
        ch = rng.integers(-2, 10, n)
        res = w.push(ch, t)
        total_events += n
        t0 += 3 * period
        assert w.open_windows <= bound
        assert w._ring.shape == (bound, 8)
        fin = res.t_in[np.isfinite(res.t_in)]
        assert np.all(fin >= 0) and np.all(fin < length)
    c = w.counters()
    assert c["events_in"] == total_events
    assert c["ignored_events"] > 0 and c["late_events"] > 0
