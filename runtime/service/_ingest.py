"""Ingest: incoming events become trials in the bounded pending-trial queue.

A :class:`~delgrad.protocols.SpikeBatch` gives one trial per trial id (the first
spike per input channel); a continuous :class:`~delgrad.protocols.SensorEvents`
stream is cut into trials by the windower. Trials wait in arrival order for
inference, at most ``ingest.max_pending_trials`` of them and at most
``ingest.max_pending_mb`` MiB of rows (``_limits.pending_bound``, fixed at
start from the network's inputs): when full, the
*oldest* trials are dropped and counted in ``dropped.overload``, and the caller
is told their ids (their labels will never be joined). Events outside the
network's inputs are counted in ``dropped.bad_events``; those of a continuous
stream whose channel is at or above the network's inputs also in
``refused.channel_outside``, and the first such event is logged as a warning
that names the channel, the network's inputs and the fix (the sensor's mapping).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from delgrad.protocols import SensorEvents, SpikeBatch
from delgrad.runtime._events import first_spike_inputs
from delgrad.runtime.service._limits import pending_bound
from delgrad.runtime.service._run_config import IngestSection
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._windowing import TrialWindower

log = logging.getLogger(__name__)


@dataclass
class _Chunk:
    ids: np.ndarray  # (K,) int64 trial ids
    t_in: np.ndarray  # (K, n_inputs) model units
    received_s: float  # monotonic time the message arrived


class Ingest:
    """The pending-trial queue and what fills it.

    Args:
        config: the ``[ingest]`` section (queue bound, time unit, windows).
        n_inputs: input channels of the network.
        counters: the service's counters.
        on_drop: called with the (K,) ids of trials dropped for overload.
    """

    def __init__(
        self,
        config: IngestSection,
        n_inputs: int,
        counters: Counters,
        on_drop: Callable[[np.ndarray], object],
    ) -> None:
        self._config = config
        self._n_inputs = n_inputs
        self.limit = pending_bound(config, n_inputs)
        self._counters = counters
        self._on_drop = on_drop
        period = config.window_period or config.window_length
        self._windower = TrialWindower(n_inputs, length=config.window_length, period=period)
        self._pending: deque[_Chunk] = deque()
        self._count = 0
        self._warned_channels = False
        self._seen = np.zeros(n_inputs, dtype=bool)  # input channels that had an event
        self._windower_seen = {"late_events": 0, "unwindowed_events": 0}
        self._last_event_s = 0.0  # when the last sensor_events message came (monotonic s)
        self._warned_late = False

    @property
    def pending_trials(self) -> int:
        """Trials waiting for inference."""
        return self._count

    @property
    def silent_inputs(self) -> tuple[int, int]:
        """(input channels that never received an event, all input channels)."""
        return int(self._n_inputs - np.count_nonzero(self._seen)), self._n_inputs

    def _mark_seen(self, channels: np.ndarray) -> None:
        ch = channels[(channels >= 0) & (channels < self._n_inputs)]
        self._seen[ch.astype(np.int64)] = True

    @property
    def oldest_received_s(self) -> float | None:
        """When the oldest waiting trial's message arrived (monotonic seconds), if any."""
        return self._pending[0].received_s if self._pending else None

    def _scale(self, time_unit: str) -> float:
        return 1.0 / self._config.us_per_tau if time_unit == "us" else 1.0

    def spikes(self, msg: SpikeBatch, now: float) -> bool:
        """Queue the trials of ``msg`` received at ``now``; returns whether any were queued."""
        result = first_spike_inputs(
            msg.offsets,
            msg.channels,
            msg.times,
            self._n_inputs,
            time_scale=self._scale(msg.time_unit),
        )
        if result.ignored:
            self._counters.inc("dropped.bad_events", result.ignored)
        self._mark_seen(np.asarray(msg.channels))
        return self._enqueue(np.asarray(msg.trial_ids, dtype=np.int64), result.t_in, now)

    def stream(self, msg: SensorEvents, now: float) -> bool:
        """Cut ``msg``'s events into windows and queue the trials completed; returns
        whether any were queued."""
        times = np.asarray(msg.times) * self._scale(msg.time_unit)
        channels = np.asarray(msg.channels)
        self._last_event_s = now
        self._counters.inc("events.received", channels.size)
        outside = int(np.count_nonzero(channels >= self._n_inputs))
        if outside:
            self._counters.inc("refused.channel_outside", outside)
            self._counters.inc("dropped.bad_events", outside)
            if not self._warned_channels:
                self._warned_channels = True
                log.warning(
                    "refusing events on channels >= %d (the network's inputs; this message "
                    "had %d of %d, up to channel %d): map the sensor's pixels to %d channels "
                    "(delgrad sensor --roi/--pool/--polarity) or use a recipe with more "
                    "inputs; counted in refused.channel_outside",
                    self._n_inputs,
                    outside,
                    channels.size,
                    int(channels.max()),
                    self._n_inputs,
                )
        self._mark_seen(channels)
        trials = self._windower.push(channels, times)
        self._count_unwindowed(msg.time_unit)
        if not len(trials.window_ids):
            return False
        return self._enqueue(np.asarray(trials.window_ids, dtype=np.int64), trials.t_in, now)

    def idle_flush_in(self, now: float) -> float | None:
        """Seconds until the started windows are due to be completed (``[ingest]
        idle_flush_s`` after the last event; <= 0: due now), or None if none holds
        an event or the flush is off."""
        idle_s = self._config.idle_flush_s
        if idle_s <= 0 or not self._windower.open_windows:
            return None
        return self._last_event_s + idle_s - now

    def flush_idle(self, now: float) -> bool:
        """Complete the started windows (the stream went quiet); returns whether any
        trial was queued. Counted in ``windows.idle_flushed``."""
        trials = self._windower.flush()
        if not len(trials.window_ids):
            return False
        self._counters.inc("windows.idle_flushed", len(trials.window_ids))
        return self._enqueue(np.asarray(trials.window_ids, dtype=np.int64), trials.t_in, now)

    def _count_unwindowed(self, time_unit: str) -> None:
        """Move the windower's late and unwindowed counts into the metrics
        (``events.late``, ``events.unwindowed``); the first late events are logged with
        the remedy (a stream that goes back in time is most often a recording sent
        again without ``--offset-us``)."""
        counts = self._windower.counters()
        late = counts["late_events"] - self._windower_seen["late_events"]
        unwindowed = counts["unwindowed_events"] - self._windower_seen["unwindowed_events"]
        self._windower_seen.update(
            late_events=counts["late_events"], unwindowed_events=counts["unwindowed_events"]
        )
        if unwindowed:
            self._counters.inc("events.unwindowed", unwindowed)
        if not late:
            return
        self._counters.inc("events.late", late)
        if self._warned_late:
            return
        self._warned_late = True
        period = self._config.window_period or self._config.window_length
        # where a stream that follows may start, on the message's clock: the window
        # after the newest event seen (the windows up to it may still be open)
        first_free = math.floor(self._windower.watermark / period) + 1
        resume = first_free * period / self._scale(time_unit)
        log.warning(
            "dropping %d events older than every open window (the stream went back in "
            "time; this device's stream had reached %.0f %s): a recording sent again, or a "
            "second sensor on this device, must start after the earlier stream ends (the "
            "--offset-us its delgrad sensor printed, at least %.0f); counted in events.late",
            late,
            resume,
            "us" if time_unit == "us" else "tau_s",
            resume if time_unit == "us" else resume * self._config.us_per_tau,
        )

    def _enqueue(self, ids: np.ndarray, t_in: np.ndarray, now: float) -> bool:
        if len(ids) == 0:
            return False
        self._pending.append(_Chunk(ids, t_in, now))
        self._count += len(ids)
        self._counters.inc("trials.received", len(ids))
        limit = self.limit
        while self._count > limit:
            oldest = self._pending[0]
            excess = self._count - limit
            if len(oldest.ids) <= excess:
                self._pending.popleft()
                dropped = oldest.ids
            else:
                dropped = oldest.ids[:excess]
                # copies: a view would keep the dropped rows' memory alive
                self._pending[0] = _Chunk(
                    oldest.ids[excess:].copy(), oldest.t_in[excess:].copy(), oldest.received_s
                )
            self._count -= len(dropped)
            self._counters.inc("dropped.overload", len(dropped))
            self._on_drop(dropped)
        return True

    def take(self, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The oldest ``limit`` trials (or all): ids (K,), t_in (K, n_inputs), and the
        time (K,) each one's message arrived. The queue must not be empty."""
        ids, rows, received = [], [], []
        taken = 0
        while self._pending and taken < limit:
            chunk = self._pending[0]
            take = min(limit - taken, len(chunk.ids))
            ids.append(chunk.ids[:take])
            rows.append(chunk.t_in[:take])
            received.append(np.full(take, chunk.received_s))
            if take == len(chunk.ids):
                self._pending.popleft()
            else:
                self._pending[0] = _Chunk(chunk.ids[take:], chunk.t_in[take:], chunk.received_s)
            taken += take
        self._count -= taken
        return np.concatenate(ids), np.concatenate(rows), np.concatenate(received)
