"""``delgrad plot``: PNG curves of a ``delgrad monitor --record`` file (JSON lines).

By default four panels: prequential accuracy (%), loss, throughput (trials/s) and
latency (p50 and p99, ms); ``--metrics`` chooses others (names or shell patterns,
e.g. ``'dropped.*'``; ``--list`` shows what the file holds). One line per device.
The title names the file, the devices and the recorded time span. A missing,
unreadable or empty recording, or a metric the file does not hold, is a one-line
error with exit code 2.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import ConfigError, ParameterError
from delgrad.tools._exit import ExitCode
from delgrad.tools._plots import plot_panels

_SKIP = frozenset({"time_s", "device", "kind", "step", "seq", "sender"})
#: The default panels: (title, y label, metric names drawn in it).
DEFAULT_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("prequential accuracy", "%", ("accuracy",)),
    ("loss", "loss", ("loss",)),
    ("throughput", "trials/s", ("samples_per_s",)),
    ("latency", "ms", ("latency.p50_ms", "latency.p99_ms")),
)


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``plot`` subcommand's arguments."""
    parser.add_argument("file", metavar="FILE", help="a recording of delgrad monitor --record")
    parser.add_argument("--out", metavar="PNG", help="output PNG (default: FILE with .png)")
    parser.add_argument("--device", help="plot only this device (default: every device)")
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="NAMES",
        help="metrics to draw, comma-separated names or patterns, one panel each "
        "(default: accuracy, loss, throughput, latency)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the metrics of the recording and exit"
    )


def read_recording(path: Path) -> list[dict[str, Any]]:
    """Read JSON lines; blank lines are skipped, a cut-off last line (no newline) too.

    Raises:
        ConfigError: If the file is missing or a line is not a JSON object with a
            finite numeric ``time_s`` (the message names the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    lines = text.split("\n")
    records = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if no == len(lines):  # the writer was killed mid-line: ignore the fragment
                print(f"{path}:{no}: ignoring a cut-off last line", file=sys.stderr)
                break
            raise ConfigError(f"{path}:{no}: not valid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"{path}:{no}: expected a JSON object")
        t = rec.get("time_s")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ConfigError(f"{path}:{no}: needs a finite numeric time_s")
        records.append(rec)
    return records


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def series(
    records: list[dict[str, Any]], device: str | None
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """metric -> device -> (times, values) of the metrics records."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for r in records:
        if r.get("kind", "metrics") != "metrics":
            continue
        dev = str(r.get("device", "?"))
        if device is not None and dev != device:
            continue
        for k, v in r.items():
            if k in _SKIP or not _number(v):
                continue
            ts, vs = out.setdefault(k, {}).setdefault(dev, ([], []))
            ts.append(float(r["time_s"]))
            vs.append(float(v))
    return out


def _is_accuracy(name: str) -> bool:
    return name == "accuracy" or name.endswith((".accuracy", "_accuracy"))


def choose_panels(names: list[str], metrics: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The panels to draw: the defaults (those present) or one per chosen metric.

    Raises:
        ConfigError: a chosen name or pattern that matches nothing (lists what exists).
    """
    if not metrics:
        return [
            (title, unit, tuple(m for m in ms if m in names))
            for title, unit, ms in DEFAULT_PANELS
            if any(m in names for m in ms)
        ]
    chosen: list[str] = []
    for item in (p.strip() for arg in metrics for p in arg.split(",")):
        if not item:
            continue
        hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
        if not hits:
            raise ConfigError(
                f"no metric {item!r} in the recording; it has: {', '.join(names) or 'none'}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return [(n, "%" if _is_accuracy(n) else "", (n,)) for n in chosen]


def _span(t0: float, t1: float) -> str:
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0))
    end = time.strftime("%H:%M:%S", time.localtime(t1))
    return f"{start} - {end} ({t1 - t0:.0f} s)"


def run(args: argparse.Namespace) -> int:
    """Write the PNG (exit codes of the shared table: 0, or 2 for a bad recording)."""
    path = Path(args.file)
    out = Path(args.out) if args.out else path.with_suffix(".png")
    if out.resolve() == path.resolve():
        out = path.with_name(path.name + ".png")  # never overwrite the recording
    try:
        records = read_recording(path)
        data = series(records, args.device)
        names = sorted(data)
        if args.list:
            print("\n".join(names))
            return ExitCode.OK
        if not data:
            statuses = sum(r.get("kind") == "status" for r in records)
            what = f"device {args.device!r}" if args.device else "any device"
            raise ConfigError(
                f"{path}: no metrics of {what} ({len(records)} records, {statuses} status); "
                "record with delgrad monitor --record FILE while a device runs"
            )
        panels = choose_panels(names, args.metrics)
        if not panels:
            raise ConfigError(
                f"{path}: none of accuracy, loss, samples_per_s, latency.* recorded; "
                f"choose with --metrics from: {', '.join(names)}"
            )
        times = [t for dev in data.values() for ts, _ in dev.values() for t in ts]
        t0, t1 = min(times), max(times)
        devices = sorted({d for dev in data.values() for d in dev})
        drawn = []
        for title, unit, metrics in panels:
            lines = []
            for m in metrics:
                scale = 100.0 if _is_accuracy(m) else 1.0
                for dev in devices:
                    if dev not in data[m]:
                        continue
                    ts, vs = data[m][dev]
                    label = " ".join(
                        p
                        for p in (dev if len(devices) > 1 else "", m if len(metrics) > 1 else "")
                        if p
                    )
                    lines.append((label or m, np.array(ts) - t0, scale * np.array(vs)))
            drawn.append((title, unit, lines))
        who = ", ".join(devices) if len(devices) <= 4 else f"{len(devices)} devices"
        title = f"{who} | {path.name} | {_span(t0, t1)}"
        rates = {name for name, unit, _ in drawn if unit.endswith("/s") or unit == "ms"}
        written = plot_panels(out, drawn, title=title, from_zero=rates)
    except (ConfigError, ParameterError) as exc:
        print(f"delgrad plot: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"delgrad plot: error: cannot write {out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"wrote {written} ({', '.join(t for t, _, _ in drawn)}; {len(records)} records)")
    return ExitCode.OK
