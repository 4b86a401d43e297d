"""``delgrad bench``: benchmarks, printed as a table (``--json``: one JSON line each).

``core``, ``protocol`` and ``drivers`` measure in this process;
``e2e throughput|latency|memory`` start Mosquitto, ``delgrad run`` and
``delgrad sensor`` as separate processes on loopback (docs/performance.md);
``chaos`` storms ``delgrad run`` with hostile input, broker restarts and SIGKILLs;
``soak`` runs it for hours through full disks, a read-only folder, frozen and
restarted brokers and SIGKILLs (docs/security.md).

Every JSON key names its unit (``forward_samples_per_s``, ``message_bytes``,
``encode_MB_per_s``, ``latency_p99_ms``); the table shows the same figures with
the unit in its own column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from delgrad.tools._bench_drift import SCENARIOS, bench_drift
from delgrad.tools._bench_e2e import (
    BENCHMARKS,
    LIVE_NETWORKS,
    NETWORKS,
    check_live,
    parse_overrides,
)
from delgrad.tools._bench_fleet import bench_fleet, median_of
from delgrad.tools._chaos import run_chaos
from delgrad.tools._logging import stderr_line
from delgrad.tools._mosquitto import mosquitto_binary
from delgrad.tools._soak import run_soak
from delgrad.tools._studies import add_study_arguments, exit_code
from delgrad.tools.bench_core import bench_core, bench_core_sweep, bench_thread_scaling
from delgrad.tools.bench_drivers import bench_drivers
from delgrad.tools.bench_protocol import bench_protocol


def _repeats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the median is printed")
    _json(parser)


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="one JSON line per result (keys name their units)"
    )


#: Keys of the benchmark modules without a unit in their name -> the name with it.
RENAMES = {
    "core": {
        "forward_per_s": "forward_samples_per_s",
        "forward_backward_per_s": "forward_backward_samples_per_s",
    },
    "drivers": {
        "batch_40_per_s": "batch_40_trials_per_s",
        "batch_1000_per_s": "batch_1000_trials_per_s",
    },
    "protocol": {
        "bytes": "message_bytes",
        "encode_msg_per_s": "encode_messages_per_s",
        "decode_msg_per_s": "decode_messages_per_s",
        "encode_mb_per_s": "encode_MB_per_s",
        "decode_mb_per_s": "decode_MB_per_s",
        "delta_int8_make_per_s": "delta_int8_make_messages_per_s",
        "params": "parameters_count",
        "repeats": "repeats_count",
    },
    "e2e": {
        "offered_per_s": "offered_trials_per_s",
        "joined_per_s": "joined_trials_per_s",
        "dropped_overload": "dropped_overload_trials",
        "dropped_inbox_messages": "dropped_inbox_messages_count",
        "drop_rate": "drop_fraction",
        "rate_offered": "offered_trials_per_s",
        "overload": "overload_factor",
        "batch": "batch_trials",
        "streamed_first": "streamed_first_trials",
        "streamed_last": "streamed_last_trials",
        "accuracy": "accuracy_fraction",
    },
}
#: Unit suffixes of keys, longest first, and how the table shows them.
UNITS = (
    ("_samples_per_s", "samples/s"),
    ("_trials_per_s", "trials/s"),
    ("_messages_per_s", "messages/s"),
    ("_MB_per_s", "MB/s"),
    ("_per_s", "1/s"),
    ("_percent", "%"),
    ("_heartbeats", "heartbeats"),
    ("_fraction", "fraction"),
    ("_factor", "x"),
    ("_bytes", "bytes"),
    ("_count", ""),
    ("_trials", "trials"),
    ("_ms", "ms"),
    ("_mb", "MiB"),
    ("_s", "s"),
)


def with_units(result: Any, what: str) -> Any:
    """``result`` with every key renamed to name its unit (nested mappings too)."""
    if isinstance(result, dict):
        names = RENAMES.get(what, {})
        return {names.get(k, k): with_units(v, what) for k, v in result.items()}
    return result


def _unit(key: str) -> tuple[str, str]:
    for suffix, unit in UNITS:
        if key.endswith(suffix):
            return key[: -len(suffix)], unit
    return key, ""


def table(result: dict[str, Any], title: str) -> str:
    """A plain, aligned table of a (nested) result: measure, value, unit."""
    rows: list[tuple[str, str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k} / " if isinstance(v, dict) else prefix + k, v)
            return
        name, unit = _unit(prefix.rsplit(" / ", 1)[-1])
        head = prefix.rsplit(" / ", 1)[0] + " / " if " / " in prefix else ""
        if isinstance(value, float):
            text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = json.dumps(value)
        rows.append((f"{head}{name}".replace("_", " "), text, unit))

    walk("", result)
    w0 = max([len(r[0]) for r in rows] + [7])
    w1 = max([len(r[1]) for r in rows] + [5])
    lines = [title, f"{'measure':<{w0}}  {'value':>{w1}}  unit"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def _emit(result: dict[str, Any], what: str, title: str, as_json: bool) -> None:
    result = with_units(result, what)
    print(json.dumps(result) if as_json else table(result, title), flush=True)


def register(parser: argparse.ArgumentParser) -> None:
    """Add the benchmarks of ``delgrad bench`` and their arguments."""
    sub = parser.add_subparsers(dest="what", metavar="BENCHMARK", required=True)
    core = sub.add_parser("core", help="kernels: forward and forward+backward samples/s")
    _repeats(core)
    which = core.add_mutually_exclusive_group()
    which.add_argument(
        "--sweep", action="store_true", help="sizes 4-30-3 to 2312-400-10, one JSON line per shape"
    )
    which.add_argument(
        "--thread-scaling",
        action="store_true",
        help="784-350-10 training step: 1 vs --threads (default 2) threads, alternated; "
        "median paired speed-up",
    )
    core.add_argument(
        "--threads",
        type=int,
        help="--sweep: threads per batch (default 1); --thread-scaling: the count "
        "compared with one (default 2)",
    )
    _repeats(sub.add_parser("protocol", help="codec: encode/decode rates and bytes per update"))
    _repeats(sub.add_parser("drivers", help="emulator driver samples/s, ideal and bss2"))
    e2e = sub.add_parser(
        "e2e",
        help="the streaming runtime through Mosquitto (needs the mosquitto binary)",
        description="End to end through a real Mosquitto on loopback: delgrad sensor -> "
        "broker -> delgrad run -> broker, measured from the runtime's metrics and /proc.",
    )
    e2e.add_argument("kind", choices=sorted(BENCHMARKS), help="which measurement")
    e2e.add_argument(
        "--rate", type=float, help="sensor trials/s (memory: nominal rate; live: windows/s)"
    )
    e2e.add_argument(
        "--batch", type=int, help="trials per event message (live: windows per message)"
    )
    e2e.add_argument(
        "--network",
        choices=sorted({*NETWORKS, *LIVE_NETWORKS}),
        help="throughput/latency/memory: yinyang (default) or a sensor-scale network on "
        "random trials (its shipped bench_* recipe); live: digits (default) or 784",
    )
    e2e.add_argument("--measure", type=float, help="seconds measured (throughput, latency)")
    e2e.add_argument("--overload", type=float, default=1.0, help="memory: offered / nominal")
    e2e.add_argument("--last", type=int, help="memory: trials streamed in all")
    e2e.add_argument(
        "--source",
        default="yinyang",
        metavar="FILE",
        help="what the sensor streams: 'yinyang' (default) or a file (delgrad sensor "
        "--source); live: an event recording of `delgrad digits events`",
    )
    e2e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="runtime configuration override, e.g. inference.max_batch=2048",
    )
    _json(e2e)
    chaos = sub.add_parser(
        "chaos",
        help="hostile commands, bad messages, broker restarts and SIGKILLs against "
        "delgrad run over Mosquitto, invariants checked after every event",
        description="A seeded chaos run (tools/_chaos.py, docs/security.md); prints one "
        "JSON line: events by kind, invariant checks, violations, recovery times, RSS; "
        "exit 1 on any violation.",
    )
    chaos.add_argument("--events", type=int, default=2000, help="events in all")
    chaos.add_argument("--broker-restarts", type=int, default=20, help="broker restarts among them")
    chaos.add_argument("--kills", type=int, default=10, help="SIGKILL + restart of the service")
    chaos.add_argument("--seed", type=int, default=0, help="random seed")
    chaos.add_argument(
        "--rss-bound-mb", type=float, default=1024.0, help="RSS bound of the service"
    )
    drift = sub.add_parser(
        "drift",
        help="a drifting chip and a shifting world: a frozen and a learning device side by "
        "side through Mosquitto (scenarios: " + ", ".join(SCENARIOS) + ")",
        description="Scenarios of tools/_bench_drift.py (docs/results.md, 'Drift'): per "
        "scenario a table of medians over seeds (or --json with every seed) and a PNG of "
        "accuracy over device time for both arms.",
    )
    drift.add_argument("scenario", nargs="*", help="default: drift-W drift-WA")
    drift.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    drift.add_argument("--rate", type=float, default=2000.0, help="trials/s per arm (default 2000)")
    drift.add_argument("--trials", type=int, help="shorten every scenario to this many trials")
    drift.add_argument(
        "--networks",
        type=Path,
        default=Path("runs/drift-networks"),
        help="start networks RECIPE/network.npz (trained here first if missing)",
    )
    drift.add_argument("--plot-dir", type=Path, default=Path("."), help="where the PNGs go")
    drift.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench-drift"),
        help="one JSON file per scenario and seed (a rerun skips those)",
    )
    drift.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="run-config field of both arms, e.g. learning.lr_scale=0.3 (repeatable)",
    )
    add_study_arguments(drift, jobs_default="1: a run uses both cores of a small machine")
    _json(drift)
    fleet = sub.add_parser(
        "fleet",
        help="one monitor with its Prometheus exporter watching N simulated devices",
        description="tools/_bench_fleet.py (docs/fleet.md): the monitor's CPU and RSS, "
        "scrape time and staleness detection with N devices publishing metrics every 2 s "
        "and a heartbeat every 5 s through one Mosquitto; the median of --runs runs.",
    )
    fleet.add_argument("--devices", type=int, default=1000, help="devices (default 1000)")
    fleet.add_argument("--runs", type=int, default=3, help="runs, median reported (default 3)")
    fleet.add_argument(
        "--measure-s", type=float, default=30.0, help="seconds measured per run (default 30)"
    )
    fleet.add_argument(
        "--delta-rate",
        type=float,
        default=0.0,
        help="parameter deltas per second per device (default 0; watched with --full)",
    )
    fleet.add_argument(
        "--full", action="store_true", help="monitor with the parameter stream (not --metrics-only)"
    )
    fleet.add_argument(
        "--silence", type=int, default=10, help="devices silenced to time staleness (default 10)"
    )
    fleet.add_argument(
        "--monitor-nice",
        type=int,
        default=0,
        help="nice value of the monitor (default 0; below 0, as root, puts it ahead of "
        "other jobs on a shared machine)",
    )
    _json(fleet)
    soak = sub.add_parser(
        "soak",
        help="hours of delgrad run through full disks, a read-only folder, frozen and "
        "restarted brokers and SIGKILLs (root: it mounts a tmpfs)",
        description="The soak of tools/_soak.py (docs/security.md, 'Soak'): a table (or "
        "--json) of RSS growth, counters and numbers going backwards, checkpoints lost, "
        "accuracy and every health warning raised and cleared; exit 1 if any check fails.",
    )
    soak.add_argument(
        "--duration-s",
        "--duration",
        dest="duration",
        type=float,
        default=7200.0,
        help="seconds (default 7200); a shorter run scales the schedule down",
    )
    soak.add_argument("--rate", type=float, default=2000.0, help="sensor trials/s (default 2000)")
    soak.add_argument(
        "--warm-up-s",
        type=float,
        default=120.0,
        help="seconds of each boot before its RSS baseline (default 120; at most 1/20 of the run)",
    )
    soak.add_argument(
        "--disk-mb", type=int, default=16, help="size of the checkpoint tmpfs in MiB (default 16)"
    )
    soak.add_argument(
        "--out",
        type=Path,
        help="keep the work folder here (logs, samples.jsonl); default: a temporary one",
    )
    _json(soak)


def _drift(args: argparse.Namespace) -> int:
    names = args.scenario or ["drift-W", "drift-WA"]
    unknown = [n for n in names if n not in SCENARIOS]
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if unknown or not seeds or min(seeds) < 0 or args.rate <= 0 or (args.trials or 1000) < 1000:
        print(
            "delgrad bench drift: error: "
            + (
                f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})"
                if unknown
                else "need --seeds N[,N...] >= 0, --rate > 0, --trials >= 1000"
            ),
            file=sys.stderr,
        )
        return 2

    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        print(f"delgrad bench drift: error: {exc}", file=sys.stderr)
        return 2

    args.plot_dir.mkdir(parents=True, exist_ok=True)
    result, outcome = bench_drift(
        names,
        seeds=seeds,
        rate=args.rate,
        trials=args.trials,
        networks=args.networks,
        out=args.out,
        plot_dir=args.plot_dir,
        overrides=overrides,
        log=stderr_line,
        jobs=args.jobs or 1,
        scheduler=args.scheduler,
    )
    for name, entry in result.items():
        if args.json:
            print(json.dumps({"scenario": name, **entry}), flush=True)
        else:
            title = f"bench drift {name}: {entry['detail']}, median of {len(entry['seeds'])} seeds"
            print(table(entry["median"], title), flush=True)
            if "plot" in entry:
                print(f"plot: {entry['plot']}", flush=True)
    return exit_code("bench drift", outcome)


def _soak(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.rate <= 0 or args.disk_mb < 4 or args.warm_up_s < 0:
        print(
            "delgrad bench soak: error: need --duration-s > 0, --rate > 0, --disk-mb >= 4, "
            "--warm-up-s >= 0",
            file=sys.stderr,
        )
        return 2

    try:
        report = asyncio.run(
            run_soak(
                duration_s=args.duration,
                rate=args.rate,
                disk_mb=args.disk_mb,
                warm_up_s=args.warm_up_s,
                folder=args.out,
                log=stderr_line,  # stderr in both modes (stdout: the table or the JSON line)
            )
        )
    except PermissionError as exc:
        print(f"delgrad bench soak: error: {exc}", file=sys.stderr)
        return 2
    summary = report.summary()
    title = f"bench soak: {args.duration:.0f} s at {args.rate:.0f} trials/s"
    if args.json:
        summary["events"] = report.events
        summary["timeline"] = report.timeline()
    else:
        print(soak_timeline(report.timeline()), flush=True)
    _emit(summary, "soak", title, args.json)
    return 0 if report.passed() else 1


def soak_timeline(rows: list[dict[str, Any]]) -> str:
    """The soak's samples over time as a plain table (units in the header)."""
    head = (
        f"{'t (s)':>8}  {'RSS (MB)':>8}  {'accuracy':>8}  {'disk used':>9}  {'ckpts':>5}  warnings"
    )
    lines = ["bench soak over time", head]
    for r in rows:
        acc = "-" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f} %"
        disk = "-" if "disk_used_fraction" not in r else f"{100 * r['disk_used_fraction']:.0f} %"
        lines.append(
            f"{r['t_s']:>8.0f}  {r.get('rss_mb', 0):>8.1f}  {acc:>8}  {disk:>9}  "
            f"{r.get('checkpoints_count', '-'):>5}  {','.join(r.get('warnings', [])) or '-'}"
        )
    return "\n".join(lines)


def _chaos(args: argparse.Namespace) -> int:
    report = asyncio.run(
        run_chaos(
            events=args.events,
            broker_restarts=args.broker_restarts,
            kills=args.kills,
            seed=args.seed,
            rss_bound_mb=args.rss_bound_mb,
        )
    )
    print(json.dumps(report.summary()), flush=True)
    return 1 if report.violations else 0


def _e2e(args: argparse.Namespace) -> int:
    try:
        config = parse_overrides(args.set)
    except ValueError as exc:
        print(f"delgrad bench e2e: error: {exc}", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"config": config, "source": args.source}
    if args.network is not None:
        allowed = LIVE_NETWORKS if args.kind == "live" else NETWORKS
        if args.network not in allowed:
            print(
                f"delgrad bench e2e {args.kind}: --network {args.network} is not one of "
                f"{', '.join(allowed)}",
                file=sys.stderr,
            )
            return 2
        kwargs["network"] = args.network
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
    if args.kind == "live":
        try:
            check_live(kwargs.get("rate", 1000.0), args.source, kwargs.get("network", "digits"))
        except ValueError as exc:
            print(f"delgrad bench e2e live: {exc}", file=sys.stderr)
            return 2
    result = asyncio.run(BENCHMARKS[args.kind](**kwargs))
    _emit(result, "e2e", f"bench e2e {args.kind}", args.json)
    return 0


def _fleet(args: argparse.Namespace) -> int:
    if args.devices < 1 or args.runs < 1 or not args.measure_s > 0 or args.delta_rate < 0:
        print(
            "delgrad bench fleet: error: need --devices >= 1, --runs >= 1, --measure-s > 0 "
            "and --delta-rate >= 0",
            file=sys.stderr,
        )
        return 2
    if mosquitto_binary() is None:
        print(
            "delgrad bench fleet: error: needs mosquitto (apt-get install mosquitto)",
            file=sys.stderr,
        )
        return 2
    runs = []
    for i in range(args.runs):
        result = asyncio.run(
            bench_fleet(
                args.devices,
                measure_s=args.measure_s,
                silence=min(args.silence, args.devices),
                delta_rate_per_s=args.delta_rate,
                full=args.full,
                monitor_nice=args.monitor_nice,
            )
        )
        runs.append(result)
        if args.json:
            print(json.dumps({"run": i + 1, **result}), flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    title = f"bench fleet: {args.devices} devices, median of {args.runs} runs (load now {load})"
    _emit(median_of(runs), "fleet", title, args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one benchmark and print its table (or JSON line(s) with ``--json``)."""
    if args.what == "fleet":
        return _fleet(args)
    if args.what == "e2e":
        return _e2e(args)
    if args.what == "chaos":
        return _chaos(args)
    if args.what == "soak":
        return _soak(args)
    if args.what == "drift":
        return _drift(args)
    if args.what == "core" and args.thread_scaling:
        for row in bench_thread_scaling(threads=args.threads or 2, repeats=args.repeats):
            _emit(row, "core", "bench core --thread-scaling", args.json)
    elif args.what == "core" and args.sweep:
        for row in bench_core_sweep(repeats=args.repeats, threads=args.threads or 1):
            _emit(row, "core", "bench core --sweep", args.json)
    elif args.what == "core":
        result = bench_core(repeats=args.repeats)
        title = "bench core: 4-30-3 synaptic, batch 150 (ratio_2: tau_m = 2 tau_s)"
        _emit(result, "core", title, args.json)
    elif args.what == "drivers":
        _emit(bench_drivers(repeats=args.repeats), "drivers", "bench drivers", args.json)
    else:
        _emit(bench_protocol(repeats=args.repeats), "protocol", "bench protocol", args.json)
    return 0
