"""``delgrad run``: the online-learning service (no arguments: the demonstration)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.live import Live
from rich.table import Table

from delgrad.errors import DelgradError
from delgrad.runtime.service import Service, load_run_config
from delgrad.tools._run_app import is_terminal, print_line, serve

DEMO_RATE = 5000.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad run``."""
    parser.add_argument(
        "--config",
        type=Path,
        help="service configuration (TOML, see docs/runtime.md); without it, "
        "the demonstration runs: embedded broker, emulator, built-in sensor",
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
        "--quiet", action="store_true", help="plain status lines instead of the live display"
    )


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
    """Run the service; exit 0 on a clean stop."""
    try:
        config = load_run_config(args.config)
    except DelgradError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return 2
    demo = args.config is None
    rate = args.demo_rate if args.demo_rate is not None else (DEMO_RATE if demo else 0.0)
    live = not args.quiet and is_terminal()
    try:
        if live:
            with Live(refresh_per_second=4, transient=False) as display:
                asyncio.run(
                    serve(
                        config,
                        demo_rate=rate,
                        duration_s=args.duration,
                        on_tick=lambda s: display.update(_table(s)),
                    )
                )
        else:
            asyncio.run(
                serve(
                    config,
                    demo_rate=rate,
                    duration_s=args.duration,
                    on_tick=print_line,
                    tick_s=config.publish.metrics_period_s,
                )
            )
    except DelgradError as exc:
        print(f"delgrad run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
