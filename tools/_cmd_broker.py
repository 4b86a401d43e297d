"""``delgrad broker``: run the embedded MQTT broker (amqtt) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from delgrad.protocols import EmbeddedBroker, TransportError, is_loopback
from delgrad.tools._broker_opts import check_port
from delgrad.tools._exit import ExitCode


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``broker`` subcommand's arguments."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback)"
    )
    parser.add_argument("--port", type=int, default=1883, help="TCP port (default 1883; 0 = any)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (needs --password-file)",
    )
    parser.add_argument(
        "--password-file",
        metavar="PATH",
        help="amqtt password file ('user:hash' lines, argon2 or bcrypt; docs/security.md); "
        "anonymous clients are then refused",
    )


async def _serve(host: str, port: int, allow_remote: bool, password_file: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when inherited as ignored
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    broker = EmbeddedBroker(host, port, allow_remote=allow_remote, password_file=password_file)
    async with broker:
        auth = ", password file" if password_file else ", anonymous"
        print(f"broker listening on {broker.url}{auth} (Ctrl-C to stop)", flush=True)
        await stop.wait()
    print("broker stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the broker until Ctrl-C (SIGINT) or SIGTERM.

    Returns:
        The shared exit code: 0 after a clean stop, 2 on bad arguments (a remote
        bind without a password file, a missing file), 3 if the broker cannot
        start (its port is taken).
    """
    if not args.allow_remote and not is_loopback(args.host):
        print(
            f"refusing to bind {args.host}: not a loopback address (use --allow-remote)",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print("--port must be in 0 .. 65535", file=sys.stderr)
        return 2
    try:
        check_port(args.port, args.host, attach=False)
    except TransportError as exc:
        print(f"delgrad broker: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    try:
        asyncio.run(_serve(args.host, args.port, args.allow_remote, args.password_file))
    except KeyboardInterrupt:
        print("broker stopped", flush=True)
        return 0
    except TransportError as exc:
        print(f"broker failed: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    return 0
