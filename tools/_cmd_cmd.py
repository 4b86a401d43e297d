"""``delgrad cmd DEVICE NAME [ARGS]``: send one command to a device, print its reply.

The documented commands (docs/runtime.md, "Commands"): ``pause``, ``resume``,
``mode train|infer``, ``lr SCALE``, ``snapshot``, ``checkpoint``, ``reset``,
``status``. Arguments are ``KEY=VALUE`` items, or one bare value for a command
with one argument (``lr 0.5`` is ``lr scale=0.5``); values are read as TOML (a
number, ``true``/``false``), a bare word as a string. The device checks the
arguments and answers ``ok`` or the reason; any name is sent, so a device with
more commands than this list is reachable too.

Exit codes (the shared table): 0 ok, 1 refused by the device, 2 bad arguments,
3 broker unreachable, 4 no reply within ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import tomllib
import uuid
from typing import Any

from delgrad.errors import ConfigError, ProtocolError, TransportError
from delgrad.protocols import (
    COMMAND_NAMES,
    Command,
    Publisher,
    Reply,
    TopicKind,
    decode,
    is_valid_name,
    parse_broker_url,
    topic,
    transport_from_url,
)
from delgrad.tools._broker_opts import DEFAULT_BROKER, add_broker_arguments, broker_url
from delgrad.tools._exit import ExitCode

#: The argument a bare value stands for, per documented command with one argument.
SINGLE_ARGUMENT = {"lr": "scale", "mode": "mode"}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmd`` subcommand's arguments."""
    parser.add_argument("device", metavar="DEVICE", help="device id (as shown by delgrad run)")
    parser.add_argument(
        "name", metavar="NAME", help=f"command: {', '.join(COMMAND_NAMES)} (docs/runtime.md)"
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="KEY=VALUE items, or one value (lr 0.5, mode infer)",
    )
    add_broker_arguments(parser, default=DEFAULT_BROKER)
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the reply (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="print the reply as one JSON object")


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def parse_command_args(name: str, items: list[str]) -> dict[str, Any]:
    """The ``args`` mapping of a command from ``KEY=VALUE`` items or one bare value.

    Raises:
        ConfigError: a bare value where the command takes no single argument, or a
            repeated key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            if name not in SINGLE_ARGUMENT or len(items) != 1:
                raise ConfigError(f"argument {item!r} of {name!r} must be KEY=VALUE")
            return {SINGLE_ARGUMENT[name]: _value(item)}
        if key in out:
            raise ConfigError(f"argument {key!r} given twice")
        out[key] = _value(text)
    return out


def format_reply(device: str, name: str, reply: Reply) -> str:
    """One line: ``demo pause: ok  mode=train paused=true ...`` or the refusal."""
    if not reply.ok:
        return f"{device} {name}: refused: {reply.error}"
    values = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(reply.result.items())
    )
    return f"{device} {name}: ok" + (f"  {values}" if values else "")


async def send_command(
    url: str, device: str, name: str, args: dict[str, Any], *, timeout_s: float
) -> Reply:
    """Publish the command, wait for the reply with its correlation id.

    Raises:
        TransportError: the broker cannot be reached.
        TimeoutError: no reply within ``timeout_s``.
    """
    correlation = uuid.uuid4().hex[:16]
    client = f"cmd-{correlation[:8]}"
    command = Command(name, correlation, args)
    async with transport_from_url(url, client_id=client) as transport:
        await transport.subscribe(topic(device, TopicKind.CMD_REPLY, name=name), qos=1)
        await Publisher(transport, client).publish(topic(device, TopicKind.CMD, name=name), command)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            msg = await transport.recv(timeout=left)
            try:
                reply = decode(msg.payload).message
            except ProtocolError:
                continue
            if isinstance(reply, Reply) and reply.correlation_id == correlation:
                return reply


def run(args: argparse.Namespace) -> int:
    """Send, wait, print; the exit code of the table."""
    try:
        if not is_valid_name(args.device) or args.device == "+":
            raise ConfigError(f"device {args.device!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
        if not is_valid_name(args.name):
            raise ConfigError(f"command name {args.name!r} is not valid")
        if not args.timeout > 0:
            raise ConfigError(f"--timeout must be > 0 s, got {args.timeout}")
        url = broker_url(args) or DEFAULT_BROKER
        shown = parse_broker_url(url).url
        cmd_args = parse_command_args(args.name, args.args)
        Command(args.name, "check", cmd_args)  # the message's own limits
    except (ConfigError, ProtocolError, ValueError) as exc:
        print(f"delgrad cmd: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        reply = asyncio.run(
            send_command(url, args.device, args.name, cmd_args, timeout_s=args.timeout)
        )
    except TransportError as exc:
        print(f"delgrad cmd: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except ConfigError as exc:  # e.g. a TLS file that cannot be read
        print(f"delgrad cmd: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except TimeoutError:
        print(
            f"delgrad cmd: no reply from device {args.device!r} to {args.name!r} within "
            f"{args.timeout:g} s on {shown}; is it running and connected to this broker? "
            f"(delgrad monitor {args.device} --broker {shown} shows it)",
            file=sys.stderr,
        )
        return ExitCode.TIMEOUT
    if args.json:
        print(
            json.dumps(
                {
                    "device": args.device,
                    "command": args.name,
                    "ok": reply.ok,
                    "result": dict(reply.result),
                    "error": reply.error,
                }
            )
        )
    else:
        print(
            format_reply(args.device, args.name, reply), file=sys.stdout if reply.ok else sys.stderr
        )
    return ExitCode.OK if reply.ok else ExitCode.FAILED
