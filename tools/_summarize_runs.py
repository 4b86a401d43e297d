"""Summarise ``delgrad train`` output folders into the markdown table of docs/results.md."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AUTHORS", "summarize"]

#: The DelGrad authors' recorded single-run test accuracies (%).
AUTHORS = {
    "yinyang_H30_W": 96.7,
    "yinyang_H30_WA": 97.5,
    "yinyang_H30_WS": 98.2,
    "yinyang_H5_WS": 95.4,
    "yinyang_fd2021": 96.0,
}


def summarize(root: Path) -> str:
    """Markdown table: config, seeds, median and range of test accuracy, wall time.

    Reads every ``*/results.json`` below ``root`` and groups the runs by config name.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
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
