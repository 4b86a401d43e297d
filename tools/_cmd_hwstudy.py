"""``delgrad hwstudy``: the hardware recipes under both gradient rules (issue 13).

Trains ``yinyang_hw_W`` / ``yinyang_hw_WA`` chip in the loop on emulated
BrainScaleS-2 chips with ``training.backward_threshold`` = observed / nominal,
optionally with the emulator's mismatch extension (the mismatch study), and writes
one JSON file and the last network per run into ``--out``; a study on Dask
(:mod:`delgrad.tools._studies`: finished runs are skipped, so an interrupted study
resumes; ``--scheduler`` spreads it over a cluster).
``--table`` prints the markdown tables of docs/results.md from such a folder.

Per run: test accuracy on the chip it was trained on as the mean of 5 passes over
the test set in batches of 40 (each batch draws its own threshold noise), the
fraction of test samples whose label neuron is silent (same passes), the mean
validation accuracy over the last 20 epochs, for the last network and for the
best-validation one (``training.select``).

    delgrad hwstudy --out /tmp/hw13/main --chips 0 1 2 --seeds 0 1 2
    delgrad hwstudy --out /tmp/hw13/mm --mismatch 0.05 0.15 --seeds 0 --jobs 2
    delgrad hwstudy --out /tmp/hw13/main --table
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.drivers import BSS2Params, EmulatorDriver
from delgrad.runtime import (
    DriverObserver,
    Trainer,
    atomic_write,
    predict,
    resolve_config,
    save_network,
)
from delgrad.tools._studies import StudyRun, add_study_arguments, exit_code, run_study

RECIPES = {"W": "yinyang_hw_W", "WA": "yinyang_hw_WA"}
RULES = ("observed", "nominal")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad hwstudy``."""
    parser.add_argument("--out", type=Path, required=True, help="folder of per-run JSON files")
    parser.add_argument("--nets", nargs="+", default=["W", "WA"], choices=sorted(RECIPES))
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--chips", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--mismatch",
        nargs="+",
        type=float,
        default=[0.0],
        help="relative spread used for tau_m, tau_s and synapse gains together (0 = off)",
    )
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--shard", default="0/1", help="k/n: run every n-th job from the k-th")
    add_study_arguments(parser, jobs_default="one per core")
    parser.add_argument("--table", action="store_true", help="print the tables of --out and exit")


def _chip(mismatch: float) -> Any:
    return replace(
        BSS2Params(),
        tau_m_mismatch_std=mismatch,
        tau_s_mismatch_std=mismatch,
        weight_gain_std=mismatch,
    )


def chip_test_accuracy(
    net: Any, t_in: np.ndarray, labels: np.ndarray, chip_seed: int, mismatch: float
) -> tuple[float, float]:
    """(accuracy, silent-label fraction), each the mean of 5 passes in batches of 40."""
    acc, silent = [], []
    with EmulatorDriver("bss2", _chip(mismatch), chip_seed=chip_seed) as drv:
        drv.configure(net)
        for _ in range(5):
            out = np.concatenate(
                [drv.run(t_in[i : i + 40]).output for i in range(0, len(t_in), 40)]
            )
            acc.append(float(np.mean(predict(out) == labels)))
            silent.append(float(np.mean(np.isinf(out[np.arange(len(labels)), labels]))))
    return float(np.mean(acc)), float(np.mean(silent))


def run_one(
    net: str,
    rule: str,
    chip: int,
    seed: int,
    mismatch: float,
    epochs: int,
    save: Path | None = None,
) -> dict[str, Any]:
    """Train one cell of the study and measure it (see the module doc).

    ``save``: if given, the last network is written there (``save_network``).
    """
    config = resolve_config(
        RECIPES[net],
        [
            f"training.backward_threshold={rule}",
            f"training.chip_seed={chip}",
            f"training.epochs={epochs}",
        ],
    ).replace(seed=seed)
    start = time.perf_counter()
    with EmulatorDriver("bss2", _chip(mismatch), chip_seed=chip) as drv:
        trainer = Trainer(config, observe=DriverObserver(drv))
        trainer.fit()
    t_in, labels = trainer.data("test")
    row: dict[str, Any] = {"net": net, "rule": rule, "chip": chip, "seed": seed}
    row.update({"mismatch": mismatch, "epochs": epochs})
    val = [h["validation_accuracy"] for h in trainer.history]
    row["val_last20"] = float(np.mean(val[-20:]))
    row["test"], row["silent_label"] = chip_test_accuracy(
        trainer.net_forward, t_in, labels, chip, mismatch
    )
    if save is not None:
        save_network(trainer.net_forward, save)
    trainer.restore_best()
    row["best_epoch"], row["best_val"] = trainer.best_epoch, trainer.best_validation
    row["test_best_val"], row["silent_label_best_val"] = chip_test_accuracy(
        trainer.net_forward, t_in, labels, chip, mismatch
    )
    row["train_silent_output_last20"] = float(
        np.mean([h["silent_output"] for h in trainer.history[-20:]])
    )
    row["seconds"] = time.perf_counter() - start
    return row


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int, int, float]]:
    """Every (net, rule, chip, seed, mismatch) cell, in a fixed order."""
    return list(itertools.product(args.nets, args.rules, args.chips, args.seeds, args.mismatch))


def cell_path(out: Path, net: str, rule: str, chip: int, seed: int, mismatch: float) -> Path:
    """The JSON file of one cell."""
    return out / f"{net}_{rule}_chip{chip}_seed{seed}_mm{mismatch:g}.json"


def _train_cell(cell: tuple[Any, ...], folder: Path) -> dict[str, Any]:
    """One study run: the cell's network and JSON file under ``folder``."""
    net, rule, chip, seed, mismatch, epochs = cell
    path = cell_path(folder, net, rule, chip, seed, mismatch)
    row = run_one(net, rule, chip, seed, mismatch, epochs, save=path.with_suffix(".npz"))
    atomic_write(path, lambda fh: fh.write(json.dumps(row, indent=1).encode()))
    return row


def _describe(row: dict[str, Any]) -> str:
    name = cell_path(Path(), row["net"], row["rule"], row["chip"], row["seed"], row["mismatch"])
    return (
        f"{name}: test {100 * row['test']:.1f} %, val last 20 "
        f"{100 * row['val_last20']:.1f} %, silent label {100 * row['silent_label']:.1f} %, "
        f"{row['seconds']:.0f} s"
    )


def load_rows(out: Path) -> list[dict[str, Any]]:
    """Every finished cell in ``out``."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def _pct(values: list[float]) -> str:
    return f"{100 * statistics.median(values):.1f}" if values else "-"


def tables(rows: list[dict[str, Any]]) -> str:
    """Markdown: per (mismatch, net, rule) medians over chips and seeds, and every run."""
    lines = [
        "| mismatch | network | rule | runs | test (5 passes) | val last 20 | silent label "
        "| test, best-val network | silent label, best-val |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    key = lambda r: (r["mismatch"], r["net"], r["rule"])  # noqa: E731
    for (mm, net, rule), group in itertools.groupby(sorted(rows, key=key), key=key):
        g = list(group)
        lines.append(
            f"| {mm:g} | {net} | {rule} | {len(g)} | {_pct([r['test'] for r in g])} "
            f"| {_pct([r['val_last20'] for r in g])} | {_pct([r['silent_label'] for r in g])} "
            f"| {_pct([r['test_best_val'] for r in g])} "
            f"| {_pct([r['silent_label_best_val'] for r in g])} |"
        )
    lines += [
        "",
        "| mismatch | network | rule | chip | seed | test | val last 20 | silent label "
        "| best epoch | test best-val |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (key(r), r["chip"], r["seed"])):
        lines.append(
            f"| {r['mismatch']:g} | {r['net']} | {r['rule']} | {r['chip']} | {r['seed']} "
            f"| {100 * r['test']:.1f} | {100 * r['val_last20']:.1f} "
            f"| {100 * r['silent_label']:.1f} | {r['best_epoch']} "
            f"| {100 * r['test_best_val']:.1f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the missing cells of this shard, or print the tables; returns the exit code."""
    if args.table:
        print(tables(load_rows(args.out)))
        return 0
    try:
        k, n = (int(x) for x in args.shard.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        print(
            f"delgrad hwstudy: --shard must be k/n with 0 <= k < n, got {args.shard}",
            file=sys.stderr,
        )
        return 2
    cells = [cell for index, cell in enumerate(jobs(args)) if index % n == k]
    runs = [
        StudyRun(
            cell_path(Path(), *cell).stem,
            _train_cell,
            (*cell, args.epochs),
            cell_path(Path(), *cell).name,
        )
        for cell in cells
    ]
    outcome = run_study(
        runs,
        args.out,
        label="hwstudy",
        describe=_describe,
        jobs=args.jobs,
        scheduler=args.scheduler,
    )
    return exit_code("hwstudy", outcome)
