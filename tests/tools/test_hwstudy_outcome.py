"""Issue 13's outcome: the authors' gap under their rule, and what our rule does to it.

Twelve chip-in-the-loop runs of 300 epochs (yinyang_hw_W / _WA x observed /
nominal x chips 0-2, seed 0; about 12 minutes on one free core), so it runs only
when asked: ``DELGRAD_HW_STUDY=DIR pytest -m slow tests/tools/test_hwstudy_outcome.py``
trains the cells missing in DIR (``delgrad hwstudy`` writes the same files) and
checks them. The figures are in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import pytest

from delgrad.tools._cmd_hwstudy import cell_path, jobs, load_rows, run_one

pytestmark = pytest.mark.slow

STUDY = os.environ.get("DELGRAD_HW_STUDY")


@pytest.mark.skipif(
    not STUDY, reason="12 training runs (~12 min): set DELGRAD_HW_STUDY=DIR to run or check them"
)
def test_nominal_rule_opens_the_gap_and_silences_labels_observed_rule_closes_it():
    out = Path(str(STUDY))
    out.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(
        nets=["W", "WA"], rules=["observed", "nominal"], chips=[0, 1, 2], seeds=[0], mismatch=[0.0]
    )
    for cell in jobs(args):
        path = cell_path(out, *cell)
        if not path.is_file():
            path.write_text(json.dumps(run_one(*cell, epochs=300)))
    rows = [
        r for r in load_rows(out) if r["mismatch"] == 0 and r["seed"] == 0 and r["epochs"] == 300
    ]

    def median(net: str, rule: str, key: str) -> float:
        values = [r[key] for r in rows if r["net"] == net and r["rule"] == rule]
        assert len(values) == 3, (net, rule, values)
        return statistics.median(values)

    gap_nominal = median("WA", "nominal", "val_last20") - median("W", "nominal", "val_last20")
    gap_observed = median("WA", "observed", "val_last20") - median("W", "observed", "val_last20")
    assert gap_nominal >= 0.03, gap_nominal
    assert median("W", "nominal", "silent_label") >= 0.02
    assert abs(gap_observed) < 0.02, gap_observed
