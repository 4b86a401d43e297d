"""``delgrad sensor``: stream Yin-Yang (or file) trials and labels to a device over MQTT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import uuid

from delgrad.errors import ConfigError
from delgrad.protocols import (
    Publisher,
    TransportError,
    is_valid_name,
    parse_broker_url,
    transport_from_url,
)
from delgrad.tools._broker_opts import DEFAULT_BROKER, add_broker_arguments, broker_url
from delgrad.tools._exit import ExitCode
from delgrad.tools._sensor import (
    FileSource,
    SensorStats,
    TrialSource,
    YinYangSource,
    stream_trials,
)

_FLUSH_TIMEOUT_S = 10.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``sensor`` subcommand's arguments."""
    add_broker_arguments(parser, default=DEFAULT_BROKER)
    parser.add_argument("--device", default="demo", help="device id to feed (default demo)")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        metavar="TRIALS_PER_S",
        help="target trials per second (default 1000; inf: as fast as possible)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        metavar="TRIALS_PER_MESSAGE",
        help="trials per SpikeBatch message (default 100)",
    )
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--count", type=int, metavar="N", help="stop after N trials")
    limit.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--source",
        default="yinyang",
        metavar="yinyang|FILE",
        help="'yinyang' (default) or an .npz file (NIR padded channels/times or CSR "
        "offsets/channels/times; optional labels, time_unit); looped forever",
    )
    parser.add_argument(
        "--split",
        choices=("train", "validation", "test"),
        default="train",
        help="Yin-Yang split (default train)",
    )
    parser.add_argument(
        "--input-repeat",
        type=int,
        default=1,
        metavar="N",
        help="copies of each Yin-Yang input channel (default 1)",
    )
    parser.add_argument(
        "--time-unit",
        choices=("tau_s", "us"),
        default="tau_s",
        help="unit of the sent times (default tau_s)",
    )
    parser.add_argument(
        "--us-per-tau",
        type=float,
        default=6.0,
        metavar="US",
        help="microseconds per tau_s for --time-unit us (default 6.0)",
    )
    parser.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="fraction of trials that get a label, evenly spread (default 1.0)",
    )
    parser.add_argument(
        "--label-lag",
        type=int,
        default=0,
        metavar="N",
        help="send a message's labels N event messages later (default 0: right after)",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    parser.add_argument(
        "--first-trial-id", type=int, default=0, metavar="ID", help="first trial id (default 0)"
    )


def _validate(args: argparse.Namespace) -> None:
    if not is_valid_name(args.device):
        raise ConfigError(f"--device {args.device!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
    if math.isnan(args.rate) or args.rate <= 0:
        raise ConfigError(f"--rate must be > 0 trials/s, got {args.rate}")
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise ConfigError(f"--duration must be finite and > 0 s, got {args.duration}")
    if args.input_repeat < 1:
        raise ConfigError(f"--input-repeat must be >= 1, got {args.input_repeat}")
    if args.input_repeat != 1 and args.source != "yinyang":
        raise ConfigError("--input-repeat applies to the yinyang source only")
    if not (args.us_per_tau > 0 and math.isfinite(args.us_per_tau)):
        raise ConfigError(f"--us-per-tau must be finite and > 0, got {args.us_per_tau}")
    if not 0.0 <= args.label_fraction <= 1.0:
        raise ConfigError(f"--label-fraction must be in [0, 1], got {args.label_fraction}")
    if args.label_lag < 0:
        raise ConfigError(f"--label-lag must be >= 0, got {args.label_lag}")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.first_trial_id < 0:
        raise ConfigError(f"--first-trial-id must be >= 0, got {args.first_trial_id}")


def _source(args: argparse.Namespace) -> TrialSource:
    if args.source == "yinyang":
        return YinYangSource(
            args.split, args.input_repeat, args.seed, first_trial_id=args.first_trial_id
        )
    return FileSource(args.source, first_trial_id=args.first_trial_id)


async def _main(args: argparse.Namespace, source: TrialSource) -> tuple[SensorStats, int]:
    # A fresh sender per run: a restarted sensor starts its sequence numbers again at
    # 0, which receivers would take as stale duplicates of the old run's messages.
    sender = f"sensor-{uuid.uuid4().hex[:8]}"
    transport = transport_from_url(args.broker, client_id=sender)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await transport.connect()
    try:
        what = "yinyang/" + args.split if args.source == "yinyang" else args.source
        print(
            f"sensor: streaming {what} to device {args.device} at "
            f"{transport.host}:{transport.port}, {args.rate:g} trials/s (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        stats = await stream_trials(
            Publisher(transport, sender),
            args.device,
            source,
            rate=args.rate,
            batch=args.batch,
            count=args.count,
            duration_s=args.duration,
            label_fraction=args.label_fraction,
            label_lag=args.label_lag,
            time_unit=args.time_unit,
            us_per_tau=args.us_per_tau,
            stop=stop,
        )
        try:
            await transport.flush(timeout=_FLUSH_TIMEOUT_S)
        except TimeoutError:
            stats.undelivered = True
    finally:
        await transport.close()
    s = transport.stats
    return stats, s.dropped_out_lossy + s.dropped_out_reliable


def run(args: argparse.Namespace) -> int:
    """Stream trials until the count or duration is reached, or Ctrl-C / SIGTERM.

    Returns:
        The shared exit code: 0 on a clean end (also after Ctrl-C), 1 if messages were
        not delivered, 2 on bad arguments, 3 if the broker cannot be reached.
    """
    try:
        _validate(args)
        source = _source(args)
        args.broker = broker_url(args)
        parse_broker_url(args.broker)
    except ConfigError as exc:
        print(f"delgrad sensor: error: {exc}", file=sys.stderr)
        return 2
    try:
        stats, dropped = asyncio.run(_main(args, source))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        print("sensor: interrupted", file=sys.stderr)
        return 0
    except TransportError as exc:
        print(f"delgrad sensor: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    line = stats.summary()
    if dropped:
        line += f"; {dropped} messages dropped by the outgoing queue"
    if stats.undelivered:
        # the counts above are what was queued; the rest never reached the broker
        line += (
            f"; WARNING: the broker did not take everything within {_FLUSH_TIMEOUT_S:.0f} s, "
            "messages still queued at exit were not delivered"
        )
    print(line, flush=True)
    return 1 if dropped or stats.undelivered else 0
