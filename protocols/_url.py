"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://...`` (TLS).

Pure parsing (:func:`parse_broker_url`) plus a factory (:func:`transport_from_url`)
that builds an :class:`~._mqtt.MqttTransport` from a URL. User name and password may
be percent-encoded (``%40`` for ``@``). When the URL names a user but carries no
password, the password is taken from the environment variable
``DELGRAD_MQTT_PASSWORD`` (so it need not appear in shell history or ``ps``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from delgrad.errors import ConfigError

from ._mqtt import MqttTransport
from ._transport import Will

#: Environment variable read for the password when the URL has none.
PASSWORD_ENV = "DELGRAD_MQTT_PASSWORD"
#: Default TCP port per scheme.
DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883}
_SET_BY_URL = frozenset({"host", "port", "username", "password", "tls"})


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to reach an MQTT broker.

    Attributes:
        host: Host name or IP address (IPv6 without brackets).
        port: TCP port, 1 .. 65535.
        username: User name, or ``None`` for anonymous access.
        password: Password (kept out of ``repr``), or ``None``.
        tls: Whether to connect with TLS (``mqtts``), verified against the system CAs.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @property
    def url(self) -> str:
        """The URL without the password (safe to print or log)."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{host}:{self.port}"


def parse_broker_url(url: str, *, env: Mapping[str, str] | None = None) -> BrokerAddress:
    """Parse ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``.

    Args:
        url: The broker URL; default port 1883 for ``mqtt``, 8883 for ``mqtts``.
        env: Environment to read ``DELGRAD_MQTT_PASSWORD`` from; ``os.environ`` if None.

    Returns:
        The parsed address.

    Raises:
        ConfigError: On any other scheme, a missing host, a bad port, or a path,
            query or fragment.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("broker URL is empty; expected mqtt://host[:port] or mqtts://...")
    shown = _redact(url)
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ConfigError(f"broker URL {shown!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(
            f"broker URL {shown!r}: scheme must be mqtt:// or mqtts://, "
            f"got {(parts.scheme or 'none')!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker URL {shown!r}: no path, query or fragment allowed")
    host = parts.hostname
    if not host:
        raise ConfigError(f"broker URL {shown!r} names no host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"broker URL {shown!r}: port must be an integer in 1 .. 65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise ConfigError(f"broker URL {shown!r}: empty port")
        port = DEFAULT_PORTS[scheme]
    elif port == 0:
        raise ConfigError(f"broker URL {shown!r}: port must be in 1 .. 65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise ConfigError(f"broker URL {shown!r}: a password needs a user name")
    if username is not None and password is None:
        password = (os.environ if env is None else env).get(PASSWORD_ENV) or None
    return BrokerAddress(host, port, username, password, scheme == "mqtts")


def transport_from_url(
    url: str, *, client_id: str | None, will: Will | None = None, **options: Any
) -> MqttTransport:
    """Build an (unconnected) :class:`~._mqtt.MqttTransport` for a broker URL.

    ``mqtts`` URLs get ``ssl.create_default_context()`` (system CA bundle, host name
    checked).

    Args:
        url: See :func:`parse_broker_url`.
        client_id: MQTT client id (random when ``None``).
        will: Last will to register with the broker.
        **options: Further ``MqttTransport`` arguments (``protocol``, ``timeout_s``,
            ``keepalive_s``, queue capacities, ...); not host, port, credentials or tls.

    Raises:
        ConfigError: On a bad URL or an option the URL already sets.
    """
    clash = sorted(_SET_BY_URL & options.keys())
    if clash:
        raise ConfigError(f"{', '.join(clash)} come from the broker URL, not from options")
    addr = parse_broker_url(url)
    return MqttTransport(
        addr.host,
        addr.port,
        client_id=client_id,
        username=addr.username,
        password=addr.password,
        tls=ssl.create_default_context() if addr.tls else None,
        will=will,
        **options,
    )


def _redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for error messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{hostport}{slash}{tail}"
