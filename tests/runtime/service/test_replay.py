"""The replay buffer: its bound, its sampling, its checkpoint (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime.service._replay import ReplayBuffer, replay_capacity


def _trials(ids: np.ndarray, n_inputs: int = 4) -> np.ndarray:
    """Input times that carry the trial id in the first column (inf in the last)."""
    times = np.zeros((len(ids), n_inputs))
    times[:, 0] = ids
    times[:, -1] = np.inf
    return times


def test_the_bound_holds_in_bytes():
    for mb, n_inputs in ((0.01, 4), (1.0, 784), (16.0, 2312)):
        buf = ReplayBuffer(mb, n_inputs, 10)
        assert buf.nbytes <= mb * (1 << 20)
        assert buf.capacity == replay_capacity(mb, n_inputs)
        assert buf.nbytes > 0.99 * mb * (1 << 20) - (8 * n_inputs + 8)
    with pytest.raises(ValueError, match="hold no trial"):
        ReplayBuffer(1e-6, 784, 10)


def test_reservoir_keeps_every_trial_seen_with_the_same_chance():
    buf = ReplayBuffer(replay_capacity_mb(1000, 4), 4, 3, seed=0)
    assert buf.capacity == 1000
    ids = np.arange(100_000)
    for chunk in np.split(ids, 100):
        buf.add(_trials(chunk), chunk % 3)
    kept = buf.state_arrays()["replay.times"][:, 0]
    assert len(kept) == 1000 and len(np.unique(kept)) == 1000
    counts, _ = np.histogram(kept, bins=10, range=(0, 100_000))
    assert counts.min() > 65 and counts.max() < 135  # 100 each, binomial spread ~9.5
    times, labels = buf.sample(5000)
    np.testing.assert_array_equal(labels, times[:, 0].astype(int) % 3)
    assert np.isinf(times[:, -1]).all()
    assert len(np.unique(times[:, 0])) > 900  # drawn from the whole buffer


def test_balanced_keeps_a_share_per_class_even_for_a_rare_late_class():
    buf = ReplayBuffer(replay_capacity_mb(300, 4), 4, 3, policy="balanced", seed=1)
    rng = np.random.default_rng(0)
    labels = rng.choice(2, size=50_000, p=[0.9, 0.1])  # classes 0 and 1 only ...
    buf.add(_trials(np.arange(50_000)), labels)
    late = np.full(500, 2)  # ... then class 2 appears
    buf.add(_trials(np.arange(50_000, 50_500)), late)
    held = buf.state_arrays()["replay.labels"]
    assert np.bincount(held, minlength=3).tolist() == [100, 100, 100]
    plain = ReplayBuffer(replay_capacity_mb(300, 4), 4, 3, seed=1)
    plain.add(_trials(np.arange(50_000)), labels)
    plain.add(_trials(np.arange(50_000, 50_500)), late)
    assert np.bincount(plain.state_arrays()["replay.labels"], minlength=3)[2] < 10


def test_a_checkpoint_round_trip_and_a_buffer_that_does_not_fit():
    buf = ReplayBuffer(replay_capacity_mb(200, 4), 4, 3, seed=2)
    buf.add(_trials(np.arange(500)), np.arange(500) % 3)
    saved = buf.state_arrays()
    assert all(np.isfinite(v).all() for v in saved.values())  # checkpoints hold finite arrays
    again = ReplayBuffer(replay_capacity_mb(200, 4), 4, 3, seed=2)
    assert again.restore(saved)
    for key, value in again.state_arrays().items():
        np.testing.assert_array_equal(value, saved[key])
    assert np.isinf(again.sample(10)[0][:, -1]).all()  # missing spikes come back as inf
    assert not ReplayBuffer(replay_capacity_mb(200, 5), 5, 3).restore(saved)
    assert not ReplayBuffer(replay_capacity_mb(100, 4), 4, 3).restore(saved)
    assert not buf.restore({})


def replay_capacity_mb(trials: int, n_inputs: int) -> float:
    """The bound in MiB that holds exactly ``trials`` trials."""
    return trials * (8 * n_inputs + 8) / (1 << 20)


def test_balanced_keeps_each_class_uniformly_and_samples_the_classes_evenly():
    buf = ReplayBuffer(replay_capacity_mb(3000, 4), 4, 3, policy="balanced", seed=3)
    rng = np.random.default_rng(7)
    labels = rng.choice(3, size=60_000, p=[0.6, 0.3, 0.1])
    ids = np.arange(60_000)
    for chunk in np.split(ids, 60):
        buf.add(_trials(chunk), labels[chunk])
    held = buf.state_arrays()
    kept_ids = held["replay.times"][:, 0].astype(int)
    for c in range(3):
        mine = kept_ids[held["replay.labels"] == c]
        assert len(mine) == 1000
        # within its class, every trial equally likely kept: the kept ones are spread
        # like the class's trials (100 per tenth of them, binomial spread ~9.5)
        rank = np.searchsorted(ids[labels == c], mine)
        counts, _ = np.histogram(rank, bins=10, range=(0, int((labels == c).sum())))
        assert counts.min() > 65 and counts.max() < 135, (c, counts)
    _, drawn = buf.sample(30_000)
    shares = np.bincount(drawn, minlength=3) / 30_000
    assert np.all(np.abs(shares - 1 / 3) < 0.015), shares  # spread 0.0027
