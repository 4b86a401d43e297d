"""Metrics: the service's live figures, assembled from its parts and published periodically.

:meth:`MetricsReporter.metrics` asks every part for its figures (names are part
of the interface: dashboards and ``delgrad monitor`` read them, see
docs/runtime.md); :meth:`MetricsReporter.loop` publishes them every
``publish.metrics_period_s``, ages out the label join, and announces the device
again after the transport reconnected (a restarted broker without persistence
lost the retained status and snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from delgrad.protocols import Metrics, Transport
from delgrad.runtime.service._health import HealthCheck
from delgrad.runtime.service._inference import Inference
from delgrad.runtime.service._ingest import Ingest
from delgrad.runtime.service._join import LabelJoin
from delgrad.runtime.service._learning import LearningPipeline
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._run_state import RunState
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._storage import Storage


class MetricsReporter:
    """Assembles and publishes the metrics of one service.

    Args:
        period_s: seconds between metrics messages.
        transport: read for its statistics (``transport.*``) and reconnects.
        online, ingest, join, learning, inference, params, outbox, counters, state:
            the parts whose figures are reported.
        clock: monotonic clock in seconds.
        started_s: when the service started, on ``clock``.
        storage: the write path, whose problem is the ``storage`` health warning.
    """

    def __init__(
        self,
        period_s: float,
        *,
        transport: Transport,
        online: OnlineLearner,
        ingest: Ingest,
        join: LabelJoin,
        learning: LearningPipeline,
        inference: Inference,
        params: ParameterStream,
        outbox: Outbox,
        counters: Counters,
        state: RunState,
        clock: Callable[[], float],
        started_s: float,
        storage: Storage | None = None,
    ) -> None:
        self._period_s = period_s
        self._transport = transport
        self._online = online
        self._ingest = ingest
        self._join = join
        self._learning = learning
        self._inference = inference
        self._params = params
        self._outbox = outbox
        self._counters = counters
        self._state = state
        self._clock = clock
        self._started_s = started_s
        self._storage = storage
        self._last: dict[str, float] = {}
        self._health = HealthCheck(step_every=online.step_every)
        self._health_detail = ""

    @property
    def last(self) -> dict[str, float]:
        """What :meth:`metrics` returned last (for a display between calls)."""
        return self._last

    def metrics(self) -> dict[str, float]:
        """The current metrics (also what the live display shows)."""
        now = self._clock()
        accuracy = self._learning.accuracy
        inference = self._inference
        values: dict[str, float | None] = {
            "accuracy": accuracy.accuracy,
            "loss": accuracy.loss,
            "labelled_in_window": float(accuracy.count),
            # totals since boot: the accuracy over any span is the ratio of differences
            "scored.trials": float(accuracy.total),
            "scored.correct": float(accuracy.correct_total),
            "samples_per_s": inference.trial_rate.rate(now),
            "bytes_published_per_s": self._outbox.bytes_rate.rate(now),
            "spikes_per_trial": inference.spikes_per_trial,
            "queue.pending_trials": float(self._ingest.pending_trials),
            "queue.learning_buffer": float(self._online.buffered),
            "learning.refreshed_trials": float(self._online.refreshed),
            "uptime_s": now - self._started_s,
            "param_seq": float(self._params.seq),
            "mode_train": float(self._state.mode == "train"),
            "paused": float(self._state.paused),
        }
        # per class: a class that appears late, or a shift that hurts one class, shows
        # here while the overall accuracy hides it (None: no trial of it in the window)
        for k, value in enumerate(accuracy.per_class(self._online.n_outputs)):
            values[f"accuracy.class{k}"] = value
        for index, value in enumerate(inference.silent):
            values[f"silent.layer{index}"] = float(value)
        for key, latency in inference.latency.percentiles().items():
            values[f"latency.{key}"] = latency
        for key, count in self._join.counters().items():
            values[f"join.{key}"] = float(count)
        values["queue.join_waiting"] = float(len(self._join))
        if self._learning.samples:  # learning.when_behind = "sample"
            values["learning.sampled_fraction"] = self._learning.sampled_fraction()
        detector = self._learning.detector
        if detector is not None:
            judged = detector.last
            values["degradation.accuracy"] = judged.accuracy
            values["degradation.reference"] = judged.reference
            values["degradation.silent"] = judged.silent
            values["degradation.silent_reference"] = judged.silent_reference
        replay = self._learning.replay
        if replay is not None:
            values["replay.trials"] = float(replay.size)
            values["replay.capacity_trials"] = float(replay.capacity)
            values["replay.bytes"] = float(replay.nbytes)
        outage_s = getattr(self._transport, "outage_s", None)
        if outage_s is not None:  # the current outage (its total: transport.down_s)
            values["broker.outage_s"] = float(outage_s)
        stats = getattr(self._transport, "stats", None)
        if stats is not None:
            for key, stat in vars(stats).items():
                values[f"transport.{key}"] = float(stat)
        for key, count in self._counters.as_dict().items():
            values[key] = float(count)
        # a statistic of nothing (no labelled trial yet) is left out, never NaN or 0
        clean = {k: float(v) for k, v in values.items() if v is not None}
        self._health.update(
            clean,
            now_s=now,
            silent_inputs=self._ingest.silent_inputs,
            training=self._state.mode == "train" and not self._state.paused,
            storage=self._storage.problem if self._storage is not None else None,
            degraded=self._degraded(),
        )
        clean.update(self._health.metrics())
        self._last = clean
        return clean

    def _degraded(self) -> str | None:
        detector = self._learning.detector
        if detector is None or not detector.degraded:
            return None
        return detector.last.text()

    async def publish(self) -> None:
        """Publish the current metrics (non-finite values left out)."""
        values = {k: v for k, v in self.metrics().items() if np.isfinite(v)}
        await self._outbox.publish("metrics", Metrics(self._online.steps, values))

    @property
    def health(self) -> HealthCheck:
        """The health warnings judged with every :meth:`metrics` call."""
        return self._health

    def _reconnects(self) -> int:
        stats = getattr(self._transport, "stats", None)
        return int(getattr(stats, "reconnects", 0))

    async def loop(self, announce: Callable[[], Awaitable[None]]) -> None:
        """Every period: age out the join, ``announce()`` after a reconnect, publish."""
        reconnects = self._reconnects()
        while True:
            await asyncio.sleep(self._period_s)
            self._join.expire(self._clock())
            self._params.retry()  # a high-water record that failed, after its backoff
            now_reconnects = self._reconnects()
            if now_reconnects != reconnects:
                # A restarted broker without persistence lost the retained status and
                # snapshot: announce again, so late subscribers find both.
                reconnects = now_reconnects
                await announce()
            await self.publish()
            detail = self._health.detail()
            if detail != self._health_detail:
                # the warnings changed: a fresh retained status lists them (Control)
                self._health_detail = detail
                await announce()
