"""Issue 23: ``delgrad run`` under asyncio debug mode through a frozen (SIGSTOP) and a
restarted broker: it notices the stall, reconnects, keeps learning, reports the outage
in its metrics, and asyncio logs no exception or coroutine nobody retrieved."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from delgrad.protocols import Metrics
from delgrad.tools import Mosquitto

from ._e2e_helpers import (  # noqa: F401  (fixtures)
    Processes,
    RuntimeProcess,
    Subscriber,
    processes_fixture,
    start_sensor,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

LEAKS = ("never retrieved", "was never awaited")


def _after(sub: Subscriber, t: float) -> list[dict[str, float]]:
    return [dict(r.message.values) for r in sub.received(Metrics) if r.at_s > t]


async def test_run_survives_a_frozen_and_a_restarted_broker_without_asyncio_leaks(
    mosquitto: Mosquitto, processes: Processes, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    device = "stall"
    rt = RuntimeProcess(processes, mosquitto.url, device, broker={"keepalive_s": 2})
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await sub.wait_for(lambda: "birth" in sub.statuses(), 180, "the device's birth")
        start_sensor(processes, mosquitto.url, device, "--rate", 1000, "--duration", 300)
        before = await sub.wait_metric("learning.steps", 5, timeout=120)

        os.kill(mosquitto.pid, signal.SIGSTOP)
        await asyncio.sleep(8.0)  # 4 keepalive periods: noticed long before
        os.kill(mosquitto.pid, signal.SIGCONT)
        thawed = time.monotonic()
        await sub.wait_for(
            lambda: any(
                m.get("transport.stalls", 0) >= 1
                and m.get("transport.down_s", 0) > 1.0
                and m["learning.steps"] > before["learning.steps"] + 5
                for m in _after(sub, thawed)
            ),
            timeout=90,
            what="metrics after the thaw: one stall, the outage, more learning",
        )
        mosquitto.kill()
        await asyncio.sleep(2.0)
        mosquitto.start()
        restarted = time.monotonic()
        await sub.wait_for(
            lambda: any(m.get("transport.reconnects", 0) >= 2 for m in _after(sub, restarted)),
            timeout=90,
            what="metrics after the broker restart",
        )
        rt.assert_running()
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()
    output = rt.output()
    assert "link lost (the broker stopped answering)" in output
    leaks = [line for line in output.splitlines() if any(s in line for s in LEAKS)]
    assert not leaks, "\n".join(leaks)
