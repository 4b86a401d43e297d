"""The fast, seeded chaos run (issue 10): hostile commands (the eight cases), bad and
oversize messages, QoS 1 duplicates, a broker restart and a SIGKILL + restart of
``delgrad run`` over Mosquitto on loopback; no invariant may break. The long run is
``delgrad bench chaos`` (figures in docs/security.md)."""

from __future__ import annotations

import pytest

from delgrad.tools import mosquitto_binary
from delgrad.tools._chaos import run_chaos

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_fast_chaos_run_breaks_no_invariant(tmp_path) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed")
    report = await run_chaos(
        events=60, broker_restarts=2, kills=1, seed=7, learn_every=30, folder=tmp_path
    )
    summary = report.summary()
    assert summary["violations"] == 0, report.violations
    assert summary["events"] == 60 and summary["invariant_checks"] >= 61
    assert report.events["broker_restart"] == 2 and report.events["kill"] == 1
    assert summary["learning_steps"] > 0
    assert summary["wall_s"] < 240
