"""Chip-in-the-loop training: forward on a driver, backward on the host at observed times."""

from __future__ import annotations

import numpy as np

from delgrad.drivers import RecordingDriver, driver_from_config
from delgrad.runtime import DriverObserver, Trainer, config_from_dict, resolve_config

SMALL = [
    "data.train_size=400",
    "data.validation_size=200",
    "data.test_size=200",
    "training.epochs=4",
    "training.batch_size=40",
]


def test_hardware_recipe_learns_on_the_bss2_emulator():
    config = resolve_config("yinyang_hw_WA", SMALL)
    driver = driver_from_config("emulator-bss2", chip_seed=3)
    trainer = Trainer(config, observe=DriverObserver(driver))
    trainer.fit()
    # (the loss is a poor progress measure here: silent output neurons contribute no
    # loss terms, and most outputs are silent at this recipe's initialisation)
    acc = [h["train_accuracy"] for h in trainer.history]
    assert acc[-1] > acc[0] + 0.05
    assert trainer.history[-1]["silent_output"] < trainer.history[0]["silent_output"]
    # quantisation acts on the forward copy only: updates go to full precision
    assert not np.allclose(trainer.net.w[0] * 30, np.round(trainer.net.w[0] * 30))
    np.testing.assert_allclose(
        trainer.net_forward.w[0] * 30, np.round(trainer.net_forward.w[0] * 30), atol=1e-9
    )
    assert np.abs(trainer.net.w[0]).max() <= 2.1 + 1e-12  # weight_clip of the recipe
    # the driver ran what the forward copy holds (its own quantisation agrees)
    np.testing.assert_allclose(driver.applied.w[0], trainer.net_forward.w[0], atol=1e-12)


def test_parameters_are_written_to_the_driver_before_every_batch():
    config = config_from_dict(
        {
            "network": {"hidden": [6], "delay": "axonal"},
            "data": {"train_size": 200, "validation_size": 40, "test_size": 40},
            "training": {"epochs": 1, "batch_size": 50},
        }
    )
    driver = RecordingDriver()
    trainer = Trainer(config, observe=DriverObserver(driver))
    trainer.fit()
    kinds = [call.method for call in driver.calls]
    # training: 4 batches, each configure then run; then validation (1 batch)
    assert kinds[:8] == ["configure", "run"] * 4
    configured = [c for c in driver.calls if c.method == "configure"]
    assert len(configured) >= 5


def test_gradients_at_observed_arrivals_flow_to_delays():
    config = resolve_config("yinyang_hw_WA", [*SMALL[:3], "training.epochs=1"])
    driver = driver_from_config("emulator-bss2", chip_seed=0)
    trainer = Trainer(config, observe=DriverObserver(driver))
    before = [r.copy() for r in trainer.raw]
    trainer.fit()
    assert all(not np.array_equal(a, b) for a, b in zip(before, trainer.raw, strict=True))
