"""Driver throughput: samples/s of the emulator driver in ``ideal`` and ``bss2`` mode.

Network: the authors' 20-30-3 hardware recipe with axonal delays before each
layer (tau_m = tau_s, theta = 2.6; w ~ N(1, 0.12) then N(0.075, 0.15) on the
1/30 grid, delays uniform in [2, 3.5] tau_s), inputs like encoded Yin-Yang
points (each of 4 values in [0.15, 2.0] sent 5 times). Batches of 40 (the
authors' training batch) and 1000 (evaluation). Medians of ``repeats``.
"""

from __future__ import annotations

import json
import time

import numpy as np

from delgrad.drivers import EmulatorDriver
from delgrad.runtime import Layer, Network, NeuronParams


def _network(rng: np.random.Generator) -> Network:
    layers = [Layer(20, 30, "axonal"), Layer(30, 3, "axonal")]
    w = [
        np.round(30 * rng.normal(1.0, 0.12, (20, 30))) / 30,
        np.round(30 * rng.normal(0.075, 0.15, (30, 3))) / 30,
    ]
    d = [rng.uniform(2.0, 3.5, 20), rng.uniform(2.0, 3.5, 30)]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d)


def _rate(driver: EmulatorDriver, batches: list[np.ndarray], repeats: int) -> float:
    driver.run(batches[0])  # compile / warm caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = 0
        for t_in in batches:
            driver.run(t_in)
            n += t_in.shape[0]
        rates.append(n / (time.perf_counter() - start))
    return float(np.median(rates))


def bench_drivers(repeats: int = 5, seed: int = 0) -> dict[str, dict[str, float]]:
    """Median samples/s per mode (``ideal``, ``bss2``) and batch size (40, 1000)."""
    rng = np.random.default_rng(seed)
    net = _network(rng)
    result: dict[str, dict[str, float]] = {}
    for mode in ("ideal", "bss2"):
        driver = EmulatorDriver(mode, chip_seed=seed)
        driver.configure(net)
        result[mode] = {}
        for batch, n_batches in ((40, 25), (1000, 2)):
            batches = [
                np.repeat(rng.uniform(0.15, 2.0, (batch, 4)), 5, axis=1) for _ in range(n_batches)
            ]
            result[mode][f"batch_{batch}_per_s"] = round(_rate(driver, batches, repeats))
        driver.close()
    return result


if __name__ == "__main__":
    print(json.dumps(bench_drivers()))
