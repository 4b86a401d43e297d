"""``delgrad digits``: the event version is written as AEDAT4 and a ROS 2 bag with labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from delgrad.runtime.sources import read_events
from delgrad.tools._cli import main

pytest.importorskip("sklearn")
pytest.importorskip("faery")
pytest.importorskip("rosbags")


def test_events_written_as_aedat4_and_bag_with_the_same_events_and_labels(tmp_path, capsys):
    argv = [
        "digits",
        "events",
        "--out",
        str(tmp_path),
        "--split",
        "test",
        "--limit",
        "3",
        "--saccade-ms",
        "10",
    ]
    assert main(argv) == 0
    assert "128 channels" in capsys.readouterr().out
    aedat = read_events(tmp_path / "digits_test.aedat4")
    bag = read_events(tmp_path / "digits_test_bag")
    for k in ("t_us", "x", "y", "p"):
        np.testing.assert_array_equal(getattr(aedat, k), getattr(bag, k))
    assert aedat.labels is not None and bag.labels is not None
    from delgrad.runtime._digits import digits_split

    np.testing.assert_array_equal(aedat.labels.label, digits_split("test")[1][:3])
    np.testing.assert_array_equal(aedat.labels.start_us, [0.0, 30_000.0, 60_000.0])
    assert main(argv) == 2  # refuses to overwrite without --force


def test_baseline_prints_both_models(capsys):
    assert main(["digits", "baseline", "--seeds", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["logistic_regression"] > 0.9 and out["mlp_64_100_10_median"] > 0.9


def test_trials_are_nir_padded_files_the_sensor_streams_as_trials(tmp_path, capsys):
    assert main(["digits", "trials", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "digits_test.npz") as z:
        assert z["channels"].shape == z["times"].shape == (360, 64)
        assert z["labels"].shape == (360,) and str(z["time_unit"]) == "tau_s"
    from delgrad.tools._sensor import FileSource

    source = FileSource(tmp_path / "digits_test.npz")
    assert source.n_channels == 64 and source.take(2).offsets.tolist() == [0, 64, 128]
