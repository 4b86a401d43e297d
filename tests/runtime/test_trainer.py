"""Offline training: it learns, it is deterministic, and resuming changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import (
    Layer,
    Network,
    NeuronParams,
    Trainer,
    backward,
    config_from_dict,
    forward,
)

SMALL = {
    "network": {"hidden": [12], "delay": "synaptic"},
    "data": {"train_size": 600, "validation_size": 200, "test_size": 200},
    "training": {"epochs": 6, "batch_size": 50, "lr_w": 0.01, "lr_d": 0.005},
}


def small(**training):
    data = {k: dict(v) for k, v in SMALL.items()}
    data["training"].update(training)
    return config_from_dict(data)


def test_short_run_learns():
    trainer = Trainer(small())
    trainer.fit()
    loss = [h["train_loss"] for h in trainer.history]
    acc = [h["train_accuracy"] for h in trainer.history]
    assert loss[-1] < 0.7 * loss[0]
    assert acc[-1] > acc[0] + 0.1
    assert trainer.evaluate("test")[0] > 0.6


@pytest.mark.parametrize("delay", ["none", "axonal", "dendritic"])
def test_each_delay_kind_trains(delay):
    data = {k: dict(v) for k, v in SMALL.items()}
    data["network"]["delay"] = delay
    trainer = Trainer(config_from_dict(data))
    d_before = [d.copy() for d in trainer.net.d]
    trainer.fit()
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    if delay != "none":
        assert any(not np.array_equal(a, b) for a, b in zip(d_before, trainer.net.d, strict=True))


def test_same_seed_same_result_and_other_seed_differs():
    a, b, c = (
        Trainer(small(epochs=2)),
        Trainer(small(epochs=2)),
        Trainer(small(epochs=2).replace(seed=5)),
    )
    for t in (a, b, c):
        t.fit()
    for x, y in zip(a.net.w, b.net.w, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.net.w[0], c.net.w[0])


def test_resume_equals_uninterrupted(tmp_path):
    straight = Trainer(small())
    straight.fit()
    first = Trainer(small(epochs=6))
    first.train_epoch()
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz")
    assert resumed.epoch == 2
    resumed.fit()
    for x, y in zip(straight.net.w + straight.raw, resumed.net.w + resumed.raw, strict=True):
        np.testing.assert_array_equal(x, y)
    keys = ["train_loss", "validation_accuracy"]
    assert [[h[k] for k in keys] for h in straight.history] == [
        [h[k] for k in keys] for h in resumed.history
    ]


def test_shared_input_delays_get_summed_gradients():
    config = config_from_dict(
        {
            "network": {
                "hidden": [6],
                "delay": "axonal",
                "input_repeat": 5,
                "share_input_delay": True,
                "delay_param": "bounded",
                "delay_shift": 2.0,
                "delay_scale": 1.5,
            },
            "neuron": {"tau_m": 1.0, "theta": 2.6},
            "data": {"train_size": 80, "validation_size": 40, "test_size": 40},
            "training": {"epochs": 1, "batch_size": 40},
        }
    )
    trainer = Trainer(config)
    assert trainer.raw[0].shape == (4,) and trainer.net.d[0].shape == (20,)
    np.testing.assert_array_equal(trainer.net.d[0], np.repeat(trainer.net.d[0][::5], 5))
    assert np.all((trainer.net.d[0] > 2.0) & (trainer.net.d[0] < 3.5))
    trainer.fit()
    np.testing.assert_array_equal(trainer.net.d[0], np.repeat(trainer.net.d[0][::5], 5))


def test_backward_at_observed_arrivals_matches_delays():
    rng = np.random.default_rng(2)
    layers = [Layer(4, 6, "axonal"), Layer(6, 3, "axonal")]
    net = Network(
        layers,
        NeuronParams(),
        [rng.normal(1.5, 0.7, ly.weight_shape) for ly in layers],
        [rng.uniform(0, 1, ly.delay_shape) for ly in layers],
    )
    t_in = rng.uniform(0, 2, (8, 4))
    times = forward(net, t_in)
    g = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    plain = backward(net, t_in, times, g)
    arrivals = [t_in + net.d[0], times[0] + net.d[1]]
    observed = backward(net, t_in, times, g, arrivals=arrivals)
    for a, b in zip(plain.layers, observed.layers, strict=True):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.d, b.d, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(plain.t_in, observed.t_in, rtol=1e-12, atol=1e-14)
