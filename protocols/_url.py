"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://...?ca=...`` (TLS).

Pure parsing (:func:`parse_broker_url`) plus a factory (:func:`transport_from_url`)
that builds an :class:`~._mqtt.MqttTransport` from a URL. User name and password may
be percent-encoded (``%40`` for ``@``). When the URL names a user but carries no
password, the password is taken from the environment variable
``DELGRAD_MQTT_PASSWORD`` (so it need not appear in shell history or ``ps``).

TLS options ride on an ``mqtts`` URL's query, so every command that takes
``--broker URL`` gets them: ``ca=PATH`` (PEM CA bundle that signs the broker's
certificate; default the system CAs), ``cert=PATH`` and ``key=PATH`` (client
certificate and key, mutual TLS), ``insecure=1`` (no certificate or host name
check; testing only). Example:
``mqtts://dev1@broker.lan:8883?ca=/etc/delgrad/ca.pem&cert=/etc/delgrad/dev1.pem&key=/etc/delgrad/dev1.key``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from delgrad.errors import ConfigError

from ._mqtt import MqttTransport
from ._transport import Will

#: Environment variable read for the password when the URL has none.
PASSWORD_ENV = "DELGRAD_MQTT_PASSWORD"
#: Default TCP port per scheme.
DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883}
_SET_BY_URL = frozenset({"host", "port", "username", "password", "tls"})
#: Query keys of an ``mqtts`` URL.
TLS_QUERY_KEYS = ("ca", "cert", "key", "insecure")


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to reach an MQTT broker.

    Attributes:
        host: Host name or IP address (IPv6 without brackets).
        port: TCP port, 1 .. 65535.
        username: User name, or ``None`` for anonymous access.
        password: Password (kept out of ``repr``), or ``None``.
        tls: Whether to connect with TLS (``mqtts``).
        tls_ca_file: PEM CA bundle to verify the broker with (None: the system CAs).
        tls_cert_file: PEM client certificate (mutual TLS), or None.
        tls_key_file: PEM key of the client certificate (None: in the cert file).
        tls_insecure: Skip verifying the broker's certificate and host name.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_insecure: bool = False

    @property
    def url(self) -> str:
        """The URL without the password (safe to print or log)."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        query = "&".join(
            f"{k}={v}"
            for k, v in (
                ("ca", self.tls_ca_file),
                ("cert", self.tls_cert_file),
                ("key", self.tls_key_file),
                ("insecure", "1" if self.tls_insecure else None),
            )
            if v
        )
        return f"{scheme}://{user}{host}:{self.port}" + (f"?{query}" if query else "")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of this address (None without TLS).

        Raises:
            ConfigError: A CA, certificate or key file that cannot be read or used.
        """
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca_file or None)
            if self.tls_cert_file:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
        except FileNotFoundError as exc:
            raise ConfigError(f"TLS file not found: {exc.filename}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files unusable (ca, cert or key): {exc}") from None
        if self.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


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
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"broker URL {shown!r}: no path or fragment allowed")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in TLS_QUERY_KEYS:
            raise ConfigError(
                f"broker URL {shown!r}: unknown query option {key!r} "
                f"(known: {', '.join(TLS_QUERY_KEYS)})"
            )
        if key in query:
            raise ConfigError(f"broker URL {shown!r}: option {key!r} given twice")
        query[key] = value
    if query and scheme != "mqtts":
        raise ConfigError(f"broker URL {shown!r}: TLS options need an mqtts:// URL")
    insecure = query.get("insecure", "0").lower()
    if insecure not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"broker URL {shown!r}: insecure must be 0 or 1")
    for key in ("ca", "cert", "key"):
        if key in query and not query[key]:
            raise ConfigError(f"broker URL {shown!r}: {key}= needs a path")
    if "key" in query and "cert" not in query:
        raise ConfigError(f"broker URL {shown!r}: key= needs cert=")
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
    return BrokerAddress(
        host,
        port,
        username,
        password,
        scheme == "mqtts",
        tls_ca_file=query.get("ca"),
        tls_cert_file=query.get("cert"),
        tls_key_file=query.get("key"),
        tls_insecure=insecure in ("1", "true", "yes"),
    )


def transport_from_url(
    url: str,
    *,
    client_id: str | None,
    will: Will | None = None,
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
    tls_insecure: bool = False,
    **options: Any,
) -> MqttTransport:
    """Build an (unconnected) :class:`~._mqtt.MqttTransport` for a broker URL.

    ``mqtts`` URLs get ``ssl.create_default_context()`` (the URL's ``ca`` or the
    system CA bundle, host name checked), with the client certificate if given.

    Args:
        url: See :func:`parse_broker_url`.
        client_id: MQTT client id (random when ``None``).
        will: Last will to register with the broker.
        tls_ca_file, tls_cert_file, tls_key_file, tls_insecure: TLS settings of a
            configuration file, used where the URL's query does not set them.
        **options: Further ``MqttTransport`` arguments (``protocol``, ``timeout_s``,
            ``keepalive_s``, ``max_packet_bytes``, queue capacities, ...); not host,
            port, credentials or tls.

    Raises:
        ConfigError: On a bad URL, unusable TLS files, TLS settings without an
            ``mqtts`` URL, or an option the URL already sets.
    """
    clash = sorted(_SET_BY_URL & options.keys())
    if clash:
        raise ConfigError(f"{', '.join(clash)} come from the broker URL, not from options")
    addr = parse_broker_url(url)
    if (tls_ca_file or tls_cert_file or tls_key_file or tls_insecure) and not addr.tls:
        raise ConfigError(f"TLS settings need an mqtts:// broker URL, got {addr.url!r}")
    addr = replace(
        addr,
        tls_ca_file=addr.tls_ca_file or tls_ca_file or None,
        tls_cert_file=addr.tls_cert_file or tls_cert_file or None,
        tls_key_file=addr.tls_key_file or tls_key_file or None,
        tls_insecure=addr.tls_insecure or tls_insecure,
    )
    return MqttTransport(
        addr.host,
        addr.port,
        client_id=client_id,
        username=addr.username,
        password=addr.password,
        tls=addr.ssl_context(),
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
