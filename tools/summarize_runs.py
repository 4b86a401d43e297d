"""Summarise ``delgrad train`` output folders into the markdown table of docs/results.md.

Usage: ``python -m delgrad.tools.summarize_runs RUNS_DIR`` (reads every
``*/results.json`` below RUNS_DIR, groups by config name, prints medians).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

#: The DelGrad authors' recorded single-run test accuracies (%).
AUTHORS = {
    "yinyang_H30_W": 96.7,
    "yinyang_H30_WA": 97.5,
    "yinyang_H30_WS": 98.2,
    "yinyang_H5_WS": 95.4,
    "yinyang_fd2021": 96.0,
}


def summarize(root: Path) -> str:
    """Markdown table: config, seeds, median and range of test accuracy, wall time."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(root.glob("*/results.json")):
        result = json.loads(path.read_text())
        groups[result["config_name"]].append(result)
    lines = [
        "| config | seeds | test accuracy, median (%) | all seeds (%) | authors (%) | "
        "trainable params | wall time per run, median (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(groups):
        runs = sorted(groups[name], key=lambda r: r["seed"])
        acc = np.array([100 * r["test_accuracy"] for r in runs])
        wall = np.median([r["wall_time_s"] for r in runs])
        seeds = ",".join(str(r["seed"]) for r in runs)
        values = ", ".join(f"{a:.1f}" for a in acc)
        authors = AUTHORS.get(name)
        ref = "-" if authors is None else f"{authors:.1f}"
        lines.append(
            f"| {name} | {seeds} | **{np.median(acc):.1f}** | {values} | {ref} | "
            f"{runs[0]['n_trainable']} | {wall:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "runs")))
