"""The broker options shared by ``run``, ``monitor``, ``sensor`` and ``cmd``.

One place adds them (:func:`add_broker_arguments`) and one folds them into the
broker URL (:func:`broker_url`), the form the transport reads
(``mqtts://user@host:port?ca=PATH&cert=PATH&key=PATH&insecure=1``; see
``delgrad.protocols.parse_broker_url``). The password is never a flag: it comes
from the URL or from ``$DELGRAD_MQTT_PASSWORD``.
"""

from __future__ import annotations

import argparse
import errno
import socket
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from delgrad.errors import ConfigError, TransportError

__all__ = ["DEFAULT_BROKER", "add_broker_arguments", "broker_url", "check_port"]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def add_broker_arguments(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    """Add ``--broker``, ``--username`` and the ``--tls-*`` options.

    Args:
        parser: The subcommand's parser.
        default: Default URL (None: the command has its own default, e.g. the
            embedded broker of ``delgrad run``).
    """
    group = parser.add_argument_group("broker")
    shown = default or "the embedded broker on 127.0.0.1:1883"
    group.add_argument(
        "--broker",
        default=default,
        metavar="URL",
        help=f"mqtt://[user@]host[:port] or mqtts://... (TLS) (default {shown}); "
        "the password comes from $DELGRAD_MQTT_PASSWORD",
    )
    group.add_argument("--username", metavar="USER", help="MQTT user name (or user@ in the URL)")
    group.add_argument(
        "--tls-ca", metavar="PEM", help="CA file that signs the broker's certificate (implies TLS)"
    )
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", metavar="PEM", help="the client certificate's key")
    group.add_argument(
        "--tls-insecure",
        action="store_true",
        help="do not verify the broker's certificate and host name (testing only)",
    )


def broker_url(args: argparse.Namespace) -> str | None:
    """The broker URL with the options folded in (None: no URL and no option given).

    A TLS option turns ``mqtt://`` into ``mqtts://`` (port 1883 becomes 8883 only if
    the URL named no port).

    Raises:
        ConfigError: options without a URL where one is needed, or a malformed URL.
    """
    url: str | None = args.broker
    extra = {
        k: v
        for k, v in (
            ("ca", args.tls_ca),
            ("cert", args.tls_cert),
            ("key", args.tls_key),
            ("insecure", "1" if args.tls_insecure else None),
        )
        if v
    }
    if url is None:
        if extra or args.username:
            raise ConfigError("--username and --tls-* need --broker URL")
        return None
    if not extra and not args.username:
        return url
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--broker {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if extra and scheme == "mqtt":
        scheme = "mqtts"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None:
        netloc += f":{port}"
    user = quote(args.username, safe="") if args.username else parts.username  # URL: as written
    if user:
        secret = f":{parts.password}" if parts.password is not None else ""
        netloc = f"{user}{secret}@{netloc}"
    query = dict(parse_qsl(parts.query))
    query.update(extra)
    return urlunsplit((scheme, netloc, parts.path, urlencode(query), parts.fragment))


def check_port(port: int, host: str = "127.0.0.1", *, attach: bool = True) -> None:
    """Raise :class:`TransportError` with the remedy if ``host:port`` cannot be bound
    (for the embedded broker; port 0 always can).

    Args:
        port: The TCP port.
        host: The address to bind.
        attach: Also suggest ``--broker`` (attaching to the broker that holds it).
    """
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "is taken" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            shown = f"[{host}]" if ":" in host else host
            remedy = (
                f"attach to that broker with --broker mqtt://{shown}:{port}, or " if attach else ""
            )
            other = port + 1 if port < 65535 else 1884
            raise TransportError(
                f"port {port} on {host} {why} (another broker, or another delgrad run?): "
                f"{remedy}start the embedded one elsewhere with --port {other} "
                "(--port 0: any free port)"
            ) from None
