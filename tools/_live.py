"""A live event stream (a DV network server or a camera) as ``sensor_events``, with the
labels of the device's windows, reconnecting when the input goes away.

The events go on the wire exactly as a recording's do (:mod:`._stream`): pixels mapped
to channels by the same :class:`~delgrad.runtime.sources.PixelMapping`, times in
microseconds since the stream's origin plus ``--offset-us``, where the origin is the
first event received or the first label span, whichever is earlier (the spans count
only if they reach past that event). So a recording sent through a DV server reaches
the device as the same stream as the file. A live input has no label file of its own:
labels come from ``--labels`` (spans on the stream's clock, i.e. the camera's
timestamps) or there are none (the device only infers). A window's label is sent once
an event at or past the window's end has been sent; when the sensor stops, the
windows up to the one holding the last event get theirs.

Events are sent at most every ``chunk_s`` seconds (what arrived meanwhile, as one
message), so a live stream makes at most ``1 / chunk_s`` event messages a second.
When the input goes away (server killed, network down, camera unplugged) what had
arrived is sent, the outage is logged once and counted, and the input is opened again
with backoff (``backoff_min_s`` doubling to ``backoff_max_s``, +-25 % jitter) until it
is back or the sensor stops. Events made while it was away are lost (nobody kept
them); nothing else is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from delgrad.errors import ConfigError
from delgrad.protocols import Labels, Publisher, SensorEvents, TopicKind, topic
from delgrad.runtime.sources import EventRecording, LabelSpans, PixelMapping
from delgrad.tools._dv_input import DvInput, LinkLost, LiveSpec
from delgrad.tools._stream import (
    MAX_EVENTS_PER_MESSAGE,
    stream_origin,
    window_middles,
    window_offset,
)

__all__ = ["LiveStats", "LiveWindows", "stream_live"]

#: Seconds between polls of an input that had nothing (its queue holds 1,000 packets).
POLL_S = 0.002


class LiveWindows:
    """Live batches to wire events, and the labels of the windows they complete (pure).

    Args:
        mapping: Pixels to channels (the input's sensor size).
        labels: Label spans on the stream's clock, or None.
        window_length: The device's ``[ingest] window_length``, tau_s.
        window_period: Its ``window_period`` (0: the length).
        offset_us: ``--offset-us`` (whole window periods).

    Raises:
        ConfigError: On a bad window setting or offset.
    """

    def __init__(
        self,
        mapping: PixelMapping,
        labels: LabelSpans | None,
        *,
        window_length: float,
        window_period: float = 0.0,
        offset_us: float = 0.0,
    ) -> None:
        if not (window_length > 0 and math.isfinite(window_length)) or not window_period >= 0:
            raise ConfigError("window length must be > 0 and the period >= 0 (tau_s)")
        if not (offset_us >= 0 and math.isfinite(offset_us)):
            raise ConfigError(f"--offset-us must be >= 0, got {offset_us:g}")
        self.mapping = mapping
        self.labels = labels if labels is not None and len(labels) else None
        self.period_us = (window_period or window_length) * mapping.us_per_tau
        self.length_us = window_length * mapping.us_per_tau
        self.first_window, self.offset_us = window_offset(offset_us, self.period_us)
        #: the recording's clock at wire time ``offset_us`` (None before the first event)
        self.origin_us: float | None = None
        self.reached_us = -math.inf  # the latest wire time seen
        self._next = 0  # the first window (local id) whose label is not yet decided
        self.dropped = 0

    def events(self, batch: EventRecording) -> tuple[np.ndarray, np.ndarray]:
        """(channels, wire times in us) of ``batch``; the first batch sets the origin.

        Raises:
            ConfigError: If the batch's sensor is not the mapping's.
        """
        if not len(batch):
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        if self.origin_us is None:
            first = float(batch.t_us[0])
            spans = self.labels
            if spans is not None and float(spans.end_us.max()) <= first:
                spans = None  # spans on another clock must not move the origin
            self.origin_us = stream_origin(first, spans)
        mapped = self.mapping.map(batch)
        self.dropped += mapped.dropped
        shift = self.offset_us - self.origin_us
        self.reached_us = max(self.reached_us, float(batch.t_us[-1]) + shift)
        return mapped.channels, mapped.t_us + shift

    def due_labels(self, *, final: bool = False) -> Labels | None:
        """Labels of the windows completed since the last call: those whose end the
        stream has reached, or (``final``) every window up to the one holding the latest
        event. None when there are none."""
        if self.origin_us is None or self.labels is None:
            return None
        into = self.reached_us - self.offset_us
        if final:
            stop = math.floor(into / self.period_us) + 1
        else:
            stop = math.floor((into - self.length_us) / self.period_us) + 1
        # only windows whose middle can lie in a span (a long outage skips many)
        last = float(self.labels.end_us.max()) - self.origin_us - self.length_us / 2
        stop = min(stop, max(0, math.floor(last / self.period_us) + 1))
        start = self._next
        if stop <= start:
            return None
        self._next = stop
        ids = np.arange(start, stop, dtype=np.int64)
        labels = self.labels.at(window_middles(ids, self.origin_us, self.period_us, self.length_us))
        keep = labels >= 0
        if not keep.any():
            return None
        return Labels(ids[keep] + self.first_window, labels[keep])

    @property
    def end_us(self) -> float:
        """Where the device's stream got to, in whole windows (the next ``--offset-us``)."""
        if self.origin_us is None:
            return self.offset_us
        windows = math.floor((self.reached_us - self.offset_us) / self.period_us) + 1
        return self.offset_us + max(windows, 0) * self.period_us


@dataclass
class LiveStats:
    """What :func:`stream_live` received and sent.

    Attributes:
        events: Events received from the input.
        sent: Events sent (those the mapping kept).
        event_messages, labels, label_messages: As for recordings.
        outages: Times the input went away.
        reconnects: Times it came back.
        failed_attempts: Reconnection attempts that failed.
        down_s: Seconds without the input, over all outages.
        elapsed_s: Seconds from the start to the end.
        end_us: Where the device's stream got to (the next ``--offset-us``).
        stopped: Whether ``stop`` ended it.
    """

    source: str = ""
    events: int = 0
    sent: int = 0
    event_messages: int = 0
    labels: int = 0
    label_messages: int = 0
    outages: int = 0
    reconnects: int = 0
    failed_attempts: int = 0
    down_s: float = 0.0
    elapsed_s: float = 0.0
    end_us: float = 0.0
    stopped: bool = False

    def summary(self) -> str:
        """One line for humans."""
        text = (
            f"received {self.events} events from {self.source}, sent {self.sent} in "
            f"{self.event_messages} messages and {self.labels} window labels in "
            f"{self.label_messages} messages in {self.elapsed_s:.2f} s"
        )
        if self.outages:
            text += (
                f"; {self.outages} outage(s), {self.reconnects} reconnected, "
                f"{self.down_s:.2f} s without the stream ({self.failed_attempts} failed "
                "attempts)"
            )
        return text + (
            f"; the stream ended at {self.end_us:.0f} us "
            f"(continue after it with --offset-us {self.end_us:.0f})"
        )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await stop.wait()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def stream_live(
    publisher: Publisher,
    device: str,
    spec: LiveSpec,
    first: DvInput,
    windows: LiveWindows,
    *,
    opener: Callable[[LiveSpec], Awaitable[DvInput]],
    chunk_s: float = 0.01,
    stop: asyncio.Event | None = None,
    backoff_min_s: float = 0.1,
    backoff_max_s: float = 5.0,
    log: Callable[[str], None] = _say,
    clock: Callable[[], float] = time.monotonic,
) -> LiveStats:
    """Send the events of ``first`` (and of every reopened input) until ``stop``.

    Args:
        publisher: Publishes on the connected transport (QoS 0: the stream is paced by
            the camera).
        device: The device id.
        spec: What was opened (to open it again).
        first: The open input.
        windows: Mapping and window labels, over the whole stream (all connections).
        opener: Opens ``spec`` again; raises LinkLost (or ConfigError for a camera
            not attached) while it is away.
        chunk_s: Least seconds between event messages.
        stop: Set to end.
        backoff_min_s, backoff_max_s: Reconnection delays (doubling).
        log: Where the outage lines go.
        clock: Monotonic seconds.

    Raises:
        ConfigError: If the input comes back with another sensor size.
    """
    stop = asyncio.Event() if stop is None else stop
    ev_topic = topic(device, TopicKind.EVENTS_IN)
    lab_topic = topic(device, TopicKind.LABELS)
    stats = LiveStats(source=spec.text)
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    start = last_send = clock()

    async def send_labels(final: bool = False) -> None:
        msg = windows.due_labels(final=final)
        if msg is not None:
            await publisher.publish(lab_topic, msg)
            stats.label_messages += 1
            stats.labels += int(msg.trial_ids.size)

    async def flush() -> None:
        nonlocal last_send
        last_send = clock()
        if not pending:
            return
        channels = np.concatenate([c for c, _ in pending])
        times = np.concatenate([t for _, t in pending])
        pending.clear()
        for s in range(0, channels.size, MAX_EVENTS_PER_MESSAGE):
            e = min(channels.size, s + MAX_EVENTS_PER_MESSAGE)
            await publisher.publish(ev_topic, SensorEvents(channels[s:e], times[s:e], "us"))
            stats.event_messages += 1
            stats.sent += e - s
        await send_labels()

    async def reconnect(why: str) -> DvInput | None:
        stats.outages += 1
        lost = clock()
        log(
            f"sensor: lost the DV stream {spec.text} ({why}); reconnecting every "
            f"{backoff_min_s:g}-{backoff_max_s:g} s until it is back (events until then "
            "are lost; counted in the last line)"
        )
        delay, attempts = backoff_min_s, 0
        while not stop.is_set():
            await _wait(stop, delay * random.uniform(0.75, 1.25))
            if stop.is_set():
                break
            attempts += 1
            try:
                inp = await opener(spec)
            except (LinkLost, ConfigError):
                stats.failed_attempts += 1
                delay = min(delay * 2, backoff_max_s)
                continue
            if (inp.width, inp.height) != (first.width, first.height):
                inp.close()
                raise ConfigError(
                    f"{spec.text} came back with a {inp.width} x {inp.height} sensor, it was "
                    f"{first.width} x {first.height}: the mapping no longer holds"
                )
            down = clock() - lost
            stats.reconnects += 1
            stats.down_s += down
            log(
                f"sensor: the DV stream {spec.text} is back after {down:.1f} s "
                f"(outage {stats.outages}, {attempts} attempt(s))"
            )
            return inp
        stats.down_s += clock() - lost
        return None

    inp: DvInput | None = first
    try:
        while inp is not None and not stop.is_set():
            try:
                batches = inp.poll()
            except LinkLost as exc:
                inp.close()
                inp = None
                await flush()
                inp = await reconnect(str(exc))
                continue
            for batch in batches:
                stats.events += len(batch)
                pending.append(windows.events(batch))
            busy = sum(c.size for c, _ in pending) >= MAX_EVENTS_PER_MESSAGE
            if pending and (busy or clock() - last_send >= chunk_s):
                await flush()
            if batches:
                await asyncio.sleep(0)
            else:
                await _wait(stop, POLL_S)
        stats.stopped = stop.is_set()
        await flush()
        await send_labels(final=True)
    finally:
        if inp is not None:
            inp.close()
        stats.end_us = windows.end_us
        stats.elapsed_s = clock() - start
    return stats
