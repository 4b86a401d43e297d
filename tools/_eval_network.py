"""A trained network file on a driver: its test accuracy (``delgrad eval``).

Used to show what a network trained on the ideal model loses on an emulated
chip (and what chip-in-the-loop training wins back).
"""

from __future__ import annotations

import numpy as np

from delgrad.drivers import driver_from_config
from delgrad.runtime import encode_yinyang, load_network, predict, yinyang_split

__all__ = ["evaluate"]


def evaluate(
    path: str,
    driver_name: str,
    *,
    chip_seed: int = 0,
    input_repeat: int = 1,
    batch: int = 40,
    repeats: int = 5,
) -> float:
    """Test accuracy (fraction) of the network file on a driver.

    The test set runs in batches of ``batch`` trials (a noisy chip draws its
    threshold noise per batch), ``repeats`` times; the mean accuracy is returned.

    Raises:
        ConfigError: unknown driver name.
        NetworkFileError: the file is not a network file.
    """
    features, labels = yinyang_split("test")
    t_in = np.repeat(encode_yinyang(features), input_repeat, axis=1)
    options = {"chip_seed": chip_seed} if driver_name == "emulator-bss2" else {}
    accuracies = []
    with driver_from_config(driver_name, **options) as driver:
        driver.configure(load_network(path))
        for _ in range(repeats):
            out = np.concatenate(
                [driver.run(t_in[i : i + batch]).output for i in range(0, len(t_in), batch)]
            )
            accuracies.append(float(np.mean(predict(out) == labels)))
    return float(np.mean(accuracies))
