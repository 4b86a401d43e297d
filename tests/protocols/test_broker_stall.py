"""Issue 23: a broker that holds the connection but stops answering (SIGSTOP) is noticed
within the documented bound, the link comes back after it thaws, and asyncio never logs
an exception nobody retrieved (the loop runs in debug mode)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time

import pytest

from delgrad.protocols import MqttTransport
from delgrad.tools import Mosquitto

KEEPALIVE_S = 2
TIMEOUT_S = 1.0
NEVER_RETRIEVED = ("never retrieved", "was never awaited")


def _links_to(port: int) -> int:
    """Open TCP connections from this machine to ``port`` (any state but closed)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] in ("01", "02"):  # established, syn-sent
                    count += 1
    return count


async def _until(predicate, timeout_s: float) -> float:
    """Seconds until ``predicate()`` holds (fails after ``timeout_s``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.broker
async def test_a_frozen_broker_is_noticed_within_the_bound_and_the_link_comes_back(
    mosquitto: Mosquitto, caplog
) -> None:
    asyncio.get_running_loop().set_debug(True)
    caplog.set_level(logging.INFO)

    def transport(name: str) -> MqttTransport:
        return MqttTransport(
            "127.0.0.1",
            mosquitto.port,
            client_id=f"stall-{name}",
            keepalive_s=KEEPALIVE_S,
            timeout_s=TIMEOUT_S,
            reconnect_max_s=0.5,
        )

    busy, quiet = transport("busy"), transport("quiet")
    await busy.connect()
    await quiet.connect()
    await quiet.subscribe("stall/#")

    async def publish_forever() -> None:
        while True:
            await busy.publish("stall/status", b"x", qos=1, retain=False)
            await asyncio.sleep(0.1)

    publisher = asyncio.create_task(publish_forever())
    try:
        await asyncio.sleep(0.5)
        os.kill(mosquitto.pid, signal.SIGSTOP)
        try:
            # an unacknowledged QoS 1 message: within timeout_s (+ the loop's tick)
            busy_s = await _until(lambda: not busy.connected, 10 * TIMEOUT_S)
            # a link that publishes nothing: within 2 keepalive periods + 1 s
            quiet_s = await _until(lambda: not quiet.connected, 2 * KEEPALIVE_S + 3)
            await asyncio.sleep(1.0)
            assert busy.outage_s > 0.9 and quiet.outage_s > 0.5
            assert busy.stats.stalls == 1 and quiet.stats.stalls == 1
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
        await _until(lambda: busy.connected and quiet.connected, 15)
        await asyncio.sleep(2 * KEEPALIVE_S)
        # the attempts the frozen broker never answered left no socket behind: once it
        # thaws, it would answer them and a ghost would take over the live client id
        assert _links_to(mosquitto.port) == 2
        assert busy.stats.reconnects == 1 and quiet.stats.reconnects == 1
        assert busy.outage_s == 0.0 and busy.stats.down_s > 1.0 and quiet.stats.down_s > 0.5
        # a restarted broker too (the link is closed this time, not stalled)
        mosquitto.kill()
        await _until(lambda: not busy.connected and not quiet.connected, 2 * KEEPALIVE_S + 3)
        mosquitto.start()
        await _until(lambda: busy.connected and quiet.connected, 15)
        assert busy.stats.stalls == 1 and quiet.stats.stalls == 1
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
        await busy.close()
        await quiet.close()
    gc.collect()
    await asyncio.sleep(0.1)
    gc.collect()
    assert busy_s <= TIMEOUT_S + 1.5, busy_s
    assert quiet_s <= 2 * KEEPALIVE_S + 1.5, quiet_s
    lost = [r for r in caplog.records if "link lost" in r.getMessage()]
    back = [r for r in caplog.records if "link back after" in r.getMessage()]
    assert len(lost) == 4 and len(back) == 4  # one line each per outage, per client
    assert "stopped answering" in lost[0].getMessage()
    leaked = [
        r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in NEVER_RETRIEVED)
    ]
    assert not leaked, leaked


@pytest.mark.parametrize("value", [0, 65536, 2.5, "10"])
def test_keepalive_out_of_range_or_of_the_wrong_type_is_refused_in_one_line(value) -> None:
    from delgrad.errors import ConfigError
    from delgrad.runtime.service import run_config_from_dict

    with pytest.raises(ConfigError, match=r"broker\.keepalive_s") as info:
        run_config_from_dict({"broker": {"keepalive_s": value}})
    assert "\n" not in str(info.value)
    assert run_config_from_dict({"broker": {"keepalive_s": 1}}).broker.keepalive_s == 1


@pytest.mark.broker
async def test_a_link_broken_while_a_packet_waits_to_be_written_logs_no_error(
    mosquitto: Mosquitto, caplog
) -> None:
    import socket

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 5.0
    tx = MqttTransport("127.0.0.1", mosquitto.port, client_id="tx", reconnect_max_s=0.5)
    async with asyncio.timeout(30), tx:
        assert tx._client is not None
        paho = tx._client._client
        # In one loop iteration a packet is queued (paho asks for a write callback,
        # added on the next iteration) and the broker's EOF is read (paho closes the
        # socket): a broker that dies while the device publishes.
        paho.publish("delgrad/v1/dev1/labels", b"x", qos=1)
        paho.socket().shutdown(socket.SHUT_RDWR)
        paho.loop_read()
        await _until(lambda: not tx.connected, 10)
        await tx.wait_connected(timeout=10)
    gc.collect()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
