"""The parts of ``delgrad bench e2e`` that decide its figures, without a broker:
the sensor-scale trial file, the networks' recipes, and the live path's latency rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from delgrad.runtime import read_trial_file, resolve_config
from delgrad.tools._bench_e2e import (
    NETWORKS,
    SentLog,
    _with_network,
    window_latency_ms,
    write_random_trials,
)


@pytest.mark.parametrize("network", ["784-350-10", "2312-400-10"])
def test_sensor_scale_networks_ship_their_recipe_and_a_matching_trial_file(
    tmp_path: Path, network: str
) -> None:
    config, source = _with_network(network, tmp_path, {"learning": {"threads": 2}}, "yinyang")
    spec = NETWORKS[network]
    assert spec is not None
    assert config == {"learning": {"threads": 2}, "model": {"recipe": spec.recipe}}
    recipe = resolve_config(spec.recipe)
    n_in, n_hidden, _ = (int(x) for x in network.split("-"))
    assert (recipe.network.n_inputs, recipe.network.hidden) == (n_in, [n_hidden])
    times, labels = read_trial_file(source, n_in)
    assert times.shape == (spec.n_trials, n_in)
    active = np.isfinite(times).mean(axis=1)
    assert active.min() >= 0.2 - 1 / n_in and active.max() < 0.3
    spikes = times[np.isfinite(times)]
    assert spikes.min() >= 0.15 and spikes.max() <= 2.0
    assert set(np.unique(labels)) == set(range(10))


def test_a_given_source_and_recipe_are_kept(tmp_path: Path) -> None:
    config, source = _with_network(
        "784-350-10", tmp_path, {"model": {"recipe": "mine.toml"}}, "my.npz"
    )
    assert (config["model"]["recipe"], source) == ("mine.toml", "my.npz")
    assert not list(tmp_path.iterdir())  # no trial file written when one is given
    with pytest.raises(ValueError, match="unknown network"):
        _with_network("10-10-10", tmp_path, None, "yinyang")


def test_the_trial_file_is_the_one_the_docs_describe(tmp_path: Path) -> None:
    a = np.load(write_random_trials(tmp_path / "t.npz", 784, 50, seed=0))
    b = np.load(write_random_trials(tmp_path / "u.npz", 784, 50, seed=0))
    assert all(np.array_equal(a[k], b[k]) for k in ("offsets", "channels", "times", "labels"))
    c = np.load(write_random_trials(tmp_path / "v.npz", 784, 50, seed=1))
    assert not np.array_equal(a["channels"], c["channels"])


def test_live_latency_counts_from_the_message_that_completes_each_window() -> None:
    # four event messages: latest event time (us) and sensor stamp (ns)
    latest = np.array([299_999.0, 599_999.0, 600_500.0, 900_001.0])
    stamps = np.array([1, 2, 3, 4], dtype=np.int64) * 1_000_000
    ids = np.array([0, 1, 2, 3])
    lat = window_latency_ms(latest, stamps, ids, 300_000.0, 300_000.0, 10_000_000)
    # window 0 ends at 300,000 us: only the second message shows that time has passed;
    # window 3 (ends 1.2 s) was closed by no message (an idle flush): left out
    assert lat == [8.0, 7.0, 6.0]
    # overlapping windows (period < length) end later
    assert window_latency_ms(latest, stamps, ids[:1], 100_000.0, 600_000.0, 10_000_000) == [7.0]


def test_live_without_a_recording_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "delgrad", "bench", "e2e", "live", "--rate", "1000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "delgrad digits events" in done.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "delgrad", "bench", "e2e", "live", "--network", "2312-400-10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "is not one of digits, 784" in wrong.stderr


def test_the_watchers_log_keeps_the_newest_messages_within_its_bound() -> None:
    log = SentLog(4)
    for k in range(11):
        log.append(float(k), 100 + k)
        keys, stamps = log.arrays()
        assert len(log) <= 8 and keys[-1] == k and stamps[-1] == 100 + k
        assert np.all(np.diff(keys) == 1)  # oldest first, nothing lost inside the kept run
    assert len(log) >= 4  # at least the capacity is kept once it was reached
