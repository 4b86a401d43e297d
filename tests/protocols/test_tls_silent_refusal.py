"""A broker that refuses the client's certificate after a TLS 1.3 handshake and whose
alert is lost (the TCP reset that follows can discard it) leaves the client a bare
EOF before CONNACK. The first connect() must still fail at once with a TLS message,
not wait for its CONNACK timeout and retry (seen in CI: 5.1 s, about 1 connect in 70)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from delgrad.errors import TransportError
from delgrad.protocols import transport_from_url

from .._pki import make_pki


def _silent_tls_server(pki: Path) -> tuple[socket.socket, threading.Thread]:
    """Accept TLS 1.3 connections, finish the handshake, then close without a word
    (no alert, no close_notify), as a refusing broker whose alert got lost."""
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
                    time.sleep(0.05)  # let the client send CONNECT first
                    tls.shutdown(socket.SHUT_RDWR)  # TCP FIN, no TLS close_notify
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


async def test_bare_eof_after_tls_handshake_fails_the_first_connect_at_once(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    listener, _ = _silent_tls_server(pki)
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
            assert "right after the handshake" in str(info.value)
    finally:
        listener.close()
