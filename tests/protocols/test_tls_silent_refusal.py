"""A broker that refuses the client's certificate after a TLS 1.3 handshake and whose
alert is lost (the TCP reset that follows can discard it) leaves the client a bare
EOF, a reset, or an error on sending CONNECT, before any CONNACK. The first
connect() must still fail at once with a TLS message, not wait for its CONNACK
timeout and retry (seen in CI: 5.1 s)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from delgrad.errors import TransportError
from delgrad.protocols import MqttTransport, transport_from_url

from .._pki import make_pki


def _silent_tls_server(pki: Path, how: str) -> tuple[socket.socket, threading.Thread]:
    """Accept TLS 1.3 connections, finish the handshake, then end the link without a
    word (no alert, no close_notify), as a refusing broker whose alert got lost:
    ``fin`` after the client's CONNECT arrived, ``reset`` at once (RST)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(pki / "broker.pem", pki / "broker.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed by the test
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    if how == "fin":
                        time.sleep(0.05)  # let the client send CONNECT first
                        tls.shutdown(socket.SHUT_RDWR)  # TCP FIN, no TLS close_notify
                    else:
                        linger = struct.pack("ii", 1, 0)  # close() sends RST
                        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_silent_end_after_tls_handshake_fails_the_first_connect_at_once(
    tmp_path: Path, how: str
) -> None:
    pki = make_pki(tmp_path / "pki")
    listener, _ = _silent_tls_server(pki, how)
    port = listener.getsockname()[1]
    url = f"mqtts://dev1@127.0.0.1:{port}?ca={pki / 'ca.pem'}&cert={pki / 'dev1.pem'}"
    url += f"&key={pki / 'dev1.key'}"
    try:
        for _ in range(3):
            transport = transport_from_url(url, client_id="dev1", timeout_s=5)
            started = time.monotonic()
            with pytest.raises(TransportError, match="TLS") as info:
                await transport.connect()
            assert time.monotonic() - started < 2.0
            if how == "fin":
                assert "right after the handshake" in str(info.value)
    finally:
        listener.close()


def _raiser(exc: BaseException):
    def call(*_: object) -> bytes:
        raise exc

    return call


@pytest.mark.parametrize(
    ("where", "outcome"),
    [
        ("recv", b""),
        ("recv", ConnectionResetError(104, "Connection reset by peer")),
        ("send", ssl.SSLEOFError("EOF occurred in violation of protocol")),
        ("send", BrokenPipeError(32, "Broken pipe")),
    ],
)
async def test_every_silent_end_before_connack_is_a_tls_refusal(
    tmp_path: Path, where: str, outcome: object
) -> None:
    """The ends a real broker produces only by chance (a reset racing CONNECT), each
    through the guard paho's reads and writes pass, on a TLS link and on a plain one."""
    pki = make_pki(tmp_path / "pki")
    for tls in (True, False):
        query = f"?ca={pki / 'ca.pem'}" if tls else ""
        url = f"mqtt{'s' if tls else ''}://127.0.0.1:1{query}"
        transport = transport_from_url(url, client_id="t")
        assert isinstance(transport, MqttTransport)
        paho = SimpleNamespace(
            _in_packet={"have_remaining": False, "remaining_length": 0},
            _sock_recv=lambda n: b"x",
            _sock_send=lambda buf: len(buf),
        )
        act = _raiser(outcome) if isinstance(outcome, BaseException) else lambda *_: outcome
        setattr(paho, f"_sock_{where}", act)
        first = asyncio.get_running_loop().create_future()
        transport._first = first
        transport._guard_socket(SimpleNamespace(_client=paho))  # type: ignore[arg-type]
        call = paho._sock_recv if where == "recv" else paho._sock_send
        if isinstance(outcome, BaseException):
            with pytest.raises(type(outcome)):
                call(1 if where == "recv" else b"CONNECT")
        else:
            assert call(1) == outcome
        if tls:
            assert first.done() and "TLS" in str(first.exception())
        else:
            assert not first.done()  # a plain link reconnects as before
