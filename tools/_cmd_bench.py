"""``delgrad bench``: throughput benchmarks, printed as one JSON line each."""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad bench``."""
    parser.add_argument(
        "what", choices=["core", "protocol", "drivers"], help="which benchmark to run"
    )
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the median is printed")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="core only: sizes 4-30-3 to 2312-400-10, one JSON line per shape",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="core --sweep only: threads per batch"
    )


def run(args: argparse.Namespace) -> int:
    """Run one benchmark and print its JSON line."""
    if args.what == "core" and args.sweep:
        from delgrad.tools.bench_core import bench_core_sweep

        for row in bench_core_sweep(repeats=args.repeats, threads=args.threads):
            print(json.dumps(row), flush=True)
    elif args.what == "core":
        from delgrad.tools.bench_core import bench_core

        print(json.dumps(bench_core(repeats=args.repeats)))
    elif args.what == "drivers":
        from delgrad.tools.bench_drivers import bench_drivers

        print(json.dumps(bench_drivers(repeats=args.repeats)))
    else:
        from delgrad.tools.bench_protocol import bench_protocol

        print(json.dumps(bench_protocol(repeats=args.repeats)))
    return 0
