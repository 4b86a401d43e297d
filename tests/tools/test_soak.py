"""The soak's schedule and its judgements (tools/_soak.py, _soak_checks.py), without the
hours: constructed observations that must pass or be caught."""

from __future__ import annotations

from collections import Counter

from delgrad.tools._soak import FULL_DURATION_S, schedule
from delgrad.tools._soak_checks import SoakLedger


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
    assert ledger.boots == 3


def test_update_numbers_rss_checkpoints_and_warnings():
    ledger = SoakLedger(warm_up_s=10.0)
    ledger.new_boot(0.0, None)
    ledger.parameter_seq(1.0, 5, retained=False)
    ledger.parameter_seq(1.5, 3, retained=True)  # an old retained snapshot: not judged
    ledger.parameter_seq(2.0, 4, retained=False)
    ledger.envelope_seq(2.0, "t/metrics", 9, retained=False)
    ledger.envelope_seq(2.5, "t/metrics", 8, retained=False)
    assert len(ledger.violations) == 2
    for t, mb in ((5.0, 500.0), (10.0, 200.0), (20.0, 204.0), (30.0, 203.0)):
        ledger.rss(t, mb)  # the first sample is in the warm-up
    ledger.new_boot(31.0, None)
    ledger.rss(45.0, 180.0)
    ledger.finish(50.0)
    assert ledger.rss_growth_mb == [4.0, 0.0]
    ledger.checkpoints(1.0, None)  # none yet: fine
    ledger.checkpoints(2.0, 100)
    ledger.checkpoints(3.0, 120)
    assert ledger.checkpoints_lost == 0
    ledger.checkpoints(4.0, None)
    ledger.checkpoints(5.0, 90)
    assert ledger.checkpoints_lost == 2
    ledger.metrics(6.0, {"health.storage": 1.0, "health.warnings": 1.0})
    ledger.metrics(7.0, {"health.storage": 0.0, "health.no_steps": 1.0})
    assert ledger.active_warnings == ["no_steps"]
    assert ledger.warnings[0] == {"warning": "storage", "raised_s": 6.0, "cleared_s": 7.0}
