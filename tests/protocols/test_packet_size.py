"""Maximum packet size (issue 10, case 6): the client refuses a packet larger than
``max_packet_bytes`` before reading it, under MQTT 5 (the broker is told and never
sends it) and 3.1.1 (the link is dropped at the packet's header and reconnected)."""

from __future__ import annotations

import asyncio

import pytest

from delgrad.errors import ParameterError
from delgrad.protocols import IncomingMessage, MqttTransport, TransportStats
from delgrad.protocols._queues import Inbox
from delgrad.tools import Mosquitto

pytestmark = [pytest.mark.broker]

LIMIT = 64 * 1024
TOPIC = "delgrad/v1/dev/events/in"


def test_limit_is_checked() -> None:
    with pytest.raises(ParameterError):
        MqttTransport(max_packet_bytes=10)
    with pytest.raises(ParameterError):
        MqttTransport(max_packet_bytes=300 * 1024 * 1024)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_oversize_packet_is_refused_and_the_link_goes_on(
    mosquitto: Mosquitto, protocol: str
) -> None:
    small = b"s" * 100
    async with (
        MqttTransport("127.0.0.1", mosquitto.port, protocol=protocol, max_packet_bytes=LIMIT) as rx,
        MqttTransport("127.0.0.1", mosquitto.port) as tx,
    ):
        await rx.subscribe(TOPIC, qos=1)
        await tx.publish(TOPIC, b"x" * (4 * LIMIT), qos=1)
        await tx.flush(timeout=10)
        if protocol == "3.1.1":  # the link was dropped at the big packet's header
            for _ in range(200):
                if rx.stats.reconnects and rx.connected:
                    break
                await asyncio.sleep(0.05)
        await tx.publish(TOPIC, small, qos=1)
        got = await rx.recv(timeout=15)
        assert got.payload == small  # the big one never reached the inbox
        if protocol == "3.1.1":
            assert rx.stats.refused_oversize == 1 and rx.stats.reconnects == 1
        else:  # the broker knew the limit and did not send it
            assert rx.stats.refused_oversize == 0 and rx.stats.reconnects == 0


def test_inbox_holds_at_most_max_bytes_of_payload() -> None:
    stats = TransportStats()
    inbox = Inbox(10_000, stats, max_bytes=1000)
    assert inbox.put(IncomingMessage("t", b"x" * 2000, 0, False))  # an empty inbox takes one
    assert inbox.put(IncomingMessage("t", b"r" * 400, 1, False))  # drops the big lossy one
    assert stats.dropped_in_lossy == 1 and inbox.bytes == 400
    assert inbox.put(IncomingMessage("t", b"l" * 500, 0, False))
    assert inbox.put(IncomingMessage("t", b"r" * 500, 1, False))  # the lossy one makes room
    assert stats.dropped_in_lossy == 2 and inbox.bytes == 900
    assert not inbox.put(IncomingMessage("t", b"r" * 700, 1, False))  # only reliable left
    assert stats.dropped_in_reliable == 1 and inbox.bytes == 900
    assert inbox.get_nowait() is not None and inbox.get_nowait() is not None
    assert inbox.bytes == 0 and len(inbox) == 0
