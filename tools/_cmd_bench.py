"""``delgrad bench``: benchmarks, printed as one JSON line each.

``core``, ``protocol`` and ``drivers`` measure in this process;
``e2e throughput|latency|memory`` start Mosquitto, ``delgrad run`` and
``delgrad sensor`` as separate processes on loopback (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from delgrad.tools._bench_e2e import BENCHMARKS, parse_overrides
from delgrad.tools.bench_core import bench_core, bench_core_sweep
from delgrad.tools.bench_drivers import bench_drivers
from delgrad.tools.bench_protocol import bench_protocol


def _repeats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the median is printed")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the benchmarks of ``delgrad bench`` and their arguments."""
    sub = parser.add_subparsers(dest="what", metavar="BENCHMARK", required=True)
    core = sub.add_parser("core", help="kernels: forward and forward+backward samples/s")
    _repeats(core)
    core.add_argument(
        "--sweep", action="store_true", help="sizes 4-30-3 to 2312-400-10, one JSON line per shape"
    )
    core.add_argument("--threads", type=int, default=1, help="--sweep only: threads per batch")
    _repeats(sub.add_parser("protocol", help="codec: encode/decode rates and bytes per update"))
    _repeats(sub.add_parser("drivers", help="emulator driver samples/s, ideal and bss2"))
    e2e = sub.add_parser(
        "e2e",
        help="the streaming runtime through Mosquitto (needs the mosquitto binary)",
        description="End to end through a real Mosquitto on loopback: delgrad sensor -> "
        "broker -> delgrad run -> broker, measured from the runtime's metrics and /proc.",
    )
    e2e.add_argument("kind", choices=sorted(BENCHMARKS), help="which measurement")
    e2e.add_argument("--rate", type=float, help="sensor trials/s (memory: nominal rate)")
    e2e.add_argument("--batch", type=int, help="trials per event message")
    e2e.add_argument("--measure", type=float, help="seconds measured (throughput, latency)")
    e2e.add_argument("--overload", type=float, default=1.0, help="memory: offered / nominal")
    e2e.add_argument("--last", type=int, help="memory: trials streamed in all")
    e2e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="runtime configuration override, e.g. inference.max_batch=2048",
    )


def _e2e(args: argparse.Namespace) -> int:
    try:
        config = parse_overrides(args.set)
    except ValueError as exc:
        print(f"delgrad bench e2e: error: {exc}", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"config": config}
    if args.rate is not None:
        kwargs["rate"] = args.rate
    if args.batch is not None:
        kwargs["batch"] = args.batch
    if args.kind == "memory":
        kwargs["overload"] = args.overload
        if args.last is not None:
            kwargs["last"] = args.last
    elif args.measure is not None:
        kwargs["measure_s"] = args.measure
    result = asyncio.run(BENCHMARKS[args.kind](**kwargs))
    print(json.dumps(result), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one benchmark and print its JSON line(s)."""
    if args.what == "e2e":
        return _e2e(args)
    if args.what == "core" and args.sweep:
        for row in bench_core_sweep(repeats=args.repeats, threads=args.threads):
            print(json.dumps(row), flush=True)
    elif args.what == "core":
        print(json.dumps(bench_core(repeats=args.repeats)))
    elif args.what == "drivers":
        print(json.dumps(bench_drivers(repeats=args.repeats)))
    else:
        print(json.dumps(bench_protocol(repeats=args.repeats)))
    return 0
