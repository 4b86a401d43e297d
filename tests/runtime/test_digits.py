"""The scikit-learn digits: fixed stratified split, time-to-first-spike encoding, recipes."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError, ParameterError
from delgrad.runtime import Trainer, config_from_dict, load_split, resolve_config
from delgrad.runtime._digits import DIGITS_SPLITS, digits_split, encode_digits

pytest.importorskip("sklearn")


def test_split_is_fixed_stratified_and_disjoint():
    parts = {name: digits_split(name) for name in DIGITS_SPLITS}
    for name, (x, y) in parts.items():
        assert x.shape == (DIGITS_SPLITS[name], 64) and y.shape == (DIGITS_SPLITS[name],)
        assert 0.0 <= x.min() and x.max() <= 1.0 and not x.flags.writeable
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.09 * y.size and counts.max() <= 0.11 * y.size
    rows = {name: {r.tobytes() for r in x} for name, (x, _) in parts.items()}
    assert not rows["test"] & rows["validation"]
    _, y2 = digits_split("test")
    np.testing.assert_array_equal(parts["test"][1], y2)


def test_sizes_are_checked():
    with pytest.raises(ConfigError, match="sum to at most 1797"):
        digits_split("train", sizes=(1500, 180, 360))
    with pytest.raises(ParameterError, match="unknown digits split"):
        digits_split("dev")  # type: ignore[arg-type]
    x, _ = digits_split("train", sizes=(100, 180, 360))
    assert x.shape == (100, 64)


def test_time_to_first_spike_encoding():
    t = encode_digits(np.array([[0.0, 0.5, 1.0]]), t_early=0.15, t_late=2.0)
    np.testing.assert_allclose(t, [[2.0, 1.075, 0.15]])
    with pytest.raises(ParameterError):
        encode_digits(np.zeros(2), t_early=1.0, t_late=1.0)


def test_recipes_load_and_the_dataset_must_fit_the_network():
    for name in ("digits_H100_W", "digits_H100_WS"):
        cfg = resolve_config(name)
        assert cfg.data.dataset == "digits"
        assert (cfg.network.n_inputs, cfg.network.n_outputs) == (64, 10)
    with pytest.raises(ConfigError, match=r"set network\.n_inputs = 64"):
        config_from_dict({"data": {"dataset": "digits"}})
    times, labels = load_split(resolve_config("digits_H100_W"), "test")
    assert times.shape == (360, 64) and labels.shape == (360,)


def test_a_few_epochs_learn_the_digits():
    cfg = resolve_config("digits_H100_W", ["training.epochs=3"])
    trainer = Trainer(cfg)
    trainer.fit()
    assert trainer.history[-1]["validation_accuracy"] > 0.8
