"""CPU time per trial of the service's blocking work, without the event loop and the
broker (issue 24; figures in docs/performance.md, "Where the service's CPU goes").

    .venv/bin/python tests/runtime/service/bench_pipeline.py RECIPE {one,two} [BATCHES [THREADS]]

Random trials (20-30 % of the inputs spike once, 100 per batch, labels 0-9) go
through an :class:`OnlineLearner` on the ideal emulator with ``step_every`` 150:
``one`` runs each batch's driver run and then its learning in one thread, in order
(the service before the pipeline); ``two`` runs the driver runs in one thread and
the learning in another, at most 2 batches apart, the re-observations on a twin
driver (the service's driver and learner threads at full speed). Prints one JSON
line: thread CPU seconds per trial (us), the share of learned trials re-observed,
and wall-clock trials/s (load-sensitive).

Not a test (no ``test_`` prefix).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time

import numpy as np

from delgrad.drivers import driver_from_config
from delgrad.runtime import Learner, resolve_config
from delgrad.runtime.service import OnlineLearner

BATCH = 100


def main() -> None:
    recipe, mode = sys.argv[1], sys.argv[2]
    n_batches = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    learner = Learner(resolve_config(recipe), threads=threads)
    options = {"threads": threads} if threads > 1 else {}  # runs on checkouts without it
    driver = driver_from_config("emulator-ideal", **options)
    if mode == "two":  # re-observations on a twin, as delgrad run does for the ideal emulator
        twin = driver_from_config("emulator-ideal", **options)
        online = OnlineLearner(learner, driver, step_every=150, reobserve=twin)
    else:
        online = OnlineLearner(learner, driver, step_every=150)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(20):
        t_in = np.full((BATCH, online.n_inputs), np.inf)
        spikes = rng.random(t_in.shape) < rng.uniform(0.2, 0.3)
        t_in[spikes] = rng.uniform(0.15, 2.0, spikes.sum())
        batches.append((t_in, rng.integers(0, 10, BATCH)))
    for t_in, labels in batches[:3]:  # compile and warm up
        observation, version = online.observe(t_in)
        online.learn_rows(online.pack(t_in, observation, version), labels)
    cpu: dict[str, float] = {}
    rows: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=2)

    def drive(put: bool) -> None:
        start = time.thread_time()
        for k in range(n_batches):
            t_in, labels = batches[k % len(batches)]
            observation, version = online.observe(t_in)
            packed = online.pack(t_in, observation, version)
            if put:
                rows.put((packed, labels))
            else:
                online.learn_rows(packed, labels)
        rows.put(None)
        cpu["driver" if put else "worker"] = time.thread_time() - start

    def learn() -> None:
        start = time.thread_time()
        while (item := rows.get()) is not None:
            online.learn_rows(*item)
        cpu["learner"] = time.thread_time() - start

    refreshed = online.refreshed
    wall = time.perf_counter()
    if mode == "one":
        drive(put=False)
    else:
        pair = [threading.Thread(target=drive, args=(True,)), threading.Thread(target=learn)]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join()
    wall = time.perf_counter() - wall
    n = n_batches * BATCH
    result = {
        "recipe": recipe,
        "mode": mode,
        "threads": threads,
        "trials": n,
        "cpu_us_per_trial": {k: round(v / n * 1e6, 1) for k, v in cpu.items()},
        "refreshed_fraction": round((online.refreshed - refreshed) / n, 3),
        "wall_trials_per_s": round(n / wall),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
