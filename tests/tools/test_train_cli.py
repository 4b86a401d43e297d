"""`delgrad train` end to end: outputs, and resume after SIGKILL equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ARGS = [
    "train",
    "yinyang_H30_WA",
    "--plain",
    "--no-plots",
    "--set",
    "data.train_size=600",
    "--set",
    "data.validation_size=200",
    "--set",
    "data.test_size=200",
    "--set",
    "network.hidden=[10]",
    "--set",
    "training.batch_size=50",
]


def delgrad(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "delgrad.tools._cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    epochs = ["--set", "training.epochs=25"]
    straight = delgrad(*ARGS, *epochs, "--out", str(tmp_path / "a"))
    victim = delgrad(*ARGS, *epochs, "--out", str(tmp_path / "b"))
    seen = ""
    deadline = time.monotonic() + 120
    while "epoch    4" not in seen and time.monotonic() < deadline:
        seen += victim.stdout.readline()
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert "epoch    4" in seen, seen
    assert not (tmp_path / "b" / "results.json").exists()
    resumed = delgrad(*ARGS, *epochs, "--out", str(tmp_path / "b"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming at epoch" in out
    straight.communicate(timeout=300)
    assert straight.returncode == 0
    with np.load(tmp_path / "a" / "network.npz") as a, np.load(tmp_path / "b" / "network.npz") as b:
        for key in ("w0", "w1", "d0", "d1"):
            np.testing.assert_array_equal(a[key], b[key])
    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    rb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"]
    for key in ("train_loss", "train_accuracy", "validation_accuracy", "silent_hidden", "bumps"):
        assert ra["curves"][key] == rb["curves"][key], key
    assert ra["epochs"] == 25 and ra["n_parameters"] == 4 * 10 + 10 * 3 + 4 + 10


def test_bad_config_field_gives_clear_error(tmp_path):
    proc = delgrad("train", "yinyang_H30_W", "--set", "training.epoch=3", "--out", str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "unknown field(s) epoch in [training]" in err


def test_training_report_files(tmp_path):
    from delgrad.runtime import resolve_config
    from delgrad.tools._train_run import run_training

    config = resolve_config(
        "yinyang_H30_WS",
        [
            "data.train_size=300",
            "data.validation_size=100",
            "data.test_size=100",
            "training.epochs=2",
            "training.batch_size=50",
            "network.hidden=[8]",
        ],
    )
    results = run_training(config, tmp_path, plots=True)
    names = ["learning_curves", "yinyang_plane", "output_times", "delays", "raster"]
    for name in names:
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == results["test_accuracy"]
    assert len(saved["curves"]["validation_accuracy"]) == 2
    assert saved["n_trainable"] == 4 * 8 + 8 * 3 + 4 * 8 + 8 * 3
    assert saved["package_version"] and saved["seed"] == 0


def test_progress_lines_fit_80_columns() -> None:
    from types import SimpleNamespace

    from delgrad.tools._cmd_train import _line, _short

    worst = SimpleNamespace(
        epoch=9999, train_loss=12.3456, train_accuracy=1.0, validation_accuracy=1.0,
        silent_hidden=1.0, samples_per_s=9_999_999.0,
    )  # fmt: skip
    assert len(_line(worst, 9999)) <= 80, _line(worst, 9999)
    assert "epoch 9999/9999" in _line(worst, 9999)
    # the bar's note leaves room for the name, a 16-column bar, N/M and the time left
    assert len(_short(worst)) <= 26
