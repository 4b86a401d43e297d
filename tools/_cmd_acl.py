"""``delgrad acl``: the Mosquitto ACL and configuration of a deployment's accounts.

``delgrad acl --devices dev1 dev2 --operators ops ops-watch --sensors dev1:cam1``
prints the ACL (one ``user`` block per account, no ``pattern`` line); with ``--out
DIR`` it writes ``DIR/delgrad.acl`` and ``DIR/delgrad.conf`` (the broker
configuration that binds client ids to user names) and says what else the broker
needs. Text generation: :mod:`delgrad.tools._acl`; why: docs/security.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path, PurePath

from delgrad.errors import ConfigError
from delgrad.tools._acl import (
    ACL_NAME,
    CONF_NAME,
    PASSWD_NAME,
    Accounts,
    acl_text,
    conf_text,
    parse_sensor,
)
from delgrad.tools._exit import ExitCode

DEFAULT_ETC = PurePath("/etc/mosquitto")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``acl`` subcommand's arguments."""
    parser.add_argument(
        "--devices", nargs="+", required=True, metavar="DEVICE", help="device ids (= user names)"
    )
    parser.add_argument(
        "--operators",
        nargs="+",
        default=[],
        metavar="USER",
        help="operator accounts: command and watch every device (one per program that runs "
        "at the same time, e.g. ops for delgrad cmd and ops-watch for delgrad monitor)",
    )
    parser.add_argument(
        "--sensors",
        nargs="+",
        default=[],
        metavar="DEVICE:USER",
        help="sensor accounts and the device each feeds",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"write {ACL_NAME} and {CONF_NAME} into DIR (default: print the ACL)",
    )
    parser.add_argument(
        "--etc",
        type=PurePath,
        metavar="DIR",
        help=f"where the broker finds {ACL_NAME}, {PASSWD_NAME}, ca.pem, broker.pem and "
        f"broker.key (default: the --out folder, else {DEFAULT_ETC})",
    )
    parser.add_argument(
        "--port", type=int, default=8883, help="the TLS listener's port (default 8883)"
    )
    parser.add_argument(
        "--bind", metavar="ADDRESS", help="listen on this address only (default: every interface)"
    )


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces the files (without --out: where they go is not in them)."""
    parts = ["delgrad", "acl", "--devices", *args.devices]
    if args.operators:
        parts += ["--operators", *args.operators]
    if args.sensors:
        parts += ["--sensors", *args.sensors]
    if args.etc is not None:
        parts += ["--etc", str(args.etc)]
    if args.port != 8883:
        parts += ["--port", str(args.port)]
    if args.bind:
        parts += ["--bind", args.bind]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Print or write the recipe; 2 on a bad name or an unwritable folder."""
    try:
        accounts = Accounts(
            devices=tuple(args.devices),
            operators=tuple(args.operators),
            sensors=tuple(parse_sensor(item) for item in args.sensors),
        )
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port must be 1 .. 65535, got {args.port}")
    except ConfigError as exc:
        print(f"delgrad acl: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    command = _command_line(args)
    acl = acl_text(accounts, command=command)
    if args.out is None:
        sys.stdout.write(acl)
        return ExitCode.OK
    out = args.out.resolve()
    etc = args.etc if args.etc is not None else out
    conf = conf_text(etc=etc, command=command, port=args.port, bind=args.bind)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in ((ACL_NAME, acl), (CONF_NAME, conf)):
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"delgrad acl: error: cannot write into {out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    users = " ".join(accounts.names)
    print(
        f"delgrad acl: wrote {out / ACL_NAME} ({len(accounts.names)} accounts) and "
        f"{out / CONF_NAME}\n"
        f"next: a password per account, e.g. for u in {users}; do mosquitto_passwd "
        f"{etc / PASSWD_NAME} $u; done (-c the first time); ca.pem, broker.pem and "
        f"broker.key into {etc}; then mosquitto -c {out / CONF_NAME}"
    )
    return ExitCode.OK
