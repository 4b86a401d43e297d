"""``delgrad sweep``: hidden size x delay kind x seed, in parallel processes, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from delgrad.tools._plots import sweep_summary
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
    parser.add_argument("--jobs", type=int, help="parallel processes (default: all cores)")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"), help="output folder")


def run(args: argparse.Namespace) -> int:
    """Run the sweep and print a summary table."""

    def on_done(row, done, total):
        print(
            f"[{done:3d}/{total}] {row['delay']:>9} H{row['hidden']:<3d} seed {row['seed']}: "
            f"test {100 * row['test_accuracy']:.1f} %  ({row['wall_time_s']:.0f} s)",
            flush=True,
        )

    rows = run_sweep(
        args.out,
        hidden=args.hidden,
        delays=args.delays,
        seeds=args.seeds,
        epochs=args.epochs,
        jobs=args.jobs,
        on_done=on_done,
    )
    print(
        f"\nmedian test error (%) [25-75 %], {len(rows)} runs; table {args.out / 'sweep.csv'}, "
        f"figure {args.out / 'sweep.png'}"
    )
    for delay, points in sweep_summary(rows).items():
        cells = "  ".join(f"H{h}: {m:.1f} [{lo:.1f}-{hi:.1f}]" for h, _, m, lo, hi in points)
        print(f"{delay:>9}  {cells}")
    return 0
