"""``delgrad ros``: a ROS 2 robot's MQTT bridge (mqtt_client) to a device and back.

The robot runs the standard ROS 2 <-> MQTT bridge (docs/deploy/mqtt_client.params.yaml);
this relay, next to the device, turns the bridged event and label messages into the
device's ``sensor_events`` and ``labels`` and the device's predictions and accuracy
into the bridge's primitive form (:mod:`._ros_relay`). Nothing of delgrad runs on the
robot and nothing of ROS on the device.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import uuid

from delgrad.errors import ConfigError, TransportError
from delgrad.protocols import (
    Publisher,
    is_valid_name,
    parse_broker_url,
    transport_from_url,
)
from delgrad.runtime.sources import BridgeDecoder
from delgrad.tools._broker_opts import DEFAULT_BROKER, add_broker_arguments, broker_url
from delgrad.tools._exit import ExitCode
from delgrad.tools._recording_args import (
    _ints,
    add_mapping_arguments,
    add_window_arguments,
    mapping_options,
)
from delgrad.tools._ros_relay import RosRelay, RosTopics, WindowClock

_FLUSH_TIMEOUT_S = 10.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``ros`` subcommand's arguments."""
    add_broker_arguments(parser, default=DEFAULT_BROKER)
    parser.add_argument("--device", default="demo", help="device id to feed (default demo)")
    bridge = parser.add_argument_group("the bridge's MQTT topics (its params file)")
    d = RosTopics()
    bridge.add_argument("--events-topic", default=d.events, help=f"events in ({d.events})")
    bridge.add_argument("--labels-topic", default=d.labels, help=f"labels in ({d.labels})")
    bridge.add_argument(
        "--prediction-topic", default=d.prediction, help=f"predictions out ({d.prediction})"
    )
    bridge.add_argument("--accuracy-topic", default=d.accuracy, help=f"accuracy out ({d.accuracy})")
    mapping = parser.add_argument_group("pixels to channels, the device's windows")
    add_mapping_arguments(mapping)
    mapping.add_argument(
        "--sensor-size", metavar="W,H", help="sensor size when the messages give none"
    )
    add_window_arguments(mapping)
    mapping.add_argument(
        "--us-per-tau", type=float, default=6.0, metavar="US", help="the device's (6.0)"
    )
    mapping.add_argument(
        "--offset-us",
        type=float,
        default=0.0,
        metavar="US",
        help="time of the first event on the device's stream (whole window periods)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )


def _validate(args: argparse.Namespace) -> tuple[RosTopics, dict[str, object], WindowClock]:
    if not is_valid_name(args.device):
        raise ConfigError(f"--device {args.device!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
    topics = RosTopics(args.events_topic, args.labels_topic, args.prediction_topic,
                       args.accuracy_topic)  # fmt: skip
    for name in (topics.events, topics.labels, topics.prediction, topics.accuracy):
        if not name or any(c in name for c in "+#\0") or name.startswith("delgrad/"):
            raise ConfigError(f"bridge topic {name!r} must be a plain MQTT topic outside delgrad/")
    if len({topics.events, topics.labels, topics.prediction, topics.accuracy}) < 4:
        raise ConfigError("the four bridge topics must differ")
    if not (args.us_per_tau > 0 and math.isfinite(args.us_per_tau)):
        raise ConfigError(f"--us-per-tau must be finite and > 0, got {args.us_per_tau}")
    if not (args.window_length > 0 and math.isfinite(args.window_length)):
        raise ConfigError(f"--window-length must be finite and > 0, got {args.window_length}")
    if not (args.window_period >= 0 and math.isfinite(args.window_period)):
        raise ConfigError(f"--window-period must be >= 0, got {args.window_period}")
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise ConfigError(f"--duration must be finite and > 0 s, got {args.duration}")
    period_us = (args.window_period or args.window_length) * args.us_per_tau
    window = WindowClock(args.window_length * args.us_per_tau, period_us)
    k = round(args.offset_us / period_us) if math.isfinite(args.offset_us) else -1
    if k < 0 or abs(args.offset_us - k * period_us) > min(0.5, 0.25 * period_us):
        raise ConfigError(
            f"--offset-us must be a whole number of window periods ({period_us:.6g} us), "
            f"got {args.offset_us}"
        )
    args.offset_us = k * period_us
    options: dict[str, object] = mapping_options(args)
    size = _ints(args.sensor_size, (2,), "--sensor-size")
    args.sensor_size = None if size is None else (size[0], size[1])
    return topics, options, window


async def _main(args: argparse.Namespace, relay: RosRelay) -> int:
    sender = f"ros-{uuid.uuid4().hex[:8]}"
    transport = transport_from_url(args.broker, client_id=sender)
    publisher = Publisher(transport, sender)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    await transport.connect()
    t = relay.topics
    try:
        for pattern in t.subscriptions() + relay.device_subscriptions():
            await transport.subscribe(pattern, qos=1)
        print(
            f"ros: relaying the bridge's {t.events} (events) and {t.labels} (labels) to "
            f"device {args.device} at {transport.host}:{transport.port}; predictions to "
            f"{t.prediction}, accuracy to {t.accuracy} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.is_set():
            try:
                incoming = await transport.recv(timeout=0.2)
            except TimeoutError:
                continue
            for out_topic, out in relay.handle(incoming.topic, incoming.payload):
                if isinstance(out, bytes):
                    await transport.publish(out_topic, out, qos=0, retain=False)
                else:
                    await publisher.publish(out_topic, out)
        with contextlib.suppress(TimeoutError):
            await transport.flush(timeout=_FLUSH_TIMEOUT_S)
    finally:
        await transport.close()
    s = transport.stats
    return s.dropped_out_lossy + s.dropped_out_reliable


def run(args: argparse.Namespace) -> int:
    """Relay until ``--duration`` or Ctrl-C / SIGTERM.

    Returns:
        0 on a clean end (also after Ctrl-C), 2 on bad arguments, 3 if the broker
        cannot be reached.
    """
    try:
        topics, options, window = _validate(args)
        args.broker = broker_url(args)
        parse_broker_url(args.broker)
        decoder = BridgeDecoder(args.sensor_size)
    except ConfigError as exc:
        print(f"delgrad ros: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    relay = RosRelay(
        args.device,
        topics,
        decoder,
        mapping=options,
        us_per_tau=args.us_per_tau,
        window=window,
        offset_us=args.offset_us,
    )
    try:
        dropped = asyncio.run(_main(args, relay))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        dropped = 0
    except TransportError as exc:
        print(f"delgrad ros: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    finally:
        decoder.close()
    line = "ros: " + relay.summary()
    if dropped:
        line += f"; {dropped} messages dropped by the outgoing queue"
    print(line, flush=True)
    return ExitCode.OK
