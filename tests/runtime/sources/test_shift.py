"""The shift transforms (issue 18: a world that shifts), each on a small stream."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.runtime import encode_yinyang
from delgrad.runtime.sources import (
    LabelSpans,
    Shift,
    ShiftRandom,
    TrialLayout,
    choose_trials,
    cut_windows,
    parse_shift,
    shift_events,
    shift_trials,
)

PLAIN = TrialLayout(8, span=2.0, span_s=2e-3)  # 8 channels, trials of 2 ms


def _trials(n=200, per=6, n_channels=8, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.arange(0, n * per + 1, per, dtype=np.int64)
    channels = rng.integers(0, n_channels, n * per)
    times = np.sort(rng.uniform(0.1, 2.0, (n, per)), axis=1).ravel()
    return offsets, channels, times


def _within(count, n, p, sigmas=5.0):
    """``count`` is within ``sigmas`` binomial standard deviations of ``n * p``."""
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


# ---- trial streams: plain channels (trial files) -----------------------------------


def test_translate_moves_channels_and_drops_those_past_the_last():
    off, ch, t = _trials()
    got = shift_trials(off, ch, t, Shift(dx=2), ShiftRandom(1), layout=PLAIN)
    inside = ch + 2 < 8
    np.testing.assert_array_equal(got.channels, ch[inside] + 2)
    np.testing.assert_array_equal(got.times, t[inside])
    per_trial = np.add.reduceat(inside, off[:-1])
    np.testing.assert_array_equal(np.diff(got.offsets), per_trial)
    back = shift_trials(off, ch, t, Shift(dx=-3), ShiftRandom(1), layout=PLAIN)
    np.testing.assert_array_equal(back.channels, ch[ch >= 3] - 3)


def test_plain_channels_have_no_rows_and_no_polarity():
    off, ch, t = _trials(n=2)
    for shift, match in [
        (Shift(swap_polarity=True), "no polarity"),
        (Shift(dx=1, dy=1), "no rows"),
        (Shift(dx=8), "off the input"),
    ]:
        with pytest.raises(ConfigError, match=match):
            shift_trials(off, ch, t, shift, ShiftRandom(0), layout=PLAIN)


def test_rate_keeps_a_binomial_share_in_order():
    off, ch, t = _trials(n=1000)
    got = shift_trials(off, ch, t, Shift(rate=0.3), ShiftRandom(2), layout=PLAIN)
    assert _within(got.channels.size, ch.size, 0.3)
    # the kept events are a subsequence of each trial's events
    for i in range(0, 1000, 97):
        a, b = got.offsets[i], got.offsets[i + 1]
        kept = list(zip(got.channels[a:b], got.times[a:b], strict=True))
        src = list(zip(ch[off[i] : off[i + 1]], t[off[i] : off[i + 1]], strict=True))
        it = iter(src)
        assert all(any(e == s for s in it) for e in kept)


def test_noise_adds_poisson_events_per_channel_and_second():
    off, ch, t = _trials(n=500)
    # 100 events/s per channel over 2 ms trials on 8 channels: 1.6 per trial
    got = shift_trials(off, ch, t, Shift(noise_hz=100.0), ShiftRandom(3), layout=PLAIN)
    extra = got.channels.size - ch.size
    assert abs(extra - 500 * 1.6) <= 5 * np.sqrt(500 * 1.6)
    counts = np.diff(got.offsets) - 6
    assert counts.min() >= 0 and counts.max() > 0
    for i in range(500):  # a trial's own events first, then its noise
        a = got.offsets[i]
        np.testing.assert_array_equal(got.channels[a : a + 6], ch[off[i] : off[i + 1]])
        noise_t = got.times[a + 6 : got.offsets[i + 1]]
        assert ((noise_t >= 0) & (noise_t < 2.0)).all()
    assert got.channels.min() >= 0 and got.channels.max() <= 7


def test_the_same_stream_in_other_pieces_shifts_the_same_way():
    off, ch, t = _trials(n=300)
    shift = Shift(rate=0.5, noise_hz=300.0)
    whole = shift_trials(off, ch, t, shift, ShiftRandom(7), layout=PLAIN)
    rng = ShiftRandom(7)
    parts = [
        shift_trials(off[a : b + 1] - off[a], ch[off[a] : off[b]], t[off[a] : off[b]], shift,
                     rng, layout=PLAIN)
        for a, b in [(0, 13), (13, 200), (200, 300)]
    ]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate([p.channels for p in parts]), whole.channels)
    np.testing.assert_array_equal(np.concatenate([p.times for p in parts]), whole.times)
    other = shift_trials(off, ch, t, shift, ShiftRandom(8), layout=PLAIN)
    assert other.channels.size != whole.channels.size or (other.channels != whole.channels).any()


# ---- trial streams: coordinate channels (the Yin-Yang generator) --------------------


def _yinyang(points, repeat=2):
    """Trials of the Yin-Yang encoding of ``points`` (n, 2), channels as YinYangSource."""
    x, y = points[:, 0], points[:, 1]
    times = np.repeat(encode_yinyang(np.stack([x, y, 1 - x, 1 - y], axis=1)), repeat, axis=1)
    n, k = times.shape
    layout = TrialLayout(
        k,
        span=2.0,
        span_s=12e-6,
        coordinate=tuple(np.repeat(np.arange(4), repeat).tolist()),
        t_range=(0.15, 2.0),
    )
    offsets = np.arange(0, n * k + 1, k, dtype=np.int64)
    return offsets, np.tile(np.arange(k), n), times.ravel(), layout


def test_yinyang_translation_moves_the_input_point_and_clips_at_the_edge():
    points = np.array([[0.2, 0.5], [0.9, 0.05], [0.5, 0.5]])
    off, ch, t, layout = _yinyang(points)
    got = shift_trials(off, ch, t, Shift(dx=5, dy=-10), ShiftRandom(0), layout=layout)
    moved = np.clip(points + np.array([0.05, -0.10]), 0.0, 1.0)  # a step is 0.01 of the square
    _, _, want, _ = _yinyang(moved)
    np.testing.assert_allclose(got.times, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.channels, ch)


def test_yinyang_polarity_swap_reflects_the_point_through_the_centre():
    points = np.random.default_rng(0).uniform(0, 1, (50, 2))
    off, ch, t, layout = _yinyang(points, repeat=1)
    got = shift_trials(off, ch, t, Shift(swap_polarity=True), ShiftRandom(0), layout=layout)
    _, _, want, _ = _yinyang(1.0 - points, repeat=1)
    np.testing.assert_allclose(got.times, want, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="at most 100 steps"):
        shift_trials(off, ch, t, Shift(dx=101), ShiftRandom(0), layout=layout)


# ---- which trials are sent: prior and late classes ----------------------------------


def test_a_prior_sets_class_frequencies_after_the_point():
    labels = np.random.default_rng(0).integers(0, 3, 30_000)
    keep = choose_trials(labels, Shift(prior=(1.0, 0.5, 0.1)), ShiftRandom(1), after=True)
    n = np.bincount(labels, minlength=3)
    kept = np.bincount(labels[keep], minlength=3)
    assert kept[0] == n[0]
    assert _within(kept[1], n[1], 0.5) and _within(kept[2], n[2], 0.1)
    # before the point a prior changes nothing
    assert choose_trials(labels, Shift(prior=(1.0, 0.5, 0.1)), ShiftRandom(1), after=False).all()
    # unlabelled trials are always sent
    assert choose_trials(np.full(10, -1), Shift(prior=(0.0, 1.0)), ShiftRandom(1), after=True).all()


def test_a_late_class_is_absent_before_the_point_and_present_after_it():
    labels = np.random.default_rng(0).integers(0, 4, 1000)
    shift = Shift(late_classes=(2, 3))
    before = choose_trials(labels, shift, ShiftRandom(0), after=False)
    after = choose_trials(labels, shift, ShiftRandom(0), after=True)
    assert set(labels[before]) == {0, 1} and before.sum() == np.isin(labels, (0, 1)).sum()
    assert after.all()


def test_classes_are_checked_against_the_stream():
    Shift(prior=(1.0, 1.0, 2.0), late_classes=(1,)).check_classes(3, "s")
    for shift, n, match in [
        (Shift(prior=(1.0, 1.0)), 3, "prior has 2 weights; s has 3 classes"),
        (Shift(late_classes=(3,)), 3, "late_class=3: s has classes 0..2"),
        (Shift(late_classes=(0, 1)), 2, "every class"),
        (Shift(late_classes=(0,)), None, "need labels; s has none"),
    ]:
        with pytest.raises(ConfigError, match=match):
            shift.check_classes(n, "s")


# ---- recordings ----------------------------------------------------------------------


def _events(n=5000, size=34, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1e6, n))
    x, y = rng.integers(0, size, n), rng.integers(0, size, n)
    return t, x, y, rng.integers(0, 2, n).astype(np.int8)


def test_recording_events_translate_and_swap_polarity():
    t, x, y, p = _events()
    kw = {"width": 34, "height": 34, "span_us": (0.0, 1e6)}
    shift = Shift(dx=2, dy=-1, swap_polarity=True)
    t2, x2, y2, p2 = shift_events(t, x, y, p, shift, ShiftRandom(0), **kw)
    inside = (x + 2 < 34) & (y - 1 >= 0)
    np.testing.assert_array_equal(t2, t[inside])
    np.testing.assert_array_equal(x2, x[inside] + 2)
    np.testing.assert_array_equal(y2, y[inside] - 1)
    np.testing.assert_array_equal(p2, 1 - p[inside])


def test_recording_rate_thins_and_noise_is_per_pixel_and_second():
    t, x, y, p = _events(n=20_000)
    kw = {"width": 34, "height": 34, "span_us": (2e5, 7e5)}
    t2, *_ = shift_events(t, x, y, p, Shift(rate=0.25), ShiftRandom(1), **kw)
    assert _within(t2.size, t.size, 0.25)
    assert np.isin(t2, t).all()
    # 10 events/s per pixel, 34 x 34 pixels, 0.5 s: 5,780 expected
    t3, x3, y3, p3 = shift_events(t, x, y, p, Shift(noise_hz=10.0), ShiftRandom(1), **kw)
    extra = np.setdiff1d(t3, t)
    assert abs(extra.size - 5780) <= 5 * np.sqrt(5780)
    assert extra.min() >= 2e5 and extra.max() < 7e5
    assert (np.diff(t3) >= 0).all() and x3.max() <= 33 and y3.max() <= 33
    assert set(np.unique(p3)) == {0, 1}
    with pytest.raises(ConfigError, match="the most is 10,000,000"):
        shift_events(t, x, y, p, Shift(noise_hz=1e6), ShiftRandom(1), **kw)


def test_cut_windows_closes_the_gaps_by_whole_periods():
    t = np.array([1.0, 12.0, 15.0, 25.0, 31.0, 39.0, 40.0])  # 10 us windows 0..3
    keep, t2 = cut_windows(t, np.array([False, True, False, False]), period_us=10.0)
    np.testing.assert_array_equal(keep, [True, False, False, True, True, True, True])
    np.testing.assert_array_equal(t2, [1.0, 15.0, 21.0, 29.0, 30.0])  # 40: the last window's


def test_label_spans_give_the_index_of_the_span_under_a_time():
    spans = LabelSpans(
        np.array([10.0, 0.0, 30.0]), np.array([20.0, 10.0, 35.0]), np.array([4, 1, 2])
    )
    np.testing.assert_array_equal(spans.index_at([0.0, 9.9, 10.0, 25.0, 31.0]), [1, 1, 0, -1, 2])
    np.testing.assert_array_equal(spans.at([0.0, 25.0, 31.0]), [1, -1, 2])
    empty = LabelSpans(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    np.testing.assert_array_equal(empty.at([1.0, 2.0]), [-1, -1])


# ---- the spec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("translate", "expected KEY=VALUE"),
        ("rate=", "expected KEY=VALUE"),
        ("shear=2", "unknown key 'shear'"),
        ("rate=0", r"rate=0: rate is the fraction of events kept, in \(0, 1\]"),
        ("rate=1.5", "no events are made up"),
        ("rate=lots", "rate=lots: rate is the fraction"),
        ("rate=nan", "rate=nan: rate is"),
        ("noise=-1", "noise is background events per second"),
        ("noise=inf", "noise=inf"),
        ("polarity=flip", "polarity takes only 'swap'"),
        ("prior=0:0", "prior takes one weight per class"),
        ("prior=1:x", "prior=1:x"),
        ("prior=1:inf", "finite numbers"),
        ("late_class=-1", "late_class takes a class"),
        ("late_class=1:1", "different integers"),
        ("late_class=a", "late_class=a"),
        ("rate=0.5,rate=0.4", "rate given twice"),
        ("translate=1:2:3", "translate takes DX or DX:DY"),
        ("translate=1.5", "whole pixels"),
        ("translate=20000", "<= 10000"),
    ],
)
def test_bad_shift_specs_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_shift(text)
    assert "\n" not in str(info.value)


def test_a_full_spec_parses():
    s = parse_shift(
        "translate=2:1, polarity=swap, rate=0.5, noise=0.01, prior=1:1:0.5, late_class=2:0"
    )
    assert s == Shift(2, 1, True, 0.5, 0.01, (1.0, 1.0, 0.5), (2, 0)) and s.changes_events
    assert parse_shift("translate=-3") == Shift(dx=-3)
    assert not Shift(late_classes=(1,), prior=(1.0, 2.0)).changes_events
