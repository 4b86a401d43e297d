"""``delgrad broker`` (tools/_cmd_broker.py) and the EmbeddedBroker's bind rules."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import pytest

from delgrad.errors import ParameterError
from delgrad.protocols import EmbeddedBroker, MqttTransport
from delgrad.tools import _cmd_broker

from .conftest import free_port


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _cmd_broker.register(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_loopback() -> None:
    args = _args()
    assert (args.host, args.port, args.allow_remote) == ("127.0.0.1", 1883, False)


def test_refuses_non_loopback_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cmd_broker.run(_args("--host", "0.0.0.0")) == 2
    assert "refusing" in capsys.readouterr().err
    with pytest.raises(ParameterError):
        EmbeddedBroker("0.0.0.0")
    with pytest.raises(ParameterError):
        EmbeddedBroker("example.com")


@pytest.mark.broker
async def test_broker_subcommand_serves_until_ctrl_c() -> None:
    port = free_port()
    script = (
        "import argparse, sys\n"
        "from delgrad.tools import _cmd_broker as c\n"
        "p = argparse.ArgumentParser(); c.register(p)\n"
        f"sys.exit(c.run(p.parse_args(['--port', '{port}'])))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
            assert f"mqtt://127.0.0.1:{port}" in line.decode()
            async with MqttTransport("127.0.0.1", port, timeout_s=3) as t:
                assert t.connected and t.protocol_version == "3.1.1"
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.broker
async def test_embedded_broker_port_zero_and_restart() -> None:
    async with EmbeddedBroker() as b:
        port = b.port
        assert port > 0 and b.url == f"mqtt://127.0.0.1:{port}"
        await b.stop()
        assert not b.running
        await b.start()
        assert b.port == port
        async with MqttTransport("127.0.0.1", port, protocol="3.1.1", timeout_s=3) as t:
            assert t.connected
