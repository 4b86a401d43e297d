"""The DelGrad size sweep: hidden sizes x delay kinds x seeds, in parallel, resumable.

Each run uses the H30 recipe of its delay kind (weights only: yinyang_H30_W,
axonal: _WA, dendritic: _WD, synaptic: _WS) with the hidden size replaced, and
writes its own folder ``{delay}_H{hidden}_seed{seed}``; a finished run (its
``results.json`` exists) is skipped, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from delgrad.runtime import atomic_write, resolve_config
from delgrad.tools._plots import plot_sweep
from delgrad.tools._process_pool import run_in_processes
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


def _run_one(run: SweepRun, out: str) -> dict[str, Any]:
    overrides = [f"network.hidden=[{run.hidden}]"]
    if run.epochs is not None:
        overrides.append(f"training.epochs={run.epochs}")
    # runs go in parallel processes, one core each
    config = resolve_config(RECIPES[run.delay], ["training.threads=1", *overrides])
    config = config.replace(seed=run.seed)
    folder = Path(out) / run.name
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


def run_sweep(
    out: Path,
    *,
    hidden: Sequence[int] = (5, 10, 15, 20, 25, 30),
    delays: Sequence[str] = ("none", "axonal", "dendritic", "synaptic"),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int | None = None,
    jobs: int | None = None,
    on_done: Callable[[dict[str, Any], int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or finish) the sweep into ``out``; write ``sweep.csv`` and ``sweep.png``.

    Returns:
        One row per run (see ``CSV_FIELDS``), sorted by delay, hidden and seed.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = [SweepRun(h, d, s, epochs) for d in delays for h in hidden for s in seeds]
    rows: list[dict[str, Any]] = []
    todo = []
    for run in runs:
        done = out / run.name / "results.json"
        results = json.loads(done.read_text()) if done.is_file() else None
        if results is not None and (epochs is None or results["epochs"] == epochs):
            rows.append(_row(run, results))
        else:
            todo.append(run)
    total = len(runs)
    if on_done is not None:
        for row in rows:
            on_done(row, len(rows), total)
    if todo:
        workers = jobs or os.cpu_count() or 1
        for row in run_in_processes(_run_one, [(run, str(out)) for run in todo], workers):
            rows.append(row)
            if on_done is not None:
                on_done(rows[-1], len(rows), total)
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
    return rows
