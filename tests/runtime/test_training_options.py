"""training.backward_threshold and training.select: validated, wired, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import ConfigError, Trainer, config_from_dict

SMALL = {
    "network": {"hidden": [10], "delay": "none"},
    "neuron": {"tau_m": 1.0, "theta": 1.0},
    "init": {"w_mean": [1.5], "w_std": [1.0]},
    "data": {"train_size": 300, "validation_size": 200, "test_size": 200},
    "training": {"epochs": 4, "batch_size": 50, "lr_w": 0.02},
}


def small(**training):
    data = {k: dict(v) for k, v in SMALL.items()}
    data["training"].update(training)
    return config_from_dict(data)


def test_defaults_are_todays_behaviour():
    tr = config_from_dict({}).training
    assert tr.backward_threshold == "observed" and tr.select == "last"


@pytest.mark.parametrize(
    ("training", "neuron", "message"),
    [
        ({"backward_threshold": "authors"}, {}, "backward_threshold"),
        ({"select": "best"}, {}, "select"),
        ({"backward_threshold": "nominal"}, {"tau_m": 2.0}, "tau_m == neuron.tau_s"),
    ],
)
def test_invalid_values_are_named(training, neuron, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"training": training, "neuron": neuron})


def test_nominal_rule_on_the_exact_host_model_trains_like_the_observed_rule():
    # On the host the spikes are produced at the nominal threshold, so both rules
    # give the same gradients up to rounding (training is chaotic: compare early).
    a = Trainer(small(epochs=1, backward_threshold="observed"))
    b = Trainer(small(epochs=1, backward_threshold="nominal"))
    a.fit()
    b.fit()
    for wa, wb in zip(a.net.w, b.net.w, strict=True):
        np.testing.assert_allclose(wb, wa, rtol=1e-7, atol=1e-9)


def test_best_val_restores_the_best_epoch_and_survives_a_resume(tmp_path):
    trainer = Trainer(small(select="best_val"))
    snapshots = []
    trainer.fit(on_epoch=lambda s: snapshots.append([w.copy() for w in trainer.net.w]))
    vals = [h["validation_accuracy"] for h in trainer.history]
    best = int(np.argmax(vals))  # earliest maximum
    assert trainer.best_epoch == best + 1 and trainer.best_validation == vals[best]
    for w, ref in zip(trainer.net.w, snapshots[best], strict=True):
        np.testing.assert_array_equal(w, ref)
    assert trainer.evaluate("validation")[0] == pytest.approx(vals[best])

    path = tmp_path / "ck.npz"
    half = Trainer(small(select="best_val", epochs=4))
    while half.epoch < 2:
        half.train_epoch()
    half.save_checkpoint(path)
    resumed = Trainer.from_checkpoint(path)
    resumed.fit()
    assert resumed.best_epoch == trainer.best_epoch
    for w, ref in zip(resumed.net.w, trainer.net.w, strict=True):
        np.testing.assert_array_equal(w, ref)


def test_last_keeps_the_final_parameters():
    trainer = Trainer(small(select="last"))
    final = []
    trainer.fit(
        on_epoch=lambda s: final.__setitem__(slice(None), [w.copy() for w in trainer.net.w])
    )
    for w, ref in zip(trainer.net.w, final, strict=True):
        np.testing.assert_array_equal(w, ref)
