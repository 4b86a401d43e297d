"""``delgrad summarize [RUNS_DIR]``: the markdown results table of ``delgrad train`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from delgrad.tools._summarize_runs import summarize


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad summarize``."""
    parser.add_argument(
        "runs",
        nargs="?",
        type=Path,
        default=Path("runs"),
        metavar="RUNS_DIR",
        help="folder whose */results.json are read (default runs); grouped by config, "
        "medians printed",
    )


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    print(summarize(args.runs))
    return 0
