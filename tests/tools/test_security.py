"""Transport security against a real Mosquitto: own CA, client certificates,
passwords and the ACL of docs/deploy/ (issue 10, case 8 and the TLS acceptance;
the identities of issue 25 in test_tenants.py). A client without the right user
cannot change the device's state; a failed handshake ends quickly with a clear
message."""

from __future__ import annotations

import asyncio
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from delgrad.errors import ConfigError, TransportError
from delgrad.protocols import Command, Publisher, Reply, decode, topic, transport_from_url
from delgrad.runtime.service import Service, run_config_from_dict
from delgrad.tools import Mosquitto, mosquitto_binary
from delgrad.tools._cli import main
from delgrad.tools._cmd_run import attach_lines
from delgrad.tools._run_app import build_online

from .._pki import make_pki, write_passwords
from .._pki import tls_url as pki_url

pytestmark = [pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"dev1": "dev1-secret", "operator": "op-secret", "intruder": "in-secret"}


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """Mosquitto with TLS (client certificates required), passwords and the ACL template."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not installed")
    pki = make_pki(tmp_path / "pki")
    passwd = write_passwords(tmp_path / "passwd", PASSWORDS)
    server = Mosquitto(tmp_path, binary=binary)
    server.conf.write_text(
        "\n".join(
            [
                "user root",  # as root it would drop to 'mosquitto', who cannot read tmp_path
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"acl_file {REPO / 'docs' / 'deploy' / 'delgrad.acl'}",
                f"listener {server.port} 127.0.0.1",
                f"cafile {pki / 'ca.pem'}",
                f"certfile {pki / 'broker.pem'}",
                f"keyfile {pki / 'broker.key'}",
                "require_certificate true",
                "max_packet_size 16842752",
                "persistence false",
            ]
        )
        + "\n"
    )
    server.start()
    try:
        yield server, pki
    finally:
        server.stop()


def tls_url(port: int, user: str, pki: Path, *, cert: str | None = None, ca: str = "ca") -> str:
    """An mqtts URL with password, CA and client certificate for ``user``."""
    return pki_url(port, user, PASSWORDS.get(user, "x"), pki, cert=cert, ca=ca)


async def _reply(transport, cid: str, timeout: float = 10.0) -> Reply | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await transport.recv(timeout=0.2)
        except TimeoutError:
            continue
        reply = decode(msg.payload).message
        if isinstance(reply, Reply) and reply.correlation_id == cid:
            return reply
    return None


async def test_only_the_operator_changes_state_over_tls_with_acl(secure_broker) -> None:
    server, pki = secure_broker
    config = run_config_from_dict(
        {"device": "dev1", "broker": {"url": tls_url(server.port, "dev1", pki)}}
    )
    async with transport_from_url(config.broker.url, client_id="dev1", timeout_s=5) as link:
        service = Service(config, link, build_online(config))
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 60)
        pause = topic("dev1", "cmd", name="pause")
        # an authenticated user without the operator's rights: dropped by the ACL
        async with transport_from_url(
            tls_url(server.port, "intruder", pki), client_id="intruder"
        ) as intruder:
            await intruder.subscribe(topic("dev1", "cmd/reply", name="pause"))
            await Publisher(intruder, "intruder").publish(pause, Command("pause", "i1"))
            assert await _reply(intruder, "i1", timeout=2.0) is None
        # a device cannot command another device: dev2's command never arrives
        async with transport_from_url(
            tls_url(server.port, "dev1", pki), client_id="dev1-copy"
        ) as other:
            await other.subscribe(topic("dev2", "cmd", name="pause"))
            await Publisher(other, "dev1").publish(
                topic("dev2", "cmd", name="pause"), Command("pause", "d1")
            )
            with pytest.raises(TimeoutError):
                await other.recv(timeout=1.0)
        assert not service.paused
        # the operator can
        async with transport_from_url(
            tls_url(server.port, "operator", pki), client_id="operator"
        ) as operator:
            await operator.subscribe(topic("dev1", "cmd/reply", name="pause"))
            await Publisher(operator, "operator").publish(pause, Command("pause", "o1"))
            reply = await _reply(operator, "o1")
        assert reply is not None and reply.ok and service.paused
        service.request_stop()
        await asyncio.wait_for(task, 30)


async def test_untrusted_broker_or_missing_client_certificate_fails_fast(secure_broker) -> None:
    server, pki = secure_broker
    for url in (
        tls_url(server.port, "dev1", pki, ca="rogue"),  # the broker is not trusted
        tls_url(server.port, "dev1", pki, cert="rogue-client"),  # nor is our certificate
        f"mqtts://dev1:{PASSWORDS['dev1']}@127.0.0.1:{server.port}?ca={pki / 'ca.pem'}",
    ):
        started = time.monotonic()
        transport = transport_from_url(url, client_id="dev1", timeout_s=5)
        with pytest.raises(TransportError) as info:
            await transport.connect()
        assert time.monotonic() - started < 5.0, url
        assert "TLS" in str(info.value), str(info.value)


async def test_plain_mqtt_at_a_tls_port_names_the_other_scheme(secure_broker) -> None:
    server, _pki = secure_broker
    transport = transport_from_url(f"mqtt://127.0.0.1:{server.port}", client_id="p", timeout_s=1)
    with pytest.raises(TransportError) as info:
        await transport.connect()
    assert f"use mqtts://127.0.0.1:{server.port}" in str(info.value), str(info.value)


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:{port}", "mqtt://no-such-host.invalid:1883"])
def test_no_broker_there_is_one_line_and_exit_3(url, capsys) -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    for command in (["cmd", "demo", "status"], ["sensor", "--count", "1"]):
        assert main([*command, "--broker", url.format(port=port)]) == 3
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "connection refused" in err or "unknown host" in err, err
    assert time.monotonic() - started < 10.0  # two commands, neither waits out a timeout


def test_tls_files_that_do_not_exist_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        transport_from_url(f"mqtts://h?ca={tmp_path / 'missing.pem'}", client_id=None)
    with pytest.raises(ConfigError, match="mqtts"):
        transport_from_url("mqtt://h", client_id=None, tls_ca_file="x.pem")


async def test_printed_attach_lines_work_under_tls_as_the_operator(
    secure_broker, monkeypatch
) -> None:
    server, pki = secure_broker
    config = run_config_from_dict(
        {"device": "dev1", "broker": {"url": tls_url(server.port, "dev1", pki)}}
    )
    rows = dict((k, v) for k, v in attach_lines(config) if k)
    for key in ("watch", "steer"):
        argv = shlex.split(rows[key])
        url = argv[argv.index("--broker") + 1]
        assert "dev1@" not in url and "dev1.pem" not in url and "dev1.key" not in url
        assert f"ca={pki / 'ca.pem'}" in url and "OPERATOR@" in url
    # pasted with the operator's user and certificate (as the note says), it connects
    url = shlex.split(rows["steer"])[-1].replace("OPERATOR", "operator")
    url = url.replace("operator.pem", str(pki / "operator.pem")).replace(
        "operator.key", str(pki / "operator.key")
    )
    monkeypatch.setenv("DELGRAD_MQTT_PASSWORD", PASSWORDS["operator"])
    async with transport_from_url(url, client_id="operator-1", timeout_s=5) as transport:
        assert transport.connected
