"""``delgrad plot``: PNG curves of a ``delgrad monitor --record`` file (JSON lines)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from delgrad.errors import ConfigError, ParameterError
from delgrad.tools._plots import plot_recording

_SKIP = frozenset({"time_s", "device", "kind", "step", "seq", "sender"})


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``plot`` subcommand's arguments."""
    parser.add_argument("file", metavar="FILE", help="a recording of delgrad monitor --record")
    parser.add_argument("--out", metavar="PNG", help="output PNG (default: FILE with .png)")
    parser.add_argument("--device", help="plot only this device (default: every device)")


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


def plot_records(records: list[dict[str, Any]], device: str | None) -> list[dict[str, Any]]:
    """Metrics records as plot_recording input; per-device nesting when several devices."""
    metrics = [r for r in records if r.get("kind", "metrics") == "metrics"]
    if device is not None:
        metrics = [r for r in metrics if r.get("device") == device]
    devices = {r.get("device") for r in metrics}
    out = []
    for r in metrics:
        values = {k: v for k, v in r.items() if k not in _SKIP}
        if len(devices) > 1:
            out.append({"time_s": r["time_s"], str(r.get("device")): values})
        else:
            out.append({"time_s": r["time_s"], **values})
    return out


def run(args: argparse.Namespace) -> int:
    """Write the PNG.

    Returns:
        0 on success, 2 on a missing or malformed recording.
    """
    path = Path(args.file)
    out = Path(args.out) if args.out else path.with_suffix(".png")
    if out.resolve() == path.resolve():
        out = path.with_name(path.name + ".png")  # never overwrite the recording
    try:
        records = plot_records(read_recording(path), args.device)
        written = plot_recording(out, records)
    except (ConfigError, ParameterError) as exc:
        print(f"delgrad plot: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"delgrad plot: error: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} ({len(records)} records)")
    return 0
