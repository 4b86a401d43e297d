"""``delgrad sensor --shift``: the Yin-Yang stream shifts after N trials, as asked."""

from __future__ import annotations

import numpy as np

from delgrad.runtime.sources import Shift
from delgrad.tools._sensor import YinYangSource
from delgrad.tools._shifted_source import ShiftedSource


def _take_all(source, n, batch=100):
    out = [source.take(batch) for _ in range(n // batch)]
    return out


def test_trials_before_the_point_are_untouched_and_after_it_shifted():
    plain = YinYangSource("train", input_repeat=5, seed=3)
    shifted = ShiftedSource(
        YinYangSource("train", input_repeat=5, seed=3),
        Shift(swap_polarity=True),
        after=250,
        n_channels=20,
        span=2.0,
        complement=10,
    )
    a, b = _take_all(plain, 500), _take_all(shifted, 500)
    ids = np.concatenate([x.trial_ids for x in b])
    np.testing.assert_array_equal(ids, np.arange(500))  # ids count on without gaps
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if i < 2:  # trials 0 .. 199: before the point
            np.testing.assert_array_equal(x.channels, y.channels)
        elif i > 2:  # 300 .. 499: every channel swapped with its complement's
            np.testing.assert_array_equal(np.sort(y.channels), np.sort((x.channels + 10) % 20))
            np.testing.assert_array_equal(np.sort(x.times), np.sort(y.times))


def test_a_late_class_appears_only_after_the_point_and_a_prior_after_it():
    source = ShiftedSource(
        YinYangSource("train", seed=1),
        Shift(late_class=2, prior=(1.0, 0.25, 1.0)),
        after=1000,
        n_channels=4,
        span=2.0,
        complement=2,
    )
    batches = _take_all(source, 4000)
    labels = np.concatenate([b.labels for b in batches])
    assert len(labels) == 4000
    assert 2 not in labels[:1000] and np.count_nonzero(labels[1000:] == 2) > 800
    later = np.bincount(labels[1000:], minlength=3) / 3000
    assert later[1] < 0.5 * later[0]  # class 1 kept a quarter as often
