"""The DelGrad size sweep: hidden sizes x delay kinds x seeds, a study on Dask.

Each run uses the H30 recipe of its delay kind (weights only: yinyang_H30_W,
axonal: _WA, dendritic: _WD, synaptic: _WS) with the hidden size replaced, and
writes its own folder ``{delay}_H{hidden}_seed{seed}`` (``results.json``,
``network.npz``); a finished run (its ``results.json`` exists, same epochs) is
skipped, an interrupted one resumes from its checkpoint on a shared disk
(:mod:`delgrad.tools._studies`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from delgrad.runtime import atomic_write, resolve_config
from delgrad.tools._plots import plot_sweep
from delgrad.tools._studies import StudyOutcome, StudyRun, run_study
from delgrad.tools._train_run import run_training

RECIPES = {
    "none": "yinyang_H30_W",
    "axonal": "yinyang_H30_WA",
    "dendritic": "yinyang_H30_WD",
    "synaptic": "yinyang_H30_WS",
}
CSV_FIELDS = [
    "hidden",
    "delay",
    "seed",
    "test_accuracy",
    "validation_accuracy",
    "n_params",
    "epochs",
    "wall_time_s",
]


@dataclass(frozen=True)
class SweepRun:
    """One point of the sweep."""

    hidden: int
    delay: str
    seed: int
    epochs: int | None = None

    @property
    def name(self) -> str:
        """Folder name of the run."""
        return f"{self.delay}_H{self.hidden}_seed{self.seed}"


def _run_one(run: SweepRun, out: Path) -> dict[str, Any]:
    overrides = [f"network.hidden=[{run.hidden}]"]
    if run.epochs is not None:
        overrides.append(f"training.epochs={run.epochs}")
    # runs go to single-threaded Dask workers, one core each
    config = resolve_config(RECIPES[run.delay], ["training.threads=1", *overrides])
    config = config.replace(seed=run.seed)
    folder = out / run.name
    results = run_training(config, folder, plots=False)
    return _row(run, results)


def _row(run: SweepRun, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "hidden": run.hidden,
        "delay": run.delay,
        "seed": run.seed,
        "test_accuracy": results["test_accuracy"],
        "validation_accuracy": results["validation_accuracy"],
        "n_params": results["n_trainable"],
        "epochs": results["epochs"],
        "wall_time_s": round(results["wall_time_s"], 2),
    }


def describe(row: dict[str, Any]) -> str:
    """One line for a finished run."""
    return (
        f"{row['delay']:>9} H{row['hidden']:<3d} seed {row['seed']}: "
        f"test {100 * row['test_accuracy']:.1f} %  ({row['wall_time_s']:.0f} s)"
    )


def run_sweep(
    out: Path,
    *,
    hidden: Sequence[int] = (5, 10, 15, 20, 25, 30),
    delays: Sequence[str] = ("none", "axonal", "dendritic", "synaptic"),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    stream: TextIO | None = None,
) -> StudyOutcome:
    """Run (or finish) the sweep into ``out``; write ``sweep.csv`` and ``sweep.png``.

    Args:
        jobs, scheduler: where the runs go (:func:`delgrad.tools._studies.run_study`).

    Returns:
        The outcome; its rows (see ``CSV_FIELDS``) sorted by delay, hidden and seed.
    """
    points = [SweepRun(h, d, s, epochs) for d in delays for h in hidden for s in seeds]
    runs = [StudyRun(p.name, _run_one, p, f"{p.name}/results.json") for p in points]

    def load_done(run: StudyRun, path: Path) -> dict[str, Any] | None:
        results = json.loads(path.read_text())
        if epochs is not None and results["epochs"] != epochs:
            return None
        return _row(run.config, results)

    outcome = run_study(
        runs,
        out,
        label="sweep",
        describe=describe,
        scheduler=scheduler,
        jobs=jobs,
        load_done=load_done,
        stream=stream,
    )
    rows = outcome.rows
    order = {d: i for i, d in enumerate(RECIPES)}
    rows.sort(key=lambda r: (order.get(r["delay"], 9), r["hidden"], r["seed"]))

    def write_csv(fh: BinaryIO) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        fh.write(text.getvalue().encode())

    atomic_write(out / "sweep.csv", write_csv)
    plot_sweep(out / "sweep.png", rows)
    return outcome
