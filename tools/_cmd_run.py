"""``delgrad run``: the online-learning service (no arguments: the demonstration).

The configuration is the TOML file of ``--config`` (none: every default, the
demonstration), then the flags (``--broker``, ``--device``, ``--driver``,
``--recipe``, ``--port``), then ``--set SECTION.KEY=VALUE`` overrides in order
(values read as TOML, a bare word as a string, as for ``delgrad train``).

Before anything starts, the port of the embedded broker is tried and an existing
checkpoint is checked against the configured network: each failure is one line
with its remedy (``--port``/``--broker``; ``--fresh``) and exit code 2 or 3.
Once running, the broker URL and the exact commands to attach a monitor and to
send commands are printed (plain mode) or shown in the live panel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.live import Live
from rich.table import Table
from rich.text import Text

from delgrad.errors import ConfigError, DelgradError, TransportError
from delgrad.protocols import COMMAND_NAMES, BrokerAddress, parse_broker_url
from delgrad.runtime import Learner, apply_overrides, load_network, read_toml, resolve_config
from delgrad.runtime.service import RunConfig, Service, run_config_from_dict
from delgrad.tools._broker_opts import add_broker_arguments, broker_url, check_port
from delgrad.tools._exit import ExitCode, exit_code_for
from delgrad.tools._logging import logging_above
from delgrad.tools._run_app import is_terminal, print_line, serve

DEMO_RATE = 5000.0
CHECKPOINT_GLOB = "service_checkpoint*.npz"
log = logging.getLogger("delgrad.tools.run")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad run``."""
    parser.add_argument(
        "--config",
        type=Path,
        help="service configuration (TOML, see docs/runtime.md); without it, "
        "the demonstration runs: embedded broker, emulator, built-in sensor",
    )
    add_broker_arguments(parser, default=None)
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="port of the embedded broker (default 1883; 0 = any free port)",
    )
    parser.add_argument("--device", help="device id (default: the config's, demo)")
    parser.add_argument("--driver", help="emulator-ideal (default), emulator-bss2 or brainscales2")
    parser.add_argument(
        "--recipe", help="training recipe: a shipped name (delgrad train --list) or a TOML path"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads sharing each learning step (learning.threads; 0 = one per core)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config field, e.g. --set learning.lr_scale=0.5 (repeatable)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: move existing checkpoints of checkpoint.dir aside (into "
        "replaced-<time>/) instead of resuming from them",
    )
    parser.add_argument(
        "--demo-rate",
        type=float,
        default=None,
        help=f"built-in sensor rate in trials/s (demo default {DEMO_RATE:.0f}; "
        "0 = no built-in sensor)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain status lines instead of the live display (the default when "
        "stdout is not a terminal, and with -q)",
    )


def build_config(args: argparse.Namespace) -> RunConfig:
    """The configuration: file, then flags, then ``--set`` items.

    Raises:
        ConfigError: missing or invalid file, invalid field or value.
    """
    data: dict[str, Any] = {}
    if args.config is not None:
        data = read_toml(args.config)
    url = broker_url(args)
    if url is not None:
        data.setdefault("broker", {})["url"] = url
    if args.port is not None:
        data.setdefault("broker", {})["embedded_port"] = args.port
    if args.device is not None:
        data["device"] = args.device
    if args.driver is not None:
        data.setdefault("driver", {})["name"] = args.driver
    if args.recipe is not None:
        data.setdefault("model", {})["recipe"] = args.recipe
    if args.threads is not None:
        data.setdefault("learning", {})["threads"] = args.threads
    config = run_config_from_dict(apply_overrides(data, args.set))
    resolve_config(config.model.recipe)  # an unknown recipe fails here, in one line
    if config.broker.url:
        parse_broker_url(config.broker.url)  # so does a bad URL, before anything starts
    return config


def _net_summary(manifest: dict[str, Any]) -> str:
    layers = manifest.get("layers", [])
    if not layers:
        return "?"
    sizes = [str(layers[0].get("n_in"))] + [str(ly.get("n_out")) for ly in layers]
    kinds = sorted({str(ly.get("delay")) for ly in layers})
    return "-".join(sizes) + " " + "/".join(kinds)


def _newest_first(path: Path) -> tuple[int, str]:
    """``service_checkpoint.npz``, then ``.1.npz``, ``.2.npz``, ... (the service's order)."""
    middle = path.name.removeprefix("service_checkpoint").removesuffix(".npz").strip(".")
    return (int(middle) if middle.isdigit() else 0 if not middle else 1 << 30, path.name)


def checkpoint_mismatch(config: RunConfig) -> str | None:
    """What differs between the newest checkpoint of ``checkpoint.dir`` and the
    configured network (None: no checkpoint, or it fits).

    Raises:
        ConfigError: the recipe or network file cannot be read.
    """
    if not config.checkpoint.dir:
        return None
    files = sorted(Path(config.checkpoint.dir).glob(CHECKPOINT_GLOB), key=_newest_first)
    if not files:
        return None
    learner = Learner(resolve_config(config.model.recipe))
    if config.model.network_file:
        learner.load_network(load_network(config.model.network_file))
    expected = {k: np.shape(v) for k, v in learner.state_arrays().items()}
    want = json.loads(bytes(learner.state_arrays()["net.manifest"]).decode())
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as npz:
                # the service's own state (replay buffer, degradation detector) varies in
                # shape and is checked when it is loaded: only the learner's must fit
                shapes = {
                    k: npz[k].shape
                    for k in npz.files
                    if k != "service" and not k.startswith(SERVICE_STATE_PREFIXES)
                }
                have = json.loads(bytes(npz["net.manifest"]).decode())
        except Exception:  # unreadable: the service skips it with a warning
            continue
        shapes.pop("service", None)
        differ = sorted(k for k in expected.keys() | shapes.keys())
        differ = [k for k in differ if k != "net.manifest" and expected.get(k) != shapes.get(k)]
        layers_differ = [
            (a.get("n_in"), a.get("n_out"), a.get("delay"))
            != (b.get("n_in"), b.get("n_out"), b.get("delay"))
            for a, b in zip(have.get("layers", []), want.get("layers", []), strict=False)
        ]
        if differ or any(layers_differ) or len(have.get("layers", [])) != len(want["layers"]):
            what = (
                f"network {_net_summary(have)} in the checkpoint, "
                f"{_net_summary(want)} in recipe {config.model.recipe!r}"
            )
            if _net_summary(have) == _net_summary(want):
                what = f"arrays {', '.join(differ[:3])} differ in shape"
            return (
                f"checkpoint {path} does not fit the configuration ({what}); start over "
                "with --fresh (moves the old checkpoints aside), or set checkpoint.dir to "
                "another folder"
            )
        return None
    return None


#: Checkpoint arrays of the service's own state, not the learner's.
SERVICE_STATE_PREFIXES = ("replay.", "degradation.")


def move_checkpoints_aside(folder: Path) -> Path | None:
    """Move the checkpoints of ``folder`` into ``folder/replaced-<time>/`` (``--fresh``)."""
    files = sorted(folder.glob(CHECKPOINT_GLOB))
    if not files:
        return None
    dest = folder / time.strftime("replaced-%Y%m%d-%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        path.rename(dest / path.name)
    return dest


def endpoint(config: RunConfig, service: Service | None = None) -> tuple[str, bool]:
    """(broker URL safe to print, whether it is the embedded broker)."""
    if config.broker.url:
        try:
            return parse_broker_url(config.broker.url).url, False
        except ConfigError:
            return config.broker.url, False
    port = config.broker.embedded_port
    if service is not None:
        port = getattr(service.transport, "port", port) or port
    return f"mqtt://127.0.0.1:{port}", True


def command_prefix(argv0: str | None = None, executable: str | None = None) -> str:
    """How to call ``delgrad`` from another terminal: ``delgrad`` when that name on
    PATH is this installation, else the absolute path of the script this process
    was started as (``.venv/bin/delgrad`` -> ``/abs/.venv/bin/delgrad``), or
    ``python -m delgrad`` with this interpreter."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    script = Path(argv0)
    if script.name == "delgrad" and script.exists():
        on_path = shutil.which("delgrad")
        if on_path is not None and Path(on_path).resolve() == script.resolve():
            return "delgrad"
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(executable)} -m delgrad"


#: Stands for the operator's user and certificate in the printed commands: the device's
#: own identity must not be pasted into them (the ACL lets only an operator steer).
OPERATOR = "OPERATOR"


def operator_url(config: RunConfig) -> str | None:
    """The broker URL for an operator, if the device's broker needs an identity (a
    user or TLS): the device's host, port and CA, and ``OPERATOR`` for the user and
    the client certificate; None for an anonymous plain broker."""
    try:
        address = parse_broker_url(config.broker.url)
    except ConfigError:
        return None
    ca = address.tls_ca_file or config.broker.tls_ca_file or None
    tls = address.tls or bool(ca)
    client_cert = bool(address.tls_cert_file or config.broker.tls_cert_file)
    if not (tls or address.username):
        return None
    return BrokerAddress(
        address.host,
        address.port,
        username=OPERATOR if address.username else None,
        tls=tls,
        tls_ca_file=ca,
        tls_cert_file=f"{OPERATOR}.pem" if client_cert else None,
        tls_key_file=f"{OPERATOR}.key" if client_cert else None,
        tls_insecure=address.tls_insecure or config.broker.tls_insecure,
    ).url


def attach_lines(config: RunConfig, service: Service | None = None) -> list[tuple[str, str]]:
    """(what, text) rows: the broker and the exact commands to watch and steer."""
    url, embedded = endpoint(config, service)
    where = " (embedded, this machine only)" if embedded else ""
    operator = None if embedded else operator_url(config)
    broker = f" --broker {shlex.quote(operator or url)}"
    me = command_prefix()
    rows = [
        ("broker", f"{url}{where}"),
        ("watch", f"{me} monitor {config.device}{broker}"),
        ("steer", f"{me} cmd {config.device} pause{broker}"),
        ("", f"(or {', '.join(n for n in COMMAND_NAMES if n != 'pause')})"),
    ]
    if operator is not None:
        rows.append(
            ("", f"(as an operator: put its user and certificate for {OPERATOR}, its "
                 "password in $DELGRAD_MQTT_PASSWORD; watching and steering at once take "
                 "an account each where client ids are user names, docs/security.md)")
        )  # fmt: skip
    return rows


def attach_text(config: RunConfig, service: Service | None = None) -> str:
    """The attach rows as plain lines, printed once above the live panel (or the
    plain log) so the commands are never wrapped or cropped and copy whole."""
    return "\n".join(f"{key:6s} {value}".rstrip() for key, value in attach_lines(config, service))


def _table(service: Service) -> Table:
    m = service.last_metrics
    table = Table(
        title=f"delgrad run: device {service.device!r} "
        f"({service.config.driver.name}, {service.mode}{', paused' if service.paused else ''})",
        show_header=False,
    )
    rows = [
        (
            "prequential accuracy",
            f"{100 * m.get('accuracy', 0):.1f} % "
            f"(last {int(m.get('labelled_in_window', 0))} labelled trials)",
        ),
        ("loss", f"{m.get('loss', 0):.4f}"),
        ("trials/s", f"{m.get('samples_per_s', 0):,.0f}"),
        (
            "latency p50 / p99",
            f"{m.get('latency.p50_ms', 0):.1f} / {m.get('latency.p99_ms', 0):.1f} ms",
        ),
        (
            "learning steps",
            f"{int(m.get('learning.steps', 0))} (bumps {int(m.get('learning.bumps', 0))})",
        ),
        ("parameter update seq", f"{int(m.get('param_seq', 0))}"),
        ("trials processed", f"{int(m.get('trials.processed', 0)):,}"),
        (
            "dropped (overload / malformed)",
            f"{int(m.get('dropped.overload', 0))} / "
            f"{int(sum(v for k, v in m.items() if k.startswith('malformed.')))}",
        ),
        ("published", f"{m.get('bytes_published_per_s', 0) / 1024:.1f} KiB/s"),
        ("uptime", f"{m.get('uptime_s', 0):.0f} s  (Ctrl-C stops cleanly)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def run(args: argparse.Namespace) -> int:
    """Run the service; exit 0 on a clean stop (see the exit-code table)."""
    try:
        config = build_config(args)
        if not config.broker.url:
            check_port(config.broker.embedded_port)
        if config.checkpoint.dir and args.fresh:
            moved = move_checkpoints_aside(Path(config.checkpoint.dir))
            if moved is not None:
                log.info("--fresh: moved the old checkpoints to %s", moved)
        else:
            problem = checkpoint_mismatch(config)
            if problem is not None:
                raise ConfigError(problem)
    except TransportError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except DelgradError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    demo = args.config is None
    rate = args.demo_rate if args.demo_rate is not None else (DEMO_RATE if demo else 0.0)
    url, embedded = endpoint(config)
    if embedded:
        port = config.broker.embedded_port
        where = f"embedded broker on 127.0.0.1:{port}" if port else "embedded broker, free port"
    else:
        where = f"broker {url}"
    log.info(
        "starting device %r: recipe %s, driver %s, %s%s; compiling kernels first",
        config.device,
        config.model.recipe,
        config.driver.name,
        where,
        f", built-in Yin-Yang sensor at {rate:g} trials/s" if rate > 0 else "",
    )
    live = not (args.plain or args.quiet) and is_terminal()
    announced = False

    def plain_tick(service: Service) -> None:
        nonlocal announced
        try:
            if not announced:
                announced = True
                print(attach_text(config, service), flush=True)
            print_line(service)
        except BrokenPipeError:
            # whoever read our lines is gone (tee or a pager, e.g. after a Ctrl-C that
            # reached them first): the device goes on, its lines go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def live_tick(display: Live, service: Service) -> None:
        nonlocal announced
        if not announced:
            announced = True
            # soft_wrap: printed above the panel whole; the terminal, not rich,
            # wraps a long command, so it still copies as one line.
            display.console.print(
                attach_text(config, service), soft_wrap=True, markup=False, highlight=False
            )
        display.update(_table(service))

    try:
        if live:
            with (
                Live(refresh_per_second=4, transient=False) as display,
                logging_above(display.console),
            ):
                display.update(Text("delgrad run: starting (compiling kernels) ..."))
                asyncio.run(
                    serve(
                        config,
                        demo_rate=rate,
                        duration_s=args.duration,
                        on_tick=lambda s: live_tick(display, s),
                    )
                )
        else:
            asyncio.run(
                serve(
                    config,
                    demo_rate=rate,
                    duration_s=args.duration,
                    on_tick=plain_tick,
                    tick_s=config.publish.metrics_period_s,
                )
            )
    except TransportError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except DelgradError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return ExitCode.OK
    return ExitCode.OK
