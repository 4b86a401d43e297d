"""The soak's schedule and its judgements (tools/_soak.py, _soak_checks.py), without the
hours: constructed observations that must pass or be caught."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter

import pytest

from delgrad.tools._soak import FULL_DURATION_S, Fault, run_soak, schedule
from delgrad.tools._soak_checks import SoakLedger, is_counter


def test_the_two_hour_schedule_is_the_issues_and_a_short_one_has_every_fault():
    full = Counter(f.kind for f in schedule(FULL_DURATION_S))
    assert full == {"kill": 11, "fill": 2, "freeze": 2, "broker_restart": 5, "read_only": 1}
    holds = {f.kind: f.hold_s for f in schedule(FULL_DURATION_S) if f.hold_s}
    assert holds == {"fill": 120.0, "freeze": 60.0, "read_only": 120.0}
    short = schedule(240.0)
    assert set(Counter(f.kind for f in short)) == set(full)
    assert all(0 < f.at_s < 240 and f.hold_s in (0, 5.0) for f in short)
    assert [f.at_s for f in short] == sorted(f.at_s for f in short)


def _boot(ledger: SoakLedger, t: float, restored=None, **values: float) -> None:
    ledger.new_boot(t, restored)
    ledger.metrics(t, dict(values))


def test_counters_may_restart_from_the_checkpoint_but_never_go_back_within_a_boot():
    ledger = SoakLedger(warm_up_s=0.0)
    _boot(ledger, 0.0, None, **{"trials.processed": 0.0, "learning.steps": 0.0})
    ledger.metrics(1.0, {"trials.processed": 500.0, "learning.steps": 10.0, "accuracy": 0.9})
    # SIGKILL: the checkpoint had 400 trials; the new boot starts at 400 (not a violation)
    _boot(ledger, 2.0, {"trials.processed": 400}, **{"trials.processed": 400.0})
    assert ledger.violations == [] and ledger.counts_lost_at_kills["trials.processed"] == 100
    ledger.metrics(3.0, {"trials.processed": 390.0})  # within a boot: caught
    assert len(ledger.violations) == 1 and "went back" in ledger.violations[0]
    # a boot that starts below its checkpoint: caught
    _boot(ledger, 4.0, {"learning.steps": 50}, **{"learning.steps": 20.0})
    assert len(ledger.violations) == 2 and "below the checkpoint" in ledger.violations[1]
    assert ledger.boots == 3 and ledger.counters_backwards == 2
    # gauges may fall: not judged
    ledger.metrics(5.0, {"accuracy": 0.1, "queue.pending_trials": 0.0, "broker.outage_s": 0.0})
    assert ledger.counters_backwards == 2


def test_which_metrics_are_counters():
    for name in ("trials.processed", "storage.failures", "transport.stalls", "checkpoints.failed"):
        assert is_counter(name), name
    for name in ("accuracy", "health.storage", "broker.outage_s", "join.waiting_trials"):
        assert not is_counter(name), name


def test_update_numbers_rss_checkpoints_and_warnings():
    ledger = SoakLedger(warm_up_s=10.0)
    ledger.new_boot(0.0, None)
    ledger.parameter_seq(1.0, 5, retained=False)
    ledger.parameter_seq(1.5, 3, retained=True)  # an old retained snapshot: not judged
    ledger.parameter_seq(2.0, 4, retained=False)
    ledger.envelope_seq(2.0, "t/metrics", 9, retained=False)
    ledger.envelope_seq(2.5, "t/metrics", 8, retained=False)
    assert len(ledger.violations) == 2 and ledger.numbers_backwards == 2
    for t, mb in ((5.0, 500.0), (10.0, 200.0), (20.0, 204.0), (30.0, 203.0)):
        ledger.rss(t, mb, started_s=0.0)  # the first sample is in the warm-up
    # a new process (before its first metrics): its own baseline, its own warm-up
    ledger.rss(33.0, 30.0, started_s=31.0)
    ledger.rss(45.0, 180.0, started_s=31.0)
    ledger.rss(50.0, 181.5, started_s=31.0)
    ledger.finish(50.0)
    assert ledger.rss_growth_mb == [4.0, 1.5]
    assert ledger.rss_after_warm_up_mb == [200.0, 180.0]
    ledger.checkpoints(1.0, None)  # none yet: fine
    ledger.checkpoints(2.0, 100)
    ledger.checkpoints(3.0, 120)
    assert ledger.checkpoints_lost == 0
    ledger.checkpoints(4.0, None)
    ledger.checkpoints(5.0, 90)
    assert ledger.checkpoints_lost == 2
    assert ledger.metrics(6.0, {"health.storage": 1.0, "health.warnings": 1.0}) == [
        "warning storage raised"
    ]
    ledger.metrics(7.0, {"health.storage": 0.0, "health.no_steps": 1.0})
    assert ledger.active_warnings == ["no_steps"]
    assert ledger.warnings[0] == {"warning": "storage", "raised_s": 6.0, "cleared_s": 7.0}


@pytest.mark.skipif(os.geteuid() != 0, reason="the soak mounts a tmpfs: needs root")
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary")
def test_a_short_real_soak_reports_sane_figures(tmp_path):
    """About 60 s of the real thing, one fault of each kind (not overlapping); the
    restart after the kill has 20 s to come up."""
    faults = [
        Fault(8.0, "fill", 5.0),
        Fault(14.0, "freeze", 3.0),
        Fault(18.0, "read_only", 4.0),
        Fault(23.0, "broker_restart"),
        Fault(25.0, "kill"),
    ]
    lines: list[str] = []
    report = asyncio.run(
        run_soak(
            duration_s=45.0,
            warm_up_s=5.0,
            sample_every_s=1.0,
            faults=faults,
            folder=tmp_path,
            log=lines.append,
        )
    )
    summary = report.summary()
    assert summary["faults"] == {
        k: 1 for k in ("kill", "fill", "freeze", "broker_restart", "read_only")
    }
    assert all(
        "end_s" in e and "error" not in e for e in report.events if e["kind"] in summary["faults"]
    )
    assert summary["boots_count"] == 2, lines  # the first process and the one after the kill
    acceptance = summary["acceptance"]
    assert acceptance["counters_backwards_count"] == 0, summary["violations"]
    assert acceptance["checkpoints_lost_count"] == 0, summary["violations"]
    assert summary["disk_used_max_fraction"] > 0.99  # the fill was seen by a sample
    assert summary["checkpoints_in_folder_min_max"][1] >= 1
    assert 0.5 < summary["accuracy_last_fraction"] <= 1.0
    assert 50.0 < summary["rss_max_mb"] < 2000.0
    # every health.*, storage.*, broker.* and transport.* metric is kept in the samples
    kept = set().union(*(s["metrics"] for s in report.samples))
    assert {"health.warnings", "storage.writes", "transport.received"} <= kept, kept
    assert (tmp_path / "samples.jsonl").stat().st_size > 0
    assert (tmp_path / "events.jsonl").stat().st_size > 0
