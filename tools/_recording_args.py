"""The options that read a labelled event recording the way a device sees it: which
part, which pixels become which channels, and the device's windows. Shared by
``delgrad sensor`` (streaming it) and ``delgrad events trials`` (cutting it into
trial files), so both cut the same windows from the same options."""

from __future__ import annotations

import argparse
import math
from typing import Any, Protocol

from delgrad.errors import ConfigError
from delgrad.runtime.sources import EventRecording, PixelMapping


def add_mapping_arguments(group: Any) -> None:
    """Add ``--roi``, ``--pool`` and ``--polarity`` to ``group``."""
    group.add_argument("--roi", metavar="X0,Y0,W,H", help="region of interest (default all)")
    group.add_argument("--pool", default="1", metavar="N|NX,NY", help="pixels per channel")
    group.add_argument(
        "--polarity",
        choices=("merge", "split", "on", "off"),
        default="merge",
        help="ON/OFF in one channel (merge, the default), apart (split: 2 channels per "
        "cell) or one only",
    )


def add_window_arguments(group: Any) -> None:
    """Add the device's ``--window-length`` and ``--window-period`` to ``group``."""
    group.add_argument(
        "--window-length", type=float, default=2.5, metavar="TAU", help="device window (2.5)"
    )
    group.add_argument(
        "--window-period", type=float, default=0.0, metavar="TAU", help="0: the length"
    )


def add_recording_arguments(group: Any) -> None:
    """Add the pixel mapping, label, ROS topic, window and part options to ``group``
    (a parser or an argument group)."""
    add_mapping_arguments(group)
    group.add_argument(
        "--labels", metavar="FILE", help="label side file (start_us,end_us,label; any name)"
    )
    group.add_argument("--topic", help="event topic of a ROS 2 bag (default: the only one)")
    add_window_arguments(group)
    part = group.add_mutually_exclusive_group()
    part.add_argument(
        "--samples",
        metavar="A:B",
        help="only samples A .. B-1 (label spans in time order), e.g. 0:200",
    )
    part.add_argument("--start-us", type=float, metavar="US", help="only events at or after US")
    group.add_argument("--end-us", type=float, metavar="US", help="only events before US")


def _ints(text: str | None, n: tuple[int, ...], what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be integers separated by commas, got {text!r}") from None
    if len(values) not in n:
        raise ConfigError(f"{what} needs {' or '.join(map(str, n))} integers, got {text!r}")
    return values


class Sensor(Protocol):
    """Anything with a sensor size: a recording, a live input."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


def mapping_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--roi``, ``--pool`` and ``--polarity`` as :class:`PixelMapping` keywords."""
    roi = _ints(args.roi, (4,), "--roi")
    pool = _ints(args.pool, (1, 2), "--pool") or (1,)
    return {"roi": roi, "pool": (pool[0], pool[-1]), "polarity": args.polarity}


def pixel_mapping(args: argparse.Namespace, rec: Sensor) -> PixelMapping:
    """``--roi``, ``--pool``, ``--polarity`` and ``--us-per-tau`` for ``rec``'s sensor
    (a recording or a live input)."""
    return PixelMapping(rec.width, rec.height, us_per_tau=args.us_per_tau, **mapping_options(args))


def recording_part(args: argparse.Namespace, rec: EventRecording) -> EventRecording:
    """The part of ``rec`` that ``--samples`` or ``--start-us``/``--end-us`` choose."""
    if args.samples is not None:
        if args.end_us is not None:
            raise ConfigError("--samples and --end-us choose the part twice: give one")
        first, _, stop = args.samples.partition(":")
        try:
            a, b = int(first), int(stop)
        except ValueError:
            raise ConfigError(
                f"--samples wants A:B (whole numbers), got {args.samples!r}"
            ) from None
        return rec.samples(a, b)
    if args.start_us is None and args.end_us is None:
        return rec
    start = -math.inf if args.start_us is None else args.start_us
    end = math.inf if args.end_us is None else args.end_us
    return rec.between(start, end)
