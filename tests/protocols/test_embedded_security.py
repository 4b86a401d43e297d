"""The embedded broker (issue 10, case 8): no remote access without a password file;
with one, anonymous and wrong passwords are refused; packets above the limit are
refused at their header."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pwdlib import PasswordHash

from delgrad.errors import ParameterError, TransportError
from delgrad.protocols import EmbeddedBroker, MqttTransport

pytestmark = [pytest.mark.broker]


def test_remote_bind_needs_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="without authentication"):
        EmbeddedBroker("0.0.0.0", allow_remote=True)
    with pytest.raises(ParameterError, match="not found"):
        EmbeddedBroker("0.0.0.0", allow_remote=True, password_file=str(tmp_path / "none"))
    passwd = tmp_path / "passwd"
    passwd.write_text("dev1:" + PasswordHash.recommended().hash("pw") + "\n")
    EmbeddedBroker("0.0.0.0", allow_remote=True, password_file=str(passwd))  # accepted


async def test_password_file_refuses_anonymous_and_wrong_passwords(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("dev1:" + PasswordHash.recommended().hash("pw") + "\n")
    async with EmbeddedBroker("127.0.0.1", 0, password_file=str(passwd)) as broker:
        for user, password in ((None, None), ("dev1", "wrong"), ("eve", "pw")):
            link = MqttTransport(
                "127.0.0.1",
                broker.port,
                username=user,
                password=password,
                timeout_s=3,
                protocol="3.1.1",
            )
            with pytest.raises(TransportError):
                await link.connect()
        async with MqttTransport(
            "127.0.0.1", broker.port, username="dev1", password="pw", protocol="3.1.1"
        ) as ok:
            assert ok.connected


async def test_oversize_packet_is_refused_by_the_embedded_broker() -> None:
    topic = "delgrad/v1/d/events/in"
    async with EmbeddedBroker("127.0.0.1", 0, max_packet_bytes=64 * 1024) as broker:
        async with (
            MqttTransport("127.0.0.1", broker.port, protocol="3.1.1") as rx,
            MqttTransport("127.0.0.1", broker.port, protocol="3.1.1") as tx,
        ):
            await rx.subscribe(topic, qos=0)
            await tx.publish(topic, b"x" * (256 * 1024), qos=0)
            with pytest.raises(TimeoutError):
                await rx.recv(timeout=1.5)
            for _ in range(100):  # the sender's link was dropped; it reconnects
                if tx.stats.reconnects and tx.connected:
                    break
                await asyncio.sleep(0.05)
            await tx.publish(topic, b"small", qos=0)
            assert (await rx.recv(timeout=5)).payload == b"small"


async def test_our_clients_mqtt5_probe_leaves_no_broker_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="amqtt"):
        async with EmbeddedBroker() as broker:
            transport = MqttTransport("127.0.0.1", broker.port, client_id="probe", timeout_s=5)
            async with transport:  # tries MQTT 5, falls back to 3.1.1
                pass
    assert not [r for r in caplog.records if r.name.startswith("amqtt")], caplog.text
    # a client that asks for another protocol level still gets its reason logged
    other = logging.LogRecord(
        "amqtt.broker", logging.WARNING, __file__, 1,
        "Failed to initialize client session: Invalid protocol from (client @=x): 3", None, None,
    )  # fmt: skip
    assert logging.getLogger("amqtt.broker").filter(other)
