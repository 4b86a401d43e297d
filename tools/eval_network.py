"""Run a trained network file on a driver and print its test accuracy (one JSON line).

Usage::

    python -m delgrad.tools.eval_network runs/hw/network.npz --driver emulator-bss2 \\
        --chip-seed 1 --input-repeat 5

Used to show what a network trained on the ideal model loses on an emulated
chip (and what chip-in-the-loop training wins back).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from delgrad.runtime import encode_yinyang, load_network, predict, yinyang_split


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
    """
    from delgrad.drivers import driver_from_config

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


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network")
    parser.add_argument("--driver", default="emulator-bss2")
    parser.add_argument("--chip-seed", type=int, default=0)
    parser.add_argument("--input-repeat", type=int, default=1)
    parser.add_argument("--batch", type=int, default=40, help="trials per run call")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the test set")
    args = parser.parse_args()
    acc = evaluate(
        args.network, args.driver, chip_seed=args.chip_seed, input_repeat=args.input_repeat
    )
    print(
        json.dumps(
            {
                "network": args.network,
                "driver": args.driver,
                "chip_seed": args.chip_seed,
                "test_accuracy": acc,
            }
        )
    )


if __name__ == "__main__":
    main()
