"""Command subscriptions under MQTT 5 use Retain As Published (issue 10, case 5): a
command published with the retain flag arrives with it even when delivered live, so a
device can refuse it; other subscriptions keep the usual flag (set only for messages
from the retained store)."""

from __future__ import annotations

import pytest

from delgrad.protocols import MqttTransport
from delgrad.tools import Mosquitto

pytestmark = [pytest.mark.broker]


async def test_live_retained_command_keeps_its_flag_under_mqtt5(mosquitto: Mosquitto) -> None:
    cmd, status = "delgrad/v1/d/cmd/pause", "delgrad/v1/d/status"
    async with (
        MqttTransport("127.0.0.1", mosquitto.port, protocol="5") as device,
        MqttTransport("127.0.0.1", mosquitto.port) as other,
    ):
        await device.subscribe("delgrad/v1/d/cmd/+", qos=1)
        await device.subscribe(status, qos=1)
        await other.publish(cmd, b"retained command", qos=1, retain=True)
        await other.publish(status, b"retained status", qos=1, retain=True)
        got = {m.topic: m for m in [await device.recv(timeout=5), await device.recv(timeout=5)]}
        assert got[cmd].retain  # live, yet flagged: the device refuses it
        assert not got[status].retain  # the usual rule elsewhere
        await other.publish(cmd, b"", qos=1, retain=True)  # clear the store
