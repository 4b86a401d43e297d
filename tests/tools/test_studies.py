"""The study runner's parts without a cluster: what a remote run sends back, how the
client writes it, the progress lines, and a finished study that needs no cluster."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from delgrad.errors import ParameterError
from delgrad.tools._studies import StudyRun, _write, execute, run_study
from delgrad.tools._study_progress import StudyProgress


def _make_files(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    run = folder / config["name"]
    run.mkdir(parents=True)
    (run / "checkpoint.npz").write_bytes(b"resume aid")
    (run / "plots").mkdir()
    (run / "plots" / "loss.png").write_bytes(b"\x89PNG")
    (run / "results.json").write_text(json.dumps({"x": config["x"]}))
    return {"x": config["x"]}


def test_a_remote_run_returns_every_file_but_its_checkpoint(tmp_path: Path) -> None:
    run = StudyRun("r1", _make_files, {"name": "r1", "x": 3}, "r1/results.json")
    output = execute(run, None)  # what a worker without our disk does
    assert output.row == {"x": 3}
    assert output.files == {"r1/plots/loss.png": b"\x89PNG", "r1/results.json": b'{"x": 3}'}
    _write(tmp_path, run, output.files)
    assert (tmp_path / "r1" / "plots" / "loss.png").read_bytes() == b"\x89PNG"
    assert not (tmp_path / "r1" / "checkpoint.npz").exists()
    with pytest.raises(ParameterError, match="outside --out"):
        _write(tmp_path, run, {"../evil": b""})


def test_a_finished_study_is_read_back_without_a_cluster(tmp_path: Path) -> None:
    runs = [
        StudyRun(f"r{i}", _make_files, {"name": f"r{i}", "x": i}, f"r{i}/x.json") for i in (1, 2)
    ]
    for i in (1, 2):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "x.json").write_text(json.dumps({"x": i}))
    out = io.StringIO()
    # no scheduler listens there: nothing is left to run, so it is never asked
    outcome = run_study(
        runs, tmp_path, label="t", describe=str, scheduler="tcp://127.0.0.1:9", stream=out
    )
    assert sorted(r["x"] for r in outcome.rows) == [1, 2] and outcome.failed == {}
    assert outcome.skipped == 2 and "t: 2 of 2 runs already done" in out.getvalue()
    with pytest.raises(ParameterError, match="repeat"):
        run_study([runs[0], runs[0]], tmp_path, label="t", describe=str)


def test_progress_is_plain_lines_when_piped_and_a_bar_on_a_terminal() -> None:
    piped = io.StringIO()
    with StudyProgress("sweep", 12, 2, stream=piped) as progress:
        progress.line("none H5 seed 0: test 90.0 %", advance=True)
        progress.line("a note")
    assert piped.getvalue() == "[ 3/12] none H5 seed 0: test 90.0 %\na note\n"
    shown = io.StringIO()
    with StudyProgress("sweep", 2, plain=False, stream=shown) as progress:
        progress.line("[brackets] stay text", advance=True)
    assert "[1/2] [brackets] stay text" in shown.getvalue()
