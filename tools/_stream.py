"""Streaming a recording as a continuous ``sensor_events`` stream, paced, with labels.

:func:`plan_stream` maps a recording's pixels to input channels and decides, for
every window the device will cut (``[ingest] window_length`` / ``window_period``
in tau_s, ``us_per_tau``), which label it gets: the label span holding the
window's middle. :func:`stream_recording` publishes the events in chunks of
``chunk_us`` of recording time, paced at ``speed`` times real time (``inf``: as
fast as the link takes them), and each window's label right after the chunk
that passes the window's end. Times on the wire are microseconds since the
stream's origin (the recording's first event or first label span, whichever is
earlier) plus ``offset_us``, so several recordings can follow one another on one
device's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from delgrad.errors import ConfigError
from delgrad.protocols import Labels, Publisher, SensorEvents, TopicKind, topic
from delgrad.runtime.sources import EventRecording, LabelSpans, PixelMapping, cut_windows
from delgrad.tools._ack_window import AckWindow

__all__ = [
    "StreamPlan",
    "StreamStats",
    "WindowGrid",
    "plan_on_grid",
    "plan_stream",
    "stream_origin",
    "stream_recording",
    "window_grid",
    "window_middles",
    "window_offset",
]

#: Most events in one SensorEvents message (the codec accepts 2**22 elements).
MAX_EVENTS_PER_MESSAGE = 1 << 20


@dataclass(frozen=True)
class StreamPlan:
    """What to send.

    Attributes:
        channels: (n,) int64 input channels, in time order.
        t_us: (n,) float64 microseconds since the stream's origin.
        window_ids: (k,) int64 labelled windows (the device's trial ids, before offset).
        window_labels: (k,) int64 their labels.
        window_end_us: (k,) float64 their ends, microseconds since the origin.
        span_us: the recording's length rounded up to whole window periods.
        period_us: window period in microseconds.
        n_channels: input channels of the mapping.
        dropped: events the mapping left out (outside the ROI or dropped polarity).
        origin_us: the recording's time of the stream's origin (where ``t_us`` is 0).
    """

    channels: np.ndarray
    t_us: np.ndarray
    window_ids: np.ndarray
    window_labels: np.ndarray
    window_end_us: np.ndarray
    span_us: float
    period_us: float
    n_channels: int
    dropped: int
    origin_us: float = 0.0


@dataclass(frozen=True)
class WindowGrid:
    """The device's windows over a recording: window ``k`` is ``[origin_us + k *
    period_us, ... + length_us)`` on the recording's clock.

    Attributes:
        origin_us: start of window 0 (the first event or label span, whichever is
            earlier, in whole microseconds).
        period_us: window period, microseconds.
        length_us: window length, microseconds.
        labels: (n_windows,) int64 the label of each window (that of the span under
            its middle), -1 for none.
        spans: (n_windows,) int64 the index of that span, -1 for none.
    """

    origin_us: float
    period_us: float
    length_us: float
    labels: np.ndarray
    spans: np.ndarray

    @property
    def n_windows(self) -> int:
        """Windows of one pass."""
        return int(self.labels.size)


def window_grid(
    rec: EventRecording, us_per_tau: float, *, window_length: float, window_period: float = 0.0
) -> WindowGrid:
    """The device's windows over ``rec`` (``[ingest]`` settings in tau_s).

    Raises:
        ConfigError: On a bad window setting or an empty recording.
    """
    if not (window_length > 0 and math.isfinite(window_length)) or not window_period >= 0:
        raise ConfigError("window length must be > 0 and the period >= 0 (tau_s)")
    if len(rec) == 0:
        raise ConfigError("the recording holds no events")
    origin = stream_origin(float(rec.t_us[0]), rec.labels)
    end = float(rec.t_us[-1])
    if rec.labels is not None and len(rec.labels):
        end = max(end, float(rec.labels.end_us.max()))
    period_us = (window_period or window_length) * us_per_tau
    length_us = window_length * us_per_tau
    n_windows = max(1, math.ceil((end - origin) / period_us))
    middles = window_middles(np.arange(n_windows), origin, period_us, length_us)
    spans = np.full(n_windows, -1, dtype=np.int64)
    labels = spans.copy()
    if rec.labels is not None:
        spans = rec.labels.index_at(middles)
        labels = rec.labels.at(middles)
    return WindowGrid(origin, period_us, length_us, labels, spans)


def stream_origin(first_event_us: float, labels: LabelSpans | None) -> float:
    """Where window 0 starts on the recording's clock: the first event or the first
    label span, whichever is earlier, in whole microseconds."""
    origin = first_event_us
    if labels is not None and len(labels):
        origin = min(origin, float(labels.start_us.min()))
    return float(math.floor(origin))


def window_middles(
    ids: np.ndarray, origin_us: float, period_us: float, length_us: float
) -> np.ndarray:
    """(k,) float64 the middles of windows ``ids`` on the recording's clock (a window's
    label is that of the span under its middle)."""
    return ids * period_us + length_us / 2 + origin_us


def window_offset(offset_us: float, period_us: float) -> tuple[int, float]:
    """``--offset-us`` on the device's window grid: (first window id, offset in us).

    Raises:
        ConfigError: If it is not a whole number of window periods.
    """
    first_window = round(offset_us / period_us)
    # the sensor prints where a stream ended in whole microseconds, so that value must
    # come back in for any period (e.g. 99,999.999999 us at us_per_tau 33,333.333333)
    if abs(offset_us - first_window * period_us) > min(0.5, 0.25 * period_us):
        raise ConfigError(
            f"--offset-us must be a whole number of window periods "
            f"({f'{period_us:.6f}'.rstrip('0').rstrip('.')} us), "
            f"e.g. {first_window * period_us:.0f}"
        )
    return first_window, first_window * period_us


def plan_stream(
    rec: EventRecording,
    mapping: PixelMapping,
    *,
    window_length: float,
    window_period: float = 0.0,
) -> StreamPlan:
    """Map ``rec`` to channels and label the device's windows (see the module doc).

    Args:
        rec: The recording (labels optional).
        mapping: Pixels to channels; its ``us_per_tau`` must be the device's.
        window_length: The device's ``[ingest] window_length``, tau_s.
        window_period: Its ``window_period`` (0: the length).

    Raises:
        ConfigError: On a bad window setting or an empty recording.
    """
    grid = window_grid(
        rec, mapping.us_per_tau, window_length=window_length, window_period=window_period
    )
    return plan_on_grid(rec, mapping, grid)


def plan_on_grid(
    rec: EventRecording,
    mapping: PixelMapping,
    grid: WindowGrid,
    *,
    cut: np.ndarray | None = None,
) -> StreamPlan:
    """Map ``rec`` to channels on the windows of ``grid`` (made from this recording
    or from the one it was shifted from), leaving out the windows ``cut``.

    Args:
        rec: The events (their labels are not read: the grid holds them).
        mapping: Pixels to channels.
        grid: The windows.
        cut: (grid.n_windows,) bool, windows to leave out of the time line
            (:func:`~delgrad.runtime.sources.cut_windows`), or None.

    Raises:
        ConfigError: If every window is cut.
    """
    mapped = mapping.map(rec)
    t = mapped.t_us - grid.origin_us
    channels = mapped.channels
    labels = grid.labels
    if cut is not None and cut.any():
        if cut.all():
            raise ConfigError("the shift leaves out every window of the recording")
        keep, t = cut_windows(t, cut, period_us=grid.period_us)
        channels = channels[keep]
        labels = labels[~cut]
    ids = np.arange(labels.size, dtype=np.int64)
    labelled = labels >= 0
    return StreamPlan(
        channels=channels,
        t_us=t,
        window_ids=ids[labelled],
        window_labels=labels[labelled],
        window_end_us=ids[labelled] * grid.period_us + grid.length_us,
        span_us=labels.size * grid.period_us,
        period_us=grid.period_us,
        n_channels=mapping.n_channels,
        dropped=mapped.dropped,
        # with windows cut out, a time of the stream is no longer one of the recording
        origin_us=grid.origin_us if cut is None or not cut.any() else math.nan,
    )


@dataclass
class StreamStats:
    """What :func:`stream_recording` sent (counts over all passes)."""

    events: int = 0
    event_messages: int = 0
    labels: int = 0
    label_messages: int = 0
    passes: int = 0
    elapsed_s: float = 0.0
    end_us: float = 0.0
    stopped: bool = False
    #: where a stream stopped within a pass: microseconds of the pass sent, and the
    #: recording's time there (None: every pass it began was sent whole)
    stopped_in_pass_us: float | None = None
    stopped_at_recording_us: float | None = None

    def summary(self) -> str:
        """One line for humans."""
        sent = (
            f"sent {self.events} events in {self.event_messages} messages and "
            f"{self.labels} window labels in {self.label_messages} messages, "
        )
        at = self.stopped_at_recording_us
        if self.stopped_in_pass_us is None or at is None or not math.isfinite(at):
            return sent + (
                f"{self.passes} pass(es) in {self.elapsed_s:.2f} s; the stream ended at "
                f"{self.end_us:.0f} us (continue after it with --offset-us {self.end_us:.0f})"
            )
        return sent + (
            f"in {self.elapsed_s:.2f} s; stopped {self.stopped_in_pass_us:.0f} us into pass "
            f"{self.passes + 1} (recording time {self.stopped_at_recording_us:.0f} us), the "
            f"device's stream at {self.end_us:.0f} us: send the rest with --start-us "
            f"{self.stopped_at_recording_us:.0f} --offset-us {self.end_us:.0f}"
        )


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def stream_recording(
    publisher: Publisher,
    device: str,
    plan: StreamPlan,
    *,
    speed: float = 1.0,
    chunk_us: float = 10_000.0,
    passes: int = 1,
    offset_us: float = 0.0,
    plan_of_pass: Callable[[int], StreamPlan] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StreamStats:
    """Publish ``plan`` as ``sensor_events`` (microseconds) and window labels.

    Args:
        publisher: Publishes on the connected transport.
        device: The device id.
        plan: From :func:`plan_stream`.
        speed: Recording seconds per wall-clock second (``inf``: unpaced).
        chunk_us: Recording time per message.
        passes: Times the recording is sent; each pass starts where the one before
            ended (whole window periods, so window ids continue).
        offset_us: Added to every time (window ids grow by ``offset_us / period``,
            which must be a whole number of periods).
        plan_of_pass: The plan of pass ``p`` >= 1 (a world that shifts; called once per
            pass, in order, with the period of ``plan``), or None: ``plan`` every pass.
        stop: Set to end early.
        clock: Monotonic seconds (tests may replace it).

    Raises:
        ConfigError: On bad arguments.
    """
    if not speed > 0 or not chunk_us > 0 or passes < 1 or not offset_us >= 0:
        raise ConfigError("speed and chunk_us must be > 0, passes >= 1, offset_us >= 0")
    # exactly on the device's window grid
    first_window, offset_us = window_offset(offset_us, plan.period_us)
    stop = asyncio.Event() if stop is None else stop
    ev_topic = topic(device, TopicKind.EVENTS_IN)
    lab_topic = topic(device, TopicKind.LABELS)
    stats = StreamStats()
    sender = AckWindow(publisher, unpaced=not math.isfinite(speed))
    start = clock()
    base_us, id_shift = offset_us, first_window  # where the pass starts
    try:
        for p in range(passes):
            if p and plan_of_pass is not None:
                plan = plan_of_pass(p)
            n_chunks = max(1, math.ceil(plan.span_us / chunk_us))
            bounds = np.searchsorted(plan.t_us, np.arange(1, n_chunks + 1) * chunk_us)
            lab_bounds = np.searchsorted(
                plan.window_end_us, np.arange(1, n_chunks + 1) * chunk_us, side="right"
            )
            a = la = 0
            sent_us = 0.0
            for c in range(n_chunks):
                if stop.is_set():
                    break
                b, lb = int(bounds[c]), int(lab_bounds[c])
                if c == n_chunks - 1:
                    b, lb = plan.t_us.size, plan.window_ids.size
                due = ((c + 1) * chunk_us + base_us - offset_us) / 1e6 / speed
                await _sleep_until(stop, start + due - clock() if math.isfinite(speed) else 0.0)
                if stop.is_set():
                    break
                for s in range(a, b, MAX_EVENTS_PER_MESSAGE):
                    e = min(b, s + MAX_EVENTS_PER_MESSAGE)
                    msg = SensorEvents(plan.channels[s:e], plan.t_us[s:e] + base_us, "us")
                    await sender.publish(ev_topic, msg)
                    stats.event_messages += 1
                    stats.events += e - s
                if lb > la:
                    ids = plan.window_ids[la:lb] + id_shift
                    await sender.publish(lab_topic, Labels(ids, plan.window_labels[la:lb]))
                    stats.label_messages += 1
                    stats.labels += lb - la
                a, la = b, lb
                sent_us = min((c + 1) * chunk_us, plan.span_us)
            if stop.is_set() and sent_us < plan.span_us:
                # stopped within the pass: the device's stream reached the window after
                # the last events sent, and the rest of the recording starts there
                reached = math.ceil(sent_us / plan.period_us) * plan.period_us
                stats.end_us = base_us + reached
                stats.stopped_in_pass_us = sent_us
                stats.stopped_at_recording_us = plan.origin_us + sent_us
                break
            stats.passes += 1
            base_us += plan.span_us
            id_shift += round(plan.span_us / plan.period_us)
            stats.end_us = base_us
            if stop.is_set():
                break
        stats.stopped = stop.is_set()
    finally:
        stats.elapsed_s = clock() - start
    return stats
