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

from delgrad.errors import ConfigError
from delgrad.protocols import TransportError, is_valid_name, parse_broker_url, transport_from_url
from delgrad.tools._monitor import MonitorState, monitor, render

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``monitor`` subcommand's arguments."""
    parser.add_argument(
        "device",
        nargs="?",
        default="+",
        metavar="DEVICE",
        help="device id to watch, or + for every device (default +)",
    )
    parser.add_argument(
        "--broker",
        default=DEFAULT_BROKER,
        metavar="URL",
        help=f"mqtt://[user[:pass]@]host[:port] or mqtts://... (default {DEFAULT_BROKER}); "
        "the password may come from $DELGRAD_MQTT_PASSWORD",
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="append one JSON object per metrics/status message to FILE, flushed as it "
        "goes; the file grows for as long as the monitor runs (plot it with delgrad plot)",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print one line per metrics/status message instead of the live table",
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
    state = MonitorState()

    def on_update(st: MonitorState, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        recorder.write(record)
        if args.quiet:
            print(st.quiet_line(record), flush=True)

    await transport.connect()
    try:
        if args.quiet:
            print(f"monitor: watching {args.device} (Ctrl-C to stop)", file=sys.stderr)
            display: contextlib.AbstractContextManager = contextlib.nullcontext()
        else:
            title = f"delgrad monitor: {args.device} (Ctrl-C to stop)"
            display = Live(
                get_renderable=lambda: render(state, time.time(), title=title),
                refresh_per_second=2,
                redirect_stdout=False,
                redirect_stderr=False,
            )
        with display:
            await monitor(
                transport,
                args.device,
                on_update=on_update,
                stop=stop,
                duration_s=args.duration,
                state=state,
            )
    finally:
        await transport.close()
    return state


def run(args: argparse.Namespace) -> int:
    """Watch until Ctrl-C / SIGTERM or ``--duration``.

    Returns:
        0 on a clean end, 2 on bad arguments, 1 if the broker cannot be reached or the
        recording cannot be written.
    """
    try:
        if args.device != "+" and not is_valid_name(args.device):
            raise ConfigError(f"device {args.device!r} is not valid: 1-64 of [A-Za-z0-9_.-] or +")
        if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
            raise ConfigError(f"--duration must be finite and > 0 s, got {args.duration}")
        parse_broker_url(args.broker)
    except ConfigError as exc:
        print(f"delgrad monitor: error: {exc}", file=sys.stderr)
        return 2
    fh = None
    try:
        if args.record:
            try:
                fh = open(args.record, "a", encoding="utf-8")
            except OSError as exc:
                print(f"delgrad monitor: error: cannot open --record file: {exc}", file=sys.stderr)
                return 2
        recorder = _Recorder(fh)
        try:
            state = asyncio.run(_main(args, recorder))
        except KeyboardInterrupt:  # a second Ctrl-C during shutdown
            return 0
        except TransportError as exc:
            print(f"delgrad monitor: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # writing the recording failed (disk full, ...)
            print(f"delgrad monitor: recording failed: {exc}", file=sys.stderr)
            return 1
    finally:
        if fh is not None:
            fh.close()
    line = (
        f"monitor: {state.received} messages from {len(state.devices)} devices, "
        f"{state.malformed} malformed"
    )
    if args.record:
        line += f"; {recorder.written} records appended to {args.record}"
    print(line, file=sys.stderr)
    return 0
