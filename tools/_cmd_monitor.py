"""``delgrad monitor``: a live table of devices' metrics, status and parameters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
import uuid
from typing import IO, Any

from rich.live import Live

from delgrad.errors import ConfigError, DelgradError
from delgrad.protocols import TransportError, is_valid_name, parse_broker_url, transport_from_url
from delgrad.runtime import save_network
from delgrad.tools._broker_opts import DEFAULT_BROKER, add_broker_arguments, broker_url
from delgrad.tools._exit import ExitCode
from delgrad.tools._exporter import FleetExporter, parse_listen, serve
from delgrad.tools._logging import logging_above
from delgrad.tools._monitor import (
    KINDS,
    MAX_DEVICES,
    METRICS_KINDS,
    MonitorState,
    fleet_line,
    monitor,
    render,
    replica_network,
)

#: Seconds between the summary lines of a plain fleet monitor (``--prometheus``).
FLEET_LINE_S = 10.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``monitor`` subcommand's arguments."""
    parser.add_argument(
        "device",
        nargs="?",
        default="+",
        metavar="DEVICE",
        help="device id to watch, or + for every device (default +)",
    )
    add_broker_arguments(parser, default=DEFAULT_BROKER)
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="append one JSON object per metrics/status message to FILE, flushed as it "
        "goes; the file grows for as long as the monitor runs (plot it with delgrad plot)",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--metrics-only",
        action="store_true",
        help="metrics and status only, no parameter stream (for a thin link: about "
        "1/40 of the bytes of the full mode at 5,000 trials/s; docs/getting-started.md)",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="add a metric column to the table (repeatable; the table's default columns "
        "fit 80 characters)",
    )
    parser.add_argument(
        "--save-network",
        metavar="FILE.npz",
        help="at the end, write the device's latest parameters (from the parameter "
        "stream) as a network file, e.g. for delgrad export-nir or delgrad eval; needs "
        "one DEVICE and the full mode",
    )
    parser.add_argument(
        "--prometheus",
        metavar="[HOST:]PORT",
        help="serve every device's metrics, state and health for Prometheus on "
        "http://HOST:PORT/metrics (host default 127.0.0.1; 0.0.0.0 for a remote "
        "Prometheus); plain output is then one summary line every 10 s (docs/fleet.md)",
    )
    parser.add_argument(
        "--max-devices",
        type=int,
        default=MAX_DEVICES,
        metavar="N",
        help=f"most devices watched; messages of further ones are counted and dropped "
        f"(default {MAX_DEVICES:,})",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="one line per metrics/status message instead of the live table (the "
        "default when stdout is not a terminal, and with -q)",
    )


class _Recorder:
    """Appends records as JSON lines, flushing each (the file is the user's; unbounded)."""

    def __init__(self, fh: IO[str] | None) -> None:
        self.fh = fh
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        if self.fh is None:
            return
        self.fh.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self.fh.flush()
        self.written += 1


async def _main(args: argparse.Namespace, recorder: _Recorder) -> Any:
    transport = transport_from_url(args.broker, client_id=f"monitor-{uuid.uuid4().hex[:8]}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    state = MonitorState(max_devices=args.max_devices)
    plain = args.plain or args.quiet or not sys.stdout.isatty()
    mode = "metrics only" if args.metrics_only else "metrics and parameters"
    exporter = FleetExporter(state) if args.prometheus else None
    if exporter is not None:
        exporter.transport = transport
    next_line_s = time.monotonic() + FLEET_LINE_S

    def on_update(st: MonitorState, record: dict[str, Any] | None) -> None:
        nonlocal next_line_s
        if exporter is not None:
            exporter.observe(record)
            if plain and time.monotonic() >= next_line_s:  # a fleet: a summary, not rows
                next_line_s = time.monotonic() + FLEET_LINE_S
                print(fleet_line(st, time.time()), flush=True)
        if record is None:
            return
        recorder.write(record)
        if plain and exporter is None:
            print(st.quiet_line(record), flush=True)

    server = None
    if exporter is not None:
        host, port = parse_listen(args.prometheus)
        server, port = serve(exporter, host, port)
        shown = f"[{host}]" if ":" in host else host
        print(f"monitor: Prometheus metrics on http://{shown}:{port}/metrics", file=sys.stderr)
    try:
        await transport.connect()
    except BaseException:
        if server is not None:
            server.shutdown()
            server.server_close()
        raise
    try:
        if plain:
            print(
                f"monitor: watching {args.device} on {args.shown_broker}, {mode} (Ctrl-C to stop)",
                file=sys.stderr,
            )
            display: contextlib.AbstractContextManager = contextlib.nullcontext()
            above: contextlib.AbstractContextManager = contextlib.nullcontext()
        else:
            title = f"delgrad monitor {args.device} on {args.shown_broker} (Ctrl-C stops)"
            display = Live(
                get_renderable=lambda: render(
                    state,
                    time.time(),
                    title=title,
                    extra=tuple(args.metric),
                    parameters=not args.metrics_only,
                ),
                refresh_per_second=2,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            above = logging_above(display.console)
        with display, above:
            await monitor(
                transport,
                args.device,
                on_update=on_update,
                stop=stop,
                duration_s=args.duration,
                state=state,
                kinds=METRICS_KINDS if args.metrics_only else KINDS,
            )
    finally:
        await transport.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return state


def run(args: argparse.Namespace) -> int:
    """Watch until Ctrl-C / SIGTERM or ``--duration``.

    Returns:
        The shared exit code: 0 on a clean end, 1 if the recording cannot be written,
        2 on bad arguments, 3 if the broker cannot be reached.
    """
    try:
        if args.device != "+" and not is_valid_name(args.device):
            raise ConfigError(f"device {args.device!r} is not valid: 1-64 of [A-Za-z0-9_.-] or +")
        if args.max_devices < 1:
            raise ConfigError(f"--max-devices must be >= 1, got {args.max_devices}")
        if args.prometheus is not None:
            parse_listen(args.prometheus)
        if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
            raise ConfigError(f"--duration must be finite and > 0 s, got {args.duration}")
        if args.save_network and (args.device == "+" or args.metrics_only):
            raise ConfigError(
                "--save-network needs one DEVICE and the parameter stream "
                "(not + and not --metrics-only)"
            )
        args.broker = broker_url(args)
        args.shown_broker = parse_broker_url(args.broker).url
    except ConfigError as exc:
        print(f"delgrad monitor: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    fh = None
    try:
        if args.record:
            try:
                fh = open(args.record, "a", encoding="utf-8")
            except OSError as exc:
                print(f"delgrad monitor: error: cannot open --record file: {exc}", file=sys.stderr)
                return ExitCode.USAGE
        recorder = _Recorder(fh)
        try:
            state = asyncio.run(_main(args, recorder))
        except KeyboardInterrupt:  # a second Ctrl-C during shutdown
            return ExitCode.OK
        except TransportError as exc:
            print(f"delgrad monitor: {exc}", file=sys.stderr)
            return ExitCode.UNREACHABLE
        except ConfigError as exc:  # e.g. a TLS file that cannot be read
            print(f"delgrad monitor: error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        except OSError as exc:  # writing the recording failed (disk full, ...)
            print(f"delgrad monitor: recording failed: {exc}", file=sys.stderr)
            return ExitCode.FAILED
    finally:
        if fh is not None:
            fh.close()
    now = time.time()
    line = (
        f"monitor: {state.received} messages from {state.summary(now)}, "
        f"{state.malformed} malformed; received {state.bytes_received:,} bytes "
        f"({state.bytes_per_s(now) / 1024:.2f} KiB/s, "
        f"{'metrics only' if args.metrics_only else 'metrics and parameters'})"
    )
    if args.record:
        line += f"; {recorder.written} records appended to {args.record}"
    print(line, file=sys.stderr)
    if args.save_network:
        view = state.devices.get(args.device)
        try:
            if view is None or view.replica.snapshot is None:
                raise ConfigError(f"no parameters of device {args.device!r} were received")
            net = replica_network(view.replica)
            save_network(net, args.save_network, metadata={"device": args.device})
        except (DelgradError, OSError) as exc:
            print(f"delgrad monitor: --save-network: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        print(
            f"monitor: saved the parameters of {args.device} (update {view.replica.seq}) "
            f"to {args.save_network}",
            file=sys.stderr,
        )
    return ExitCode.OK
