"""A simulated event sensor: trial-framed spike batches and labels, paced, over a Publisher.

Sources yield trials in CSR form (see :class:`TrialBatch`); :func:`stream_trials`
publishes them as :class:`~delgrad.protocols.SpikeBatch` messages on
``delgrad/v1/{device}/events/in`` and their labels as
:class:`~delgrad.protocols.Labels` on ``delgrad/v1/{device}/labels``, at a target
rate. Everything but :func:`stream_trials` is synchronous and pure.

Sources:
    :class:`YinYangSource` cycles through a standard Yin-Yang split forever,
    reshuffled every pass; :class:`FileSource` loops over the trials of an ``.npz``
    file (NIR padded layout or CSR).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from delgrad.errors import ConfigError
from delgrad.protocols import TIME_UNITS, Labels, Publisher, SpikeBatch, TopicKind, topic
from delgrad.runtime import YINYANG_SPLITS, encode_yinyang, load_trial_arrays, yinyang_split
from delgrad.runtime.sources import TrialLayout
from delgrad.tools._ack_window import AckWindow

__all__ = [
    "MAX_BURST_BATCHES",
    "MAX_EVENTS_PER_MESSAGE",
    "FileSource",
    "Pacer",
    "SensorStats",
    "TrialBatch",
    "TrialSource",
    "YinYangSource",
    "convert_times",
    "gather_trials",
    "stream_trials",
]

#: After a stall, at most this many batches are sent back to back to catch up; the
#: rest of the backlog is forgiven (counted in ``SensorStats.fell_behind``).
MAX_BURST_BATCHES = 4
#: Most events in one SpikeBatch (the protocol decodes at most 2**22 array elements).
MAX_EVENTS_PER_MESSAGE = 1 << 20


class TrialBatch(NamedTuple):
    """Consecutive trials in CSR form.

    Attributes:
        trial_ids: (n,) int64 unique, increasing trial ids.
        offsets: (n + 1,) int64; events of trial i are ``[offsets[i], offsets[i+1])``.
        channels: (n_events,) int64 input channel per event.
        times: (n_events,) float64 event times in the source's ``time_unit``.
        labels: (n,) int64 class per trial (-1: unknown), or ``None`` for no labels.
    """

    trial_ids: np.ndarray
    offsets: np.ndarray
    channels: np.ndarray
    times: np.ndarray
    labels: np.ndarray | None


class TrialSource(Protocol):
    """Anything that hands out trials forever.

    Attributes:
        time_unit: Unit of the times it yields, ``"tau_s"`` or ``"us"``.
    """

    time_unit: str

    def take(self, n: int) -> TrialBatch:
        """Return the next ``n`` trials (n >= 1)."""
        ...


def gather_trials(
    offsets: np.ndarray, channels: np.ndarray, times: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR subset of ``rows`` (in that order): new offsets, channels, times."""
    counts = offsets[rows + 1] - offsets[rows]
    new_off = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=new_off[1:])
    if new_off[-1] == 0:
        return new_off, np.zeros(0, np.int64), np.zeros(0, np.float64)
    # Index of every event: start of its trial + position within the trial.
    starts = np.repeat(offsets[rows], counts)
    within = np.arange(new_off[-1]) - np.repeat(new_off[:-1], counts)
    idx = starts + within
    return new_off, channels[idx], times[idx]


class _Cycler:
    """Shared bookkeeping: trial ids and an endless walk over ``size`` trials."""

    def __init__(self, size: int, first_trial_id: int) -> None:
        if first_trial_id < 0:
            raise ConfigError("first trial id must be >= 0")
        self._size = size
        self._next_id = int(first_trial_id)
        self._order = np.arange(size)
        self._pos = size  # start a new pass on the first take
        self.passes = 0

    @property
    def size(self) -> int:
        """Trials in one pass."""
        return self._size

    def _new_pass(self) -> np.ndarray:
        return np.arange(self._size)

    def rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (trial_ids, row indices) of the next ``n`` trials."""
        if n < 1:
            raise ConfigError("need at least one trial per batch")
        parts = []
        left = n
        while left:
            if self._pos >= self._size:
                self._order = self._new_pass()
                self._pos = 0
                self.passes += 1
            k = min(left, self._size - self._pos)
            parts.append(self._order[self._pos : self._pos + k])
            self._pos += k
            left -= k
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids, np.concatenate(parts)


class YinYangSource(_Cycler):
    """Trials from a standard Yin-Yang split, encoded as spike times.

    Each trial has ``4 * input_repeat`` events: channel ``k`` fires at the encoded
    time of feature ``k // input_repeat`` (features x, y, 1-x, 1-y; time
    ``0.15 + 1.85 v`` in units of tau_s). The split is cycled forever, reshuffled at
    the start of every pass with a generator seeded by ``seed``; trial ids count up
    from ``first_trial_id``.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        input_repeat: Copies of each input channel, >= 1.
        seed: Seed of the shuffling.
        first_trial_id: Id of the first trial, >= 0.
    """

    time_unit = "tau_s"

    def __init__(
        self, split: str = "train", input_repeat: int = 1, seed: int = 0, *, first_trial_id: int = 0
    ) -> None:
        if split not in YINYANG_SPLITS:
            raise ConfigError(f"unknown Yin-Yang split {split!r}; use train, validation or test")
        if isinstance(input_repeat, bool) or not isinstance(input_repeat, int) or input_repeat < 1:
            raise ConfigError(f"input repeat must be an integer >= 1, got {input_repeat!r}")
        features, labels = yinyang_split(split)  # type: ignore[arg-type]
        super().__init__(len(labels), first_trial_id)
        self.split = split
        self.input_repeat = input_repeat
        self.n_channels = features.shape[1] * input_repeat
        # (N, 4 * repeat): column k holds feature k // repeat.
        self._times = np.repeat(encode_yinyang(features), input_repeat, axis=1)
        self._labels = np.asarray(labels, dtype=np.int64)
        #: classes of the split
        self.n_classes: int | None = int(self._labels.max()) + 1
        self._rng = np.random.default_rng(seed)

    def _new_pass(self) -> np.ndarray:
        return self._rng.permutation(self._size)

    def layout(self, us_per_tau: float) -> TrialLayout:
        """The channels as coordinates, for ``delgrad sensor --shift`` (a trial lasts
        until the latest encoded time; ``us_per_tau`` makes it seconds)."""
        t_early, t_late = (float(v) for v in encode_yinyang(np.array([0.0, 1.0])))
        return TrialLayout(
            self.n_channels,
            span=t_late,
            span_s=t_late * us_per_tau / 1e6,
            coordinate=tuple(np.repeat(np.arange(4), self.input_repeat).tolist()),
            t_range=(t_early, t_late),
        )

    def take(self, n: int) -> TrialBatch:
        """Return the next ``n`` trials."""
        ids, rows = self.rows(n)
        k = self.n_channels
        offsets = np.arange(0, (n + 1) * k, k, dtype=np.int64)
        channels = np.tile(np.arange(k, dtype=np.int64), n)
        return TrialBatch(ids, offsets, channels, self._times[rows].ravel(), self._labels[rows])


class FileSource(_Cycler):
    """Trials from an ``.npz`` file, looped over in file order.

    Layouts (arrays in the file):
        * NIR padded: ``channels`` (T, N) int with -1 padding and ``times`` (T, N)
          float with ``inf`` padding; an entry is an event when its channel is >= 0
          and its time finite.
        * CSR: ``offsets`` (T + 1,), ``channels`` (E,), ``times`` (E,).

    Optional: ``labels`` (T,) int (>= 0, or -1 for unknown) and a scalar string
    ``time_unit`` (``"tau_s"``, the default, or ``"us"``). Trial ids are fresh and
    increasing from ``first_trial_id`` (file positions repeat on every loop).

    Args:
        path: The ``.npz`` file.
        first_trial_id: Id of the first trial, >= 0.

    Raises:
        ConfigError: If the file is missing, unreadable or its arrays are invalid.
    """

    def __init__(self, path: str | os.PathLike[str], *, first_trial_id: int = 0) -> None:
        self.path = os.fspath(path)
        offsets, channels, times, labels, unit = load_trial_arrays(self.path)
        super().__init__(offsets.size - 1, first_trial_id)
        self.time_unit = unit
        self._offsets, self._channels, self._times, self._labels = offsets, channels, times, labels
        self.n_channels = int(channels.max()) + 1 if channels.size else 0
        #: classes of the labels (None: no labels)
        self.n_classes: int | None = None
        if labels is not None and (labels >= 0).any():
            self.n_classes = int(labels.max()) + 1
        finite = times[np.isfinite(times)]
        #: the latest event time of any trial (the span noise events fall in)
        self.span = float(finite.max()) if finite.size and finite.max() > 0 else 1.0

    def layout(self, us_per_tau: float) -> TrialLayout:
        """Plain channels, for ``delgrad sensor --shift`` (a trial lasts until the
        latest event of the file; ``us_per_tau`` makes times in tau_s seconds)."""
        seconds = self.span / 1e6 * (us_per_tau if self.time_unit == "tau_s" else 1.0)
        return TrialLayout(max(self.n_channels, 1), span=self.span, span_s=seconds)

    def take(self, n: int) -> TrialBatch:
        """Return the next ``n`` trials (wrapping to the file's start)."""
        ids, rows = self.rows(n)
        off, ch, t = gather_trials(self._offsets, self._channels, self._times, rows)
        labels = None if self._labels is None else self._labels[rows]
        return TrialBatch(ids, off, ch, t, labels)


def convert_times(times: np.ndarray, src: str, dst: str, us_per_tau: float) -> np.ndarray:
    """Convert event times between ``"tau_s"`` and ``"us"`` (``us_per_tau`` us per tau_s)."""
    if src == dst:
        return times
    if src == "tau_s" and dst == "us":
        return times * us_per_tau
    if src == "us" and dst == "tau_s":
        return times / us_per_tau
    raise ConfigError(f"time units must be in {sorted(TIME_UNITS)}, got {src!r} -> {dst!r}")


class Pacer:
    """Schedule of batch sends at a fixed interval, catching up without large bursts.

    Batch ``k`` is due at ``start + k * interval_s``. When the sender falls more than
    ``max_burst`` intervals behind, the older backlog is forgiven (the schedule moves
    forward and :attr:`fell_behind` counts it), so at most ``max_burst + 1`` batches
    go out back to back. Pure: the caller supplies the times.

    Args:
        interval_s: Seconds between batches (0: unpaced).
        start_s: Time of the first batch.
        max_burst: Backlog kept, in batches.
    """

    def __init__(self, interval_s: float, start_s: float, max_burst: int = MAX_BURST_BATCHES):
        self.interval_s = float(interval_s)
        self.max_burst = int(max_burst)
        self._due = float(start_s)
        self.fell_behind = 0

    def wait_s(self, now_s: float) -> float:
        """Seconds to wait before the next batch may go (0 when it is due)."""
        if self.interval_s <= 0:
            return 0.0
        floor = now_s - self.max_burst * self.interval_s
        if self._due < floor:
            self._due = floor
            self.fell_behind += 1
        return max(0.0, self._due - now_s)

    @property
    def due_s(self) -> float:
        """When the next batch is due."""
        return self._due

    def sent(self) -> None:
        """Record that the due batch went out."""
        self._due += self.interval_s


@dataclass
class SensorStats:
    """What :func:`stream_trials` sent.

    Attributes:
        trials: Trials sent (in SpikeBatch messages).
        events: Spike events sent.
        event_messages: SpikeBatch messages.
        label_messages: Labels messages.
        labels: Labels sent.
        elapsed_s: Seconds from the start to the end of the last batch's time slot
            (``batch / rate`` long), or to the end if later.
        fell_behind: Times the pacer forgave a backlog (the sender could not keep up).
        first_trial_id: Id of the first trial sent, or -1.
        last_trial_id: Id of the last trial sent, or -1.
        stopped: Whether the ``stop`` event ended the stream.
        undelivered: Whether messages were still queued when the sender gave up
            flushing (the counts above are what was queued, not what arrived).
    """

    trials: int = 0
    events: int = 0
    event_messages: int = 0
    label_messages: int = 0
    labels: int = 0
    elapsed_s: float = 0.0
    fell_behind: int = 0
    first_trial_id: int = -1
    last_trial_id: int = -1
    stopped: bool = False
    undelivered: bool = False

    @property
    def achieved_rate(self) -> float:
        """Trials per second over :attr:`elapsed_s` (0 before anything was sent)."""
        return self.trials / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line for humans."""
        text = (
            f"sent {self.trials} trials ({self.events} events) in {self.event_messages} "
            f"event and {self.label_messages} label messages ({self.labels} labels) "
            f"in {self.elapsed_s:.2f} s: {self.achieved_rate:.1f} trials/s"
        )
        if self.fell_behind:
            text += f"; fell behind the target rate {self.fell_behind} times"
        return text


def _label_mask(start: int, n: int, fraction: float) -> np.ndarray:
    """Which of trials ``start .. start+n-1`` (running count) carry a label.

    Exactly ``floor(m * fraction)`` of the first ``m`` trials are labelled, evenly
    spread (no randomness: reruns label the same trials).
    """
    i = np.arange(start, start + n, dtype=np.float64)
    return np.floor((i + 1) * fraction) > np.floor(i * fraction)


def _check_stream_args(
    rate: float,
    batch: int,
    count: int | None,
    duration_s: float | None,
    label_fraction: float,
    label_lag: int,
    time_unit: str,
    us_per_tau: float,
) -> None:
    if not (rate > 0) or math.isnan(rate):
        raise ConfigError(f"rate must be > 0 trials/s (inf: unpaced), got {rate!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1 trial, got {batch!r}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ConfigError(f"count must be an integer >= 0, got {count!r}")
    if duration_s is not None and not (duration_s >= 0 and math.isfinite(duration_s)):
        raise ConfigError(f"duration must be finite and >= 0 s, got {duration_s!r}")
    if not 0.0 <= label_fraction <= 1.0:
        raise ConfigError(f"label fraction must be in [0, 1], got {label_fraction!r}")
    if isinstance(label_lag, bool) or not isinstance(label_lag, int) or label_lag < 0:
        raise ConfigError(f"label lag must be an integer >= 0 messages, got {label_lag!r}")
    if time_unit not in TIME_UNITS:
        raise ConfigError(f"time unit must be one of {sorted(TIME_UNITS)}, got {time_unit!r}")
    if not (us_per_tau > 0 and math.isfinite(us_per_tau)):
        raise ConfigError(f"us per tau_s must be finite and > 0, got {us_per_tau!r}")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)  # let the transport and other tasks run between batches
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def stream_trials(
    publisher: Publisher,
    device: str,
    source: TrialSource,
    *,
    rate: float,
    batch: int,
    count: int | None = None,
    duration_s: float | None = None,
    label_fraction: float = 1.0,
    label_lag: int = 0,
    time_unit: str = "tau_s",
    us_per_tau: float = 6.0,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SensorStats:
    """Publish trials from ``source`` as SpikeBatch messages, with their labels.

    Every ``batch / rate`` seconds one SpikeBatch of ``batch`` trials goes to
    ``topic(device, "events/in")`` (see :class:`Pacer` for catching up). The labels
    of a message's trials follow as one Labels message on ``topic(device, "labels")``:
    right after it when ``label_lag`` is 0, else after ``label_lag`` further event
    messages (the queue of held-back Labels is bounded by ``label_lag``). Trials
    with label -1, and those left out by ``label_fraction``, get no label; a message
    without labels is not sent. When the stream ends (count, duration or ``stop``),
    no partial batch is sent and the held-back labels are sent, so every trial sent
    has its label.

    Args:
        publisher: Publishes with per-topic sequence numbers (its transport connected).
        device: Device id of the topics.
        source: Where the trials come from (its ``time_unit`` is converted).
        rate: Target trials per second (> 0; ``math.inf`` sends unpaced).
        batch: Trials per SpikeBatch message (>= 1); the last one may be smaller.
        count: Trials to send in total, or ``None`` for no limit.
        duration_s: Seconds to run, or ``None`` for no limit.
        label_fraction: Fraction of trials labelled, in [0, 1]; exactly
            ``floor(m * label_fraction)`` of the first m trials, evenly spread.
        label_lag: Event messages between a message and its labels, >= 0.
        time_unit: Unit of the sent times, ``"tau_s"`` or ``"us"``.
        us_per_tau: Microseconds per tau_s, for conversions.
        stop: Set it to end the stream early (cleanly).
        clock: Monotonic time in seconds (tests may replace it).

    Returns:
        What was sent.

    Raises:
        ConfigError: On invalid arguments.
    """
    _check_stream_args(
        rate, batch, count, duration_s, label_fraction, label_lag, time_unit, us_per_tau
    )
    stop = asyncio.Event() if stop is None else stop
    ev_topic = topic(device, TopicKind.EVENTS_IN)
    lab_topic = topic(device, TopicKind.LABELS)
    stats = SensorStats()
    # Labels per sent event message (None: it had none), at most label_lag + 1 entries.
    pending: deque[Labels | None] = deque()
    start = clock()
    pacer = Pacer(batch / rate if math.isfinite(rate) else 0.0, start)
    sender = AckWindow(publisher, unpaced=not math.isfinite(rate))

    async def release(keep: int) -> None:
        while len(pending) > keep:
            msg = pending.popleft()
            if msg is None:
                continue
            await sender.publish(lab_topic, msg)
            stats.label_messages += 1
            stats.labels += msg.trial_ids.size

    try:
        while not stop.is_set():
            n = batch if count is None else min(batch, count - stats.trials)
            if n <= 0:
                break
            now = clock()
            if duration_s is not None and now - start >= duration_s:
                break
            wait = pacer.wait_s(now)
            if duration_s is not None:
                wait = min(wait, max(0.0, start + duration_s - now))
            await _wait(stop, wait)
            if stop.is_set():
                break
            if pacer.wait_s(clock()) > 0:  # woken early by the duration limit
                continue
            tb = source.take(n)
            if tb.channels.size > MAX_EVENTS_PER_MESSAGE:
                raise ConfigError(
                    f"{tb.channels.size} events in one message (most {MAX_EVENTS_PER_MESSAGE});"
                    " lower the batch size"
                )
            times = convert_times(tb.times, source.time_unit, time_unit, us_per_tau)
            msg = SpikeBatch(tb.trial_ids, tb.offsets, tb.channels, times, time_unit)
            await sender.publish(ev_topic, msg)
            pacer.sent()
            stats.event_messages += 1
            stats.trials += n
            stats.events += int(tb.channels.size)
            if stats.first_trial_id < 0:
                stats.first_trial_id = int(tb.trial_ids[0])
            stats.last_trial_id = int(tb.trial_ids[-1])
            labels = None
            if tb.labels is not None:
                mask = _label_mask(stats.trials - n, n, label_fraction) & (tb.labels >= 0)
                if mask.any():
                    labels = Labels(tb.trial_ids[mask], tb.labels[mask])
            pending.append(labels)
            await release(label_lag)
        stats.stopped = stop.is_set()
    finally:
        stats.fell_behind = pacer.fell_behind
        end = clock()
        if stats.trials:
            end = max(end, pacer.due_s)  # the last batch's slot is part of the run
        stats.elapsed_s = end - start
    await release(0)
    return stats
