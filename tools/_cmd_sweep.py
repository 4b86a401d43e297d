"""``delgrad sweep``: hidden size x delay kind x seed, a resumable study on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

from delgrad.tools._plots import sweep_summary
from delgrad.tools._studies import add_study_arguments, exit_code
from delgrad.tools._sweep import run_sweep


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad sweep``."""
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[5, 10, 15, 20, 25, 30],
        metavar="N",
        help="hidden layer sizes (default 5 10 15 20 25 30)",
    )
    parser.add_argument(
        "--delays",
        nargs="+",
        default=["none", "axonal", "dendritic", "synaptic"],
        choices=["none", "axonal", "dendritic", "synaptic"],
        metavar="KIND",
        help="delay kinds: none, axonal, dendritic, synaptic (default all four)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds (default 0 1 2)"
    )
    parser.add_argument("--epochs", type=int, help="override the recipes' 300 epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"), help="output folder")
    add_study_arguments(parser, jobs_default="one per core")


def run(args: argparse.Namespace) -> int:
    """Run the sweep and print a summary table."""
    outcome = run_sweep(
        args.out,
        hidden=args.hidden,
        delays=args.delays,
        seeds=args.seeds,
        epochs=args.epochs,
        jobs=args.jobs,
        scheduler=args.scheduler,
    )
    rows = outcome.rows
    print(
        f"\nmedian test error (%) [25-75 %], {len(rows)} runs; table {args.out / 'sweep.csv'}, "
        f"figure {args.out / 'sweep.png'}"
    )
    for delay, points in sweep_summary(rows).items():
        cells = "  ".join(f"H{h}: {m:.1f} [{lo:.1f}-{hi:.1f}]" for h, _, m, lo, hi in points)
        print(f"{delay:>9}  {cells}")
    return exit_code("sweep", outcome)
