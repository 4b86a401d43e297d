"""The degradation detector on constructed series of scored trials (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime.service._degradation import DegradationDetector


def _feed(det, rng, accuracy, n, silent=0.0, chunk=100):
    """Feed ``n`` trials in chunks; returns the trial index (from 0) of each change."""
    changes = []
    for at in range(0, n, chunk):
        j = det.add(rng.random(chunk) < accuracy, rng.random(chunk) < silent)
        if j.changed:
            changes.append((at + chunk, j.degraded))
    return changes


def test_a_stationary_noisy_stream_of_a_million_trials_raises_no_alarm():
    rng = np.random.default_rng(0)
    det = DegradationDetector()
    assert _feed(det, rng, 0.93, 1_000_000, silent=0.01, chunk=1000) == []
    assert not det.degraded and abs(det.last.accuracy - 0.93) < 0.03


def test_learning_from_scratch_is_no_degradation():
    rng = np.random.default_rng(1)
    det = DegradationDetector()
    for level in np.linspace(0.33, 0.95, 40):  # accuracy rising over 40,000 trials
        assert _feed(det, rng, level, 1000) == []


@pytest.mark.parametrize("fall", [0.15, 0.25])
def test_a_fall_fires_within_a_window_and_recovery_clears_it(fall):
    rng = np.random.default_rng(2)
    det = DegradationDetector()
    assert _feed(det, rng, 0.93, 30_000) == []
    changes = _feed(det, rng, 0.93 - fall, 3000)
    assert len(changes) == 1 and changes[0][1] is True
    assert changes[0][0] <= 1000  # trials after the fall
    assert "sliding accuracy" in det.last.text()
    # still degraded while it stays low: the reference is frozen, no re-firing
    assert _feed(det, rng, 0.93 - fall, 20_000) == []
    assert det.degraded and abs(det.last.reference - 0.93) < 0.015
    recovered = _feed(det, rng, 0.93, 3000)
    assert recovered and recovered[0][1] is False and recovered[0][0] <= 2000
    assert not det.degraded


def test_more_silent_labels_fire_too():
    rng = np.random.default_rng(3)
    det = DegradationDetector()
    _feed(det, rng, 0.9, 15_000, silent=0.01)
    changes = _feed(det, rng, 0.9, 3000, silent=0.2)
    assert changes and changes[0][1] is True


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        DegradationDetector(window=50, block=100)
