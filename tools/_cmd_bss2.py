"""``delgrad bss2 calibrate --out chip.pbin``: the DelGrad calibration of a BrainScaleS-2 chip.

Runs on a machine with the BrainScaleS-2 stack (calix, dlens_vx_v3, pynn_brainscales):
calix with the recipe's targets, then the delay elements' operating points, into one
portable-binary file plus its record ``chip.pbin.json`` (docs/hardware.md, 'First run
on a real chip'). Exit 0 when the written file passes the driver's check, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from delgrad.drivers import calibrate_bss2_chip


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad bss2``."""
    sub = parser.add_subparsers(dest="action", required=True)
    cal = sub.add_parser("calibrate", help="calix + delay-element calibration into one file")
    cal.add_argument("--out", required=True, type=Path, help="calibration file to write (.pbin)")
    cal.add_argument("--seed", type=int, default=0, help="spread of the layer neurons' i_synin_gm")


def run(args: argparse.Namespace) -> int:
    """Calibrate; print the file, its record and any remaining mismatch, one per line."""
    problems = calibrate_bss2_chip(args.out, seed=args.seed)
    print(f"wrote {args.out} and {args.out}.json")
    for line in problems:
        print(f"delgrad bss2 calibrate: {line}", file=sys.stderr)
    return 1 if problems else 0
