"""The one Mosquitto helper (``delgrad.tools.Mosquitto``) behind the ``mosquitto`` fixture
and the end-to-end benchmarks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import delgrad.tools
from delgrad.tools import Mosquitto, free_port, mosquitto_binary

pytestmark = [pytest.mark.broker]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def test_fixture_listens_on_loopback_and_restarts_on_the_same_port(mosquitto: Mosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}" and _accepts(mosquitto.port)
    assert "listener" in mosquitto.conf.read_text() and mosquitto.pid > 0
    mosquitto.kill()
    assert not _accepts(mosquitto.port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = mosquitto.pid
    mosquitto.start()
    assert _accepts(mosquitto.port)


def test_context_manager_stops_the_process(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    with Mosquitto(tmp_path, max_queued_messages=10_000) as broker:
        proc = broker.proc
        assert proc is not None and proc.poll() is None
        assert "max_queued_messages 10000" in broker.conf.read_text()
    assert proc.poll() is not None and broker.proc is None


def test_missing_binary_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("delgrad.tools._mosquitto.mosquitto_binary", lambda: None)
    with pytest.raises(FileNotFoundError, match="apt-get install mosquitto"):
        Mosquitto(tmp_path)


def test_package_exports_the_helper() -> None:
    assert delgrad.tools.__all__ == ["Mosquitto", "free_port", "mosquitto_binary"]


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
