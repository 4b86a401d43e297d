"""``delgrad sensor``: stream Yin-Yang trials, trial files or event recordings, with labels,
to a device over MQTT.

* ``--source yinyang`` (default) and ``.npz`` trial files (NIR padded ``channels``/``times``
  or CSR): trial-framed ``spikes`` messages at ``--rate`` trials/s (:mod:`._sensor`).
* Every other recording (``.npy``/``.npz`` tonic-style, ``.csv``, ``.aedat4``, ``.raw``,
  ROS 2 bags; :data:`delgrad.runtime.sources.SOURCE_FORMATS`): a continuous
  ``sensor_events`` stream in microseconds, pixels mapped to channels by ``--roi``,
  ``--pool`` and ``--polarity``, paced at ``--speed`` times real time, with the label
  of every device window (``--window-length``, ``--window-period``, ``--us-per-tau``:
  the device's ``[ingest]`` settings) on the label topic (:mod:`._stream`).
* ``tcp://HOST:PORT`` (a DV network event stream) and ``camera[:SERIAL]``: the same
  continuous stream, live, reconnecting when the input goes away (:mod:`._live`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import uuid
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from delgrad.errors import ConfigError
from delgrad.protocols import (
    Publisher,
    TransportError,
    is_valid_name,
    parse_broker_url,
    transport_from_url,
)
from delgrad.runtime.sources import (
    LabelSpans,
    Shift,
    parse_shift,
    read_events,
    read_label_file,
)
from delgrad.tools._broker_opts import DEFAULT_BROKER, add_broker_arguments, broker_url
from delgrad.tools._dv_input import (
    DvInput,
    LinkLost,
    LiveSpec,
    is_live_source,
    open_input,
    parse_live_source,
)
from delgrad.tools._exit import ExitCode
from delgrad.tools._live import LiveStats, LiveWindows, stream_live
from delgrad.tools._recording_args import (
    add_recording_arguments,
    pixel_mapping,
    recording_part,
)
from delgrad.tools._sensor import (
    FileSource,
    SensorStats,
    TrialSource,
    YinYangSource,
    stream_trials,
)
from delgrad.tools._shifted_source import ShiftedRecording, ShiftedSource
from delgrad.tools._stream import StreamPlan, StreamStats, plan_stream, stream_recording

_FLUSH_TIMEOUT_S = 10.0
#: Seconds of the stream the sensor keeps to send while the broker is away: covers a
#: broker restart (the link is back within 1-2 s, docs/security.md) with room to spare.
DEFAULT_BACKLOG_S = 5.0
_UNDELIVERED = "the broker did not take everything in time; the rest was not delivered"


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
        metavar="yinyang|FILE|tcp://HOST:PORT|camera[:SERIAL]",
        help="'yinyang' (default), an .npz trial file (NIR padded channels/times or CSR "
        "offsets/channels/times; optional labels, time_unit; looped forever), an event "
        "recording streamed continuously: .npy/.npz (tonic-style t,x,y,p), .csv, .aedat4, "
        ".raw (EVT 2/3), ROS 2 bag (.mcap, .db3 or its folder), or a live iniVation "
        "camera: a DV network event stream tcp://HOST:PORT or a camera on this machine "
        "(camera, camera:SERIAL; needs dv-processing); see docs/sensors.md",
    )
    rec = parser.add_argument_group("event recordings (continuous sensor_events)")
    rec.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="recording seconds per wall-clock second (default 1: real time; inf: unpaced)",
    )
    add_recording_arguments(rec)
    rec.add_argument("--passes", type=int, default=1, help="times the recording is sent (1)")
    rec.add_argument(
        "--offset-us",
        type=float,
        default=0.0,
        metavar="US",
        help="start the stream at this time (to follow an earlier stream on one device)",
    )
    rec.add_argument(
        "--chunk-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="recording time per message (live: least time between messages; default 10)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "validation", "test"),
        default=None,
        help="Yin-Yang split (default train; the yinyang source only)",
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
    shift = parser.add_argument_group("a world that shifts (every source; docs/sensors.md)")
    shift.add_argument(
        "--shift",
        metavar="KEY=VALUE,...",
        help="change the stream from a point on: translate=DX[:DY] (pixels; Yin-Yang: "
        "hundredths of its square), polarity=swap, rate=R (keep each event with "
        "probability R, 0 < R <= 1), noise=HZ (background events per second per pixel "
        "or channel), prior=W0:W1:... (class weights), late_class=C[:C...] (held back "
        "before the point); seeded by --seed (default: no shift)",
    )
    point = shift.add_mutually_exclusive_group()
    point.add_argument(
        "--shift-after-trials",
        type=int,
        metavar="N",
        help="the shift starts after N trials sent (recordings: N device windows); "
        "default 0, the stream's start",
    )
    point.add_argument(
        "--shift-after-pass",
        type=int,
        metavar="P",
        help="the shift starts with pass P (0 = the first) of the recording, the trial "
        "file or the Yin-Yang split",
    )
    parser.add_argument(
        "--first-trial-id", type=int, default=0, metavar="ID", help="first trial id (default 0)"
    )
    parser.add_argument(
        "--backlog-s",
        type=float,
        default=DEFAULT_BACKLOG_S,
        metavar="S",
        help=f"seconds of the stream kept while the broker is away (default "
        f"{DEFAULT_BACKLOG_S:g}); older messages are dropped and counted",
    )


def backlog_messages(backlog_s: float, messages_per_s: float) -> int | None:
    """Messages of each kind (events, labels) kept while the broker is away.

    A live stream's old events are worth nothing to a device that has moved on (it
    would drop them as overload after a long outage, and the burst costs it memory),
    so the sensor keeps ``backlog_s`` seconds of them, at least one message; ``None``
    for an unpaced stream (``messages_per_s`` infinite), which keeps the transport's
    own bounds.
    """
    if not math.isfinite(messages_per_s):
        return None
    return max(1, math.ceil(backlog_s * messages_per_s))


def _messages_per_s(args: argparse.Namespace, source: object) -> float:
    """Event messages per second of the stream (as many label messages at most)."""
    if isinstance(source, _Recording):
        return float(args.speed) * 1000.0 / float(args.chunk_ms)
    if isinstance(source, _Live):
        return 1000.0 / float(args.chunk_ms)
    return float(args.rate) / float(args.batch)


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
    if args.split is not None and args.source != "yinyang":
        raise ConfigError(
            "--split applies to the yinyang source only; a file is streamed as it is "
            "(write one file per split, e.g. delgrad digits events)"
        )
    args.split = args.split or "train"
    if not args.speed > 0:
        raise ConfigError(f"--speed must be > 0 (inf: unpaced), got {args.speed}")
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
    if not (args.backlog_s >= 0 and math.isfinite(args.backlog_s)):
        raise ConfigError(f"--backlog-s must be finite and >= 0 s, got {args.backlog_s}")


def _shift(args: argparse.Namespace) -> Shift | None:
    point = args.shift_after_trials if args.shift_after_pass is None else args.shift_after_pass
    if point is not None and point < 0:
        which = "trials" if args.shift_after_pass is None else "pass"
        raise ConfigError(f"--shift-after-{which} must be >= 0, got {point}")
    if args.shift is None:
        if point is not None:
            raise ConfigError("--shift-after-trials and --shift-after-pass need --shift")
        return None
    shift = parse_shift(args.shift)
    if shift.late_classes and not point:
        raise ConfigError(
            "--shift late_class needs a later point (--shift-after-trials N or "
            "--shift-after-pass P, > 0): it is held back only before the point"
        )
    return shift


def _is_trial_file(path: str) -> bool:
    """An .npz in the trial layout that FileSource streams as trials."""
    if not path.lower().endswith(".npz"):
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "channels" in z.files and "times" in z.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False  # read_events says what is wrong with it


class _Recording(NamedTuple):
    """A recording to stream: the plan of its first pass, and of every pass (a shift)."""

    plan: StreamPlan
    plan_of_pass: Callable[[int], StreamPlan] | None = None


def _plan(args: argparse.Namespace, shift: Shift | None) -> _Recording:
    rec = recording_part(
        args,
        read_events(args.source, labels=args.labels, topic=args.topic, us_per_tau=args.us_per_tau),
    )
    mapping = pixel_mapping(args, rec)
    if shift is None:
        return _Recording(
            plan_stream(
                rec, mapping, window_length=args.window_length, window_period=args.window_period
            )
        )
    shifted = ShiftedRecording(
        rec,
        mapping,
        shift,
        window_length=args.window_length,
        window_period=args.window_period,
        after_windows=args.shift_after_trials or 0,
        after_pass=args.shift_after_pass,
        seed=args.seed,
    )
    if args.shift_after_pass is not None and args.shift_after_pass >= args.passes:
        raise ConfigError(
            f"--shift-after-pass {args.shift_after_pass} with --passes {args.passes}: "
            "nothing would be shifted"
        )
    if (args.shift_after_trials or 0) >= shifted.windows_before(args.passes):
        raise ConfigError(
            f"--shift-after-trials {args.shift_after_trials}: the stream sends "
            f"{shifted.windows_before(args.passes)} windows before the point in "
            f"--passes {args.passes}; nothing would be shifted"
        )
    return _Recording(shifted.plan(0), shifted.plan)


def _shifted_trials(
    args: argparse.Namespace, inner: YinYangSource | FileSource, shift: Shift, what: str
) -> ShiftedSource:
    if args.count is not None and (args.shift_after_trials or 0) >= args.count:
        raise ConfigError(
            f"--shift-after-trials {args.shift_after_trials} with --count {args.count}: "
            "nothing would be shifted"
        )
    source_trials = None
    if args.shift_after_pass is not None:
        source_trials = args.shift_after_pass * inner.size
    return ShiftedSource(
        inner,
        shift,
        inner.layout(args.us_per_tau),
        after_trials=args.shift_after_trials or 0,
        after_source_trials=source_trials,
        n_classes=inner.n_classes,
        seed=args.seed,
        what=what,
    )


class _Live(NamedTuple):
    """A live input to open, and the labels of its stream (None: none)."""

    spec: LiveSpec
    labels: LabelSpans | None


def _live(args: argparse.Namespace) -> _Live:
    spec = parse_live_source(args.source)
    given = [
        name
        for name, value in (
            ("--count", args.count),
            ("--samples", args.samples),
            ("--start-us", args.start_us),
            ("--end-us", args.end_us),
            ("--shift", args.shift),
            ("--topic", args.topic),
        )
        if value is not None
    ]
    if args.passes != 1:
        given.append("--passes")
    if args.speed != 1.0:
        given.append("--speed")
    if given:
        raise ConfigError(
            f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to a live "
            f"stream ({spec.text}): it runs in real time until Ctrl-C or --duration S"
        )
    if not (args.chunk_ms > 0 and math.isfinite(args.chunk_ms)):
        raise ConfigError(f"--chunk-ms must be finite and > 0, got {args.chunk_ms}")
    labels = None if args.labels is None else read_label_file(args.labels)
    return _Live(spec, labels)


def _source(args: argparse.Namespace) -> TrialSource | _Recording | _Live:
    if is_live_source(args.source):
        return _live(args)
    shift = _shift(args)
    if args.source == "yinyang":
        yy = YinYangSource(
            args.split, args.input_repeat, args.seed, first_trial_id=args.first_trial_id
        )
        return yy if shift is None else _shifted_trials(args, yy, shift, "the Yin-Yang stream")
    if _is_trial_file(args.source):
        trials = FileSource(args.source, first_trial_id=args.first_trial_id)
        return trials if shift is None else _shifted_trials(args, trials, shift, args.source)
    if args.count is not None:
        raise ConfigError(
            "--count counts trials of a trial stream; for a recording choose a part with "
            "--samples A:B or --start-us/--end-us (or stop after --duration seconds)"
        )
    return _plan(args, shift)


async def _open_live(args: argparse.Namespace, live: _Live) -> tuple[DvInput, LiveWindows]:
    """Open the live input (before the broker: a wrong address ends the sensor at once)."""
    try:
        first = await open_input(live.spec)
    except LinkLost as exc:
        raise TransportError(f"cannot reach the DV event stream: {exc}") from None
    try:
        windows = LiveWindows(
            pixel_mapping(args, first),
            live.labels,
            window_length=args.window_length,
            window_period=args.window_period,
            offset_us=args.offset_us,
        )
    except ConfigError:
        first.close()
        raise
    return first, windows


async def _stream_live(
    args: argparse.Namespace,
    live: _Live,
    first: DvInput,
    windows: LiveWindows,
    publisher: Publisher,
    stop: asyncio.Event,
) -> LiveStats:
    if args.duration is not None:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    print(
        f"sensor: streaming {live.spec.text} ({first.name}, {first.width} x {first.height}) "
        f"live to device {args.device} on {windows.mapping.n_channels} channels, "
        f"{'labels from ' + args.labels if live.labels is not None else 'no labels'} "
        "(Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    return await stream_live(
        publisher,
        args.device,
        live.spec,
        first,
        windows,
        opener=open_input,
        chunk_s=args.chunk_ms / 1000.0,
        stop=stop,
    )


async def _stream_file(
    args: argparse.Namespace,
    source: _Recording,
    transport: Any,
    sender: str,
    stop: asyncio.Event,
) -> StreamStats:
    plan = source.plan
    if args.duration is not None:  # wall-clock seconds, as for trial streams
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    print(
        f"sensor: streaming {args.source} to device {args.device} at "
        f"{transport.host}:{transport.port}: {plan.t_us.size} events on "
        f"{plan.n_channels} channels ({plan.dropped} outside the mapping), "
        f"{plan.window_ids.size} labelled windows, speed {args.speed:g} "
        "(Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    return await stream_recording(
        Publisher(transport, sender),
        args.device,
        plan,
        speed=args.speed,
        chunk_us=args.chunk_ms * 1000.0,
        passes=args.passes,
        offset_us=args.offset_us,
        plan_of_pass=source.plan_of_pass,
        stop=stop,
    )


async def _main(
    args: argparse.Namespace, source: TrialSource | _Recording | _Live
) -> tuple[SensorStats | StreamStats | LiveStats, int]:
    # A fresh sender per run: a restarted sensor starts its sequence numbers again at
    # 0, which receivers would take as stale duplicates of the old run's messages.
    sender = f"sensor-{uuid.uuid4().hex[:8]}"
    backlog = backlog_messages(args.backlog_s, _messages_per_s(args, source))
    queues: dict[str, Any] = {} if backlog is None else {
        "outbox_lossy_capacity": backlog, "outbox_reliable_capacity": backlog
    }  # fmt: skip
    transport = transport_from_url(args.broker, client_id=sender, **queues)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    live = await _open_live(args, source) if isinstance(source, _Live) else None
    try:
        await transport.connect()
    except BaseException:
        if live is not None:
            live[0].close()
        raise
    stats: SensorStats | StreamStats | LiveStats
    try:
        if isinstance(source, _Live | _Recording):
            if isinstance(source, _Live):
                assert live is not None
                publisher = Publisher(transport, sender)
                stats = await _stream_live(args, source, *live, publisher, stop)
            else:
                stats = await _stream_file(args, source, transport, sender, stop)
            try:
                await transport.flush(timeout=_FLUSH_TIMEOUT_S)
            except TimeoutError:
                print(f"sensor: {_UNDELIVERED}", file=sys.stderr)
            s = transport.stats
            return stats, s.dropped_out_lossy + s.dropped_out_reliable
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
    except ConfigError as exc:  # a live input: no camera, not an event stream
        print(f"delgrad sensor: error: {exc}", file=sys.stderr)
        return 2
    line = stats.summary()
    if dropped:
        line += f"; {dropped} messages dropped by the outgoing queue"
    if isinstance(stats, StreamStats | LiveStats):
        print(line, flush=True)
        return 1 if dropped else 0
    if stats.undelivered:
        # the counts above are what was queued; the rest never reached the broker
        line += (
            f"; WARNING: the broker did not take everything within {_FLUSH_TIMEOUT_S:.0f} s, "
            "messages still queued at exit were not delivered"
        )
    print(line, flush=True)
    return 1 if dropped or stats.undelivered else 0
