"""``delgrad events trials``: a labelled recording cut offline into the windows the
device cuts, written as a trial file that training reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.runtime import config_from_dict, load_split, read_trial_file
from delgrad.tools._cli import main


def _recording(tmp_path: Path) -> Path:
    # a 2 x 1 sensor, three 30 us samples (labels 4, 2, 7); windows of 3 tau_s at
    # 10 us per tau_s are 30 us long, so window k is [30 k, 30 k + 30) us
    t = np.array([2, 9, 11, 33, 35, 58, 64, 80], np.int64)
    x = np.array([0, 1, 0, 1, 0, 0, 1, 1], np.int64)
    events = np.zeros(
        t.size, dtype=[("t", np.int64), ("x", np.int64), ("y", np.int64), ("p", np.int64)]
    )
    events["t"], events["x"] = t, x
    np.save(tmp_path / "r.npy", events)
    (tmp_path / "r.npy.labels.csv").write_text(
        "index,start_us,end_us,label\n0,0,30,4\n1,30,60,2\n2,60,90,7\n"
    )
    return tmp_path / "r.npy"


def test_windows_become_first_spike_trials(tmp_path: Path, capsys) -> None:
    rec = _recording(tmp_path)
    out = tmp_path / "t.npz"
    args = ["--us-per-tau", "10", "--window-length", "3", "--out", str(out)]
    assert main(["events", "trials", str(rec), *args]) == 0
    assert "wrote 3 trials on 2 channels" in capsys.readouterr().out
    t_in, labels = read_trial_file(out, 2)
    assert labels.tolist() == [4, 2, 7]
    # first spike per channel after each window's start, in tau_s
    np.testing.assert_allclose(t_in, [[0.2, 0.9], [0.5, 0.3], [np.inf, 0.4]])  # 0 silent in 2
    # a part of the recording: samples 1 and 2 only, on the recording's own clock
    assert main(["events", "trials", str(rec), *args, "--samples", "1:3"]) == 0
    t_in, labels = read_trial_file(out, 2)
    assert labels.tolist() == [2, 7]
    np.testing.assert_allclose(t_in, [[0.5, 0.3], [np.inf, 0.4]])


def test_training_reads_the_trial_files(tmp_path: Path) -> None:
    rec = _recording(tmp_path)
    out = tmp_path / "t.npz"
    main(
        [
            "events",
            "trials",
            str(rec),
            "--us-per-tau",
            "10",
            "--window-length",
            "3",
            "--out",
            str(out),
        ]
    )
    files = {f"{s}_file": str(out) for s in ("train", "validation", "test")}
    config = config_from_dict(
        {
            "network": {"n_inputs": 2, "n_outputs": 8, "input_repeat": 2},
            "data": {"dataset": "file", **files},
        }
    )
    times, labels = load_split(config, "test")
    assert times.shape == (3, 4) and labels.tolist() == [4, 2, 7]  # channels repeated twice
    np.testing.assert_allclose(times[0], [0.2, 0.2, 0.9, 0.9])
    with pytest.raises(ConfigError, match=r"needs data\.validation_file"):
        config_from_dict({"data": {"dataset": "file", "train_file": "a", "test_file": "b"}})
    with pytest.raises(ConfigError, match=r"events on channels >= 1 "):
        read_trial_file(out, 1)


def test_bad_recordings_are_one_line(tmp_path: Path, capsys) -> None:
    rec = _recording(tmp_path)
    (tmp_path / "r.npy.labels.csv").unlink()
    assert main(["events", "trials", str(rec), "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert "no labels" in err and len(err.strip().splitlines()) == 1
    assert main(["events", "trials", str(tmp_path / "nope.npy"), "--out", "x.npz"]) == 2


def test_training_reads_what_the_sensor_streams_and_says_what_it_lacks(tmp_path: Path) -> None:
    """One checker for both readers: the padded layout that ``delgrad sensor --source``
    takes trains as its CSR twin; unlabelled or microsecond files are one line each."""
    csr = tmp_path / "csr.npz"
    np.savez(
        csr,
        offsets=np.array([0, 2, 3]),
        channels=np.array([1, 0, 1]),
        times=np.array([0.5, 0.25, 1.0]),
        labels=np.array([3, 1]),
    )
    padded = tmp_path / "padded.npz"
    np.savez(
        padded,
        channels=np.array([[1, 0], [1, -1]]),
        times=np.array([[0.5, 0.25], [1.0, np.inf]]),
        labels=np.array([3, 1]),
    )
    for a, b in zip(read_trial_file(csr, 2), read_trial_file(padded, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    bare = tmp_path / "bare.npz"
    np.savez(bare, offsets=np.array([0, 1]), channels=np.array([0]), times=np.array([0.5]))
    with pytest.raises(ConfigError, match="needs 'labels', one per trial"):
        read_trial_file(bare, 2)
    us = tmp_path / "us.npz"
    np.savez(us, **dict(np.load(csr)), time_unit=np.array("us"))
    with pytest.raises(ConfigError, match="must be in tau_s for training, got us"):
        read_trial_file(us, 2)
    with pytest.raises(ConfigError, match="must rise from 0"):
        np.savez(bare, offsets=np.array([1, 0]), channels=np.array([0]), times=np.array([0.5]))
        read_trial_file(bare, 2)
