"""The shift transforms (issue 18: a world that shifts), each on a small stream."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.runtime.sources import Shift, parse_shift, shift_events, shift_trials


def _trials(n=200, per=6, n_channels=8, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.arange(0, n * per + 1, per, dtype=np.int64)
    channels = rng.integers(0, n_channels, n * per)
    times = np.sort(rng.uniform(0.1, 2.0, (n, per)), axis=1).ravel()
    labels = rng.integers(0, 3, n)
    return offsets, channels, times, labels


def _apply(shift, after=True, complement=2, seed=1, **kw):
    return shift_trials(
        *_trials(**kw), shift, np.random.default_rng(seed), n_channels=8, span=2.0,
        after=after, complement=complement,
    )  # fmt: skip


def test_translate_moves_channels_and_drops_those_past_the_last():
    _, ch, _, _ = _trials()
    got = _apply(Shift(dx=2))
    assert got.channels.max() <= 7 and got.channels.min() >= 2
    assert len(got.channels) == np.count_nonzero(ch + 2 < 8)
    np.testing.assert_array_equal(np.sort(got.channels), np.sort(ch[ch + 2 < 8] + 2))
    assert (np.diff(got.offsets) >= 0).all() and got.offsets[-1] == len(got.channels)


def test_polarity_swap_exchanges_each_coordinate_with_its_complement():
    _, ch, _, _ = _trials()
    got = _apply(Shift(swap_polarity=True), complement=2)  # Yin-Yang, input_repeat 1 ... x2
    want = (ch // 4) * 4 + (ch % 4 + 2) % 4
    np.testing.assert_array_equal(np.sort(got.channels), np.sort(want))
    with pytest.raises(ConfigError, match="no polarity"):
        _apply(Shift(swap_polarity=True), complement=None)


def test_rate_keeps_a_binomial_share_and_noise_adds_poisson_events():
    n_events = 200 * 6
    got = _apply(Shift(rate=0.5))
    assert abs(len(got.channels) - n_events / 2) < 4 * np.sqrt(n_events / 4)
    noisy = _apply(Shift(noise=0.25))  # 0.25 per channel per tau_s over 2 tau_s, 8 channels
    extra = len(noisy.channels) - n_events
    assert abs(extra - 200 * 4) < 4 * np.sqrt(800)
    assert (noisy.times >= 0).all() and (noisy.times <= 2.0).all()
    for a, b in zip(noisy.offsets[:-1], noisy.offsets[1:], strict=True):
        assert (np.diff(noisy.times[a:b]) >= 0).all()  # each trial still time-ordered


def test_prior_and_late_class_choose_the_trials():
    *_, labels = _trials(n=3000)
    got = _apply(Shift(prior=(1.0, 1.0, 0.1)), n=3000)
    kept = labels[got.keep]
    share = np.bincount(kept, minlength=3) / np.bincount(labels, minlength=3)
    assert share[0] == share[1] == 1.0 and 0.06 < share[2] < 0.14
    before = _apply(Shift(late_class=2), after=False, n=3000)
    assert 2 not in labels[before.keep] and before.keep.sum() == np.count_nonzero(labels != 2)
    after = _apply(Shift(late_class=2), after=True, n=3000)
    assert after.keep.all()


def test_recording_events_translate_swap_thin_and_gain_noise():
    rng = np.random.default_rng(0)
    n = 5000
    t = np.sort(rng.uniform(0, 1e6, n))
    x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n).astype(np.int8)
    kw = {"width": 34, "height": 34, "us_per_tau": 1000.0}
    _, x2, y2, p2 = shift_events(t, x, y, p, Shift(dx=2, dy=-1, swap_polarity=True), rng, **kw)
    inside = (x + 2 < 34) & (y - 1 >= 0)
    np.testing.assert_array_equal(x2, x[inside] + 2)
    np.testing.assert_array_equal(y2, y[inside] - 1)
    np.testing.assert_array_equal(p2, 1 - p[inside])
    t3, *_ = shift_events(t, x, y, p, Shift(rate=0.5, noise=1e-3), rng, **kw)
    noise = 1e-3 * (t[-1] - t[0]) / 1000.0 * 34 * 34
    assert abs(len(t3) - (n / 2 + noise)) < 5 * np.sqrt(n / 4 + noise)
    assert (np.diff(t3) >= 0).all()
    with pytest.raises(ConfigError, match="trial streams"):
        shift_events(t, x, y, p, Shift(late_class=1), rng, **kw)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("translate", "expected KEY=VALUE"),
        ("shear=2", "unknown key 'shear'"),
        ("rate=0", r"rate must be in \(0, 1\]"),
        ("rate=1.5", "rate must be"),
        ("rate=lots", "translate takes DX"),
        ("noise=-1", "noise must be in 0"),
        ("polarity=flip", "polarity must be 'swap'"),
        ("prior=0:0", "prior needs weights"),
        ("late_class=-1", "late_class must be >= 0"),
        ("rate=0.5,rate=0.4", "rate given twice"),
        ("translate=1:2:3", "translate takes DX"),
    ],
)
def test_bad_shift_specs_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_shift(text)
    assert "\n" not in str(info.value)


def test_a_full_spec_parses():
    s = parse_shift(
        "translate=2:1, polarity=swap, rate=0.5, noise=0.01, prior=1:1:0.5, late_class=2"
    )
    assert s == Shift(2, 1, True, 0.5, 0.01, (1.0, 1.0, 0.5), 2) and s.changes_events
    assert not Shift(late_class=1).changes_events
