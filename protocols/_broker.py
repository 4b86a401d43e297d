"""The embedded MQTT broker (amqtt; the only module that imports amqtt, lazily).

``delgrad`` starts one on 127.0.0.1 when no broker is configured, so a job needs no
separate server; ``delgrad broker`` runs it alone. amqtt speaks MQTT 3.1.1 only, which
the protocol fully supports (the MQTT transport falls back automatically).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from delgrad.errors import ParameterError, TransportError

from ._mqtt import DEFAULT_MAX_PACKET_BYTES


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _limit_packets(max_bytes: int) -> None:
    """Make amqtt refuse packets longer than ``max_bytes`` at their fixed header.

    amqtt has no such option and reads a packet whole; the fixed-header reader is
    wrapped once (class-wide: the limit of the broker started last applies to every
    embedded broker of the process), so a longer packet raises before its payload
    is read and amqtt closes that client's connection (an ``MQTTError`` would only
    discard the header and read the payload as packets).
    """
    from amqtt.mqtt.packet import MQTTFixedHeader

    global _PACKET_LIMIT
    _PACKET_LIMIT = max_bytes
    if getattr(MQTTFixedHeader, "_delgrad_limited", False):
        return
    original = MQTTFixedHeader.from_stream.__func__

    async def from_stream(cls: Any, reader: Any) -> Any:
        header = await original(cls, reader)
        if header is not None and _PACKET_LIMIT and header.remaining_length > _PACKET_LIMIT:
            raise _PacketTooLarge(
                f"packet of {header.remaining_length} bytes exceeds {_PACKET_LIMIT}"
            )
        return header

    MQTTFixedHeader.from_stream = classmethod(from_stream)
    MQTTFixedHeader._delgrad_limited = True


_PACKET_LIMIT: int | None = None


class _PacketTooLarge(ConnectionError):
    """A client sent a packet above the limit (ends its connection inside amqtt)."""


class _QuietProtocolProbe(logging.Filter):
    """Drops amqtt's two warnings about a client's MQTT 5 CONNECT: this broker speaks
    3.1.1, and the clients here try 5 first and fall back at once (``protocol =
    "auto"``), so every one of them would log them, into the demo's display too.
    Other invalid connections keep their reason line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Invalid connection from"):
            return False  # amqtt logs the reason next; that line stays unless it is this
        return not ("Invalid protocol from" in text and text.rstrip().endswith(": 5"))


_PROBE_FILTER = _QuietProtocolProbe()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker bound to one address.

    Use ``async with EmbeddedBroker() as broker: ... broker.port ...``.

    Args:
        host: Address to bind; loopback only unless ``allow_remote``.
        port: TCP port; 0 picks a free ephemeral port.
        allow_remote: Allow a non-loopback ``host``; needs ``password_file``.
        password_file: amqtt password file (``user:hash`` lines, argon2 or bcrypt
            hashes, e.g. from ``pwdlib.PasswordHash.recommended().hash(pw)``); when
            given, anonymous access is off.
        max_packet_bytes: Largest packet a client may send; a longer one closes its
            connection before its payload is read (the limit the MQTT clients here
            announce and enforce, docs/security.md).

    Raises:
        ParameterError: For a non-loopback host without ``allow_remote`` and a
            ``password_file``, or a password file that does not exist.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_remote: bool = False,
        password_file: str | None = None,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
    ):
        if not is_loopback(host):
            if not allow_remote:
                raise ParameterError(
                    f"refusing to bind {host!r}: not loopback (allow_remote=False)"
                )
            if not password_file:
                raise ParameterError(
                    f"refusing to bind {host!r} without authentication: give a password "
                    "file (amqtt FileAuthPlugin: 'user:argon2-hash' lines), or use "
                    "Mosquitto with TLS and an ACL (docs/security.md)"
                )
        if password_file and not Path(password_file).is_file():
            raise ParameterError(f"password file {password_file!r} not found")
        if not 0 <= int(port) <= 65535:
            raise ParameterError("port must be in 0 .. 65535")
        self.password_file = password_file
        self.max_packet_bytes = int(max_packet_bytes)
        logging.getLogger("amqtt.broker").addFilter(_PROBE_FILTER)  # once: one object
        self.host = host
        self._requested_port = int(port)
        self._port: int | None = None
        self._broker: Any = None

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise TransportError("broker not started")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the running broker."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker is serving."""
        return self._broker is not None

    async def start(self) -> None:
        """Bind and start serving. A stopped broker may be started again (same port).

        Raises:
            TransportError: If amqtt cannot start (e.g. the port is taken).
        """
        if self._broker is not None:
            return
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        attempts = 3 if self._requested_port == 0 and self._port is None else 1
        last: BaseException | None = None
        for _ in range(attempts):
            port = self._port or self._requested_port or _free_port(self.host)
            host = f"[{self.host}]" if ":" in self.host else self.host
            auth: dict[str, Any] = {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": not self.password_file
                }
            }
            if self.password_file:
                auth["amqtt.plugins.authentication.FileAuthPlugin"] = {
                    "password_file": self.password_file
                }
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                "plugins": auth,
            }
            _limit_packets(self.max_packet_bytes)
            try:
                broker = Broker(config)
                await broker.start()
            except (BrokerError, OSError) as exc:
                last = exc
                continue
            self._broker, self._port = broker, port
            return
        raise TransportError(f"embedded broker failed to start on {self.host}: {last}") from last

    async def stop(self) -> None:
        """Stop serving and drop every connection (no wills are sent for the
        broker's own shutdown by MQTT rules; clients see a lost connection)."""
        broker, self._broker = self._broker, None
        if broker is not None:
            from amqtt.errors import BrokerError

            try:
                await broker.shutdown()
            except BrokerError as exc:
                raise TransportError(f"embedded broker failed to stop: {exc}") from exc
            await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
