"""Inference: pending trials are batched, run on the driver, predicted and joined.

The inference loop takes a batch when ``inference.max_batch`` trials wait (while
training, at most what the next step still needs: :meth:`Inference.batch_limit`),
or once the oldest has waited ``inference.max_latency_ms``; runs it on the driver
in the driver's worker thread (the learner's, after the steps queued before it;
with ``learning.pipeline`` its own, beside a step); publishes the predictions;
hands the observed rows to the label join; and then lets the learning pipeline
learn from what was joined.
It owns the batch statistics (latency from message received to predictions
published, processed-trial rate, silent neurons, spikes per trial).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from delgrad.protocols import Predictions
from delgrad.runtime._losses import predict
from delgrad.runtime.service._ingest import Ingest
from delgrad.runtime.service._join import LabelJoin
from delgrad.runtime.service._learning import LearningPipeline
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._run_config import InferenceSection
from delgrad.runtime.service._run_state import RunState
from delgrad.runtime.service._stats import Counters, LatencyTracker, RateMeter
from delgrad.runtime.service._worker import Worker

#: Cutting a driver run at a step boundary saves re-observing the rest of a longer
#: batch (one more driver run for those trials) but makes one more batch (a driver
#: call, predictions message, join and learning job: about 1 ms of CPU, measured at
#: Yin-Yang, more on a busy host). Runs are cut only while one step's trials take
#: longer than this to run: 784-350-10's 150 take 5-7 ms in the service; at 1 ms the
#: bss2 emulator's 40-trial steps of yinyang_hw_WA were cut too, and at 10,000
#: trials/s it shed about half of them (tests/tools/test_e2e.py).
CUT_WORTH_S = 3e-3


@dataclass(frozen=True)
class _Ran:
    """One batch after its driver run: (B, n_out) output times and classes, (B, width)
    packed rows, silent-output trials, per-layer silent fraction, spikes in all."""

    output: np.ndarray
    classes: np.ndarray
    rows: np.ndarray
    silent_outputs: int
    silent: np.ndarray
    spikes: float
    seconds_per_trial: float


class Inference:
    """Batching and the inference step.

    Args:
        config: the ``[inference]`` section.
        predictions: publish predictions (``publish.predictions``).
        worker: the driver's worker thread (driver runs for predictions).
        online, ingest, join, learning, outbox, counters, state: the service's
            parts this stage takes from and hands on to.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        config: InferenceSection,
        *,
        predictions: bool,
        online: OnlineLearner,
        ingest: Ingest,
        join: LabelJoin,
        learning: LearningPipeline,
        worker: Worker,
        outbox: Outbox,
        counters: Counters,
        state: RunState,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._predictions = predictions
        self._online = online
        self._ingest = ingest
        self._join = join
        self._learning = learning
        self._worker = worker
        self._outbox = outbox
        self._counters = counters
        self._state = state
        self._clock = clock
        self._have_work = asyncio.Event()  # pending trials or joined labels to learn from
        self.latency = LatencyTracker(20_000)
        self.trial_rate = RateMeter(5.0)
        self.silent = np.zeros(
            len(online.network_summary().delay_kinds)
        )  # per layer, fraction of silent neurons
        self.spikes_per_trial = 0.0
        self._seconds_per_trial = 0.0  # driver run time per trial, moving average (s)

    def wake(self) -> None:
        """Tell the loop there is work: trials queued, labels joined, or a state change."""
        self._have_work.set()

    def batch_limit(self) -> int:
        """Trials per driver run: ``max_batch``; while training, at most what the
        learner's next step still needs (``step_every`` minus the labelled trials
        already buffered or queued for it) where that is worth a batch.

        A step learns from spike times observed with some parameters; its rows are
        fresh if they were observed with the version the step starts from. A batch
        that ended past a step boundary leaves the rest of its rows a step old: with
        ``refresh`` they are observed again before their step (at 784-350-10 with
        1,024-trial batches, 85 % of the trials), so the run is cut at the boundary
        when one step's trials cost the driver more than a batch costs the service
        (:data:`CUT_WORTH_S`: sensor-sized networks; at Yin-Yang size re-running is
        cheaper than a batch per step). Without ``refresh`` stale rows would be
        learned as they are (measured in simulation, 300k trials, H30_WS: 93.5-95.1 %
        test accuracy with 1050-trial batches against 96.2-97.5 % with fresh times),
        so the run is always cut.
        """
        limit = self._config.max_batch
        if not self._state.learning:
            return limit
        step_every = self._online.step_every
        if not self._online.refresh or self._seconds_per_trial * step_every >= CUT_WORTH_S:
            limit = min(limit, step_every - self._learning.filled)
        return limit

    async def loop(self, stop: asyncio.Event) -> None:
        """Run batches until ``stop`` is set (seen between batches, never during one)."""
        max_wait_s = self._config.max_latency_ms / 1000.0
        while not stop.is_set():
            await self._have_work.wait()
            if stop.is_set():
                return
            if self._state.paused:
                await asyncio.sleep(0.05)
                continue
            if not self._ingest.pending_trials:
                self._have_work.clear()
                await self._learn()  # labels that came after their trials
                continue
            if self._ingest.pending_trials < self.batch_limit():
                # latency budget: wait a little for a fuller batch
                oldest = self._ingest.oldest_received_s
                if oldest is None:
                    oldest = self._clock()
                wait_s = max_wait_s - (self._clock() - oldest)
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, max_wait_s))
            await self.step()

    async def _learn(self) -> None:
        behind = self._ingest.pending_trials > self._config.max_batch
        await self._learning.learn(learning=self._state.learning, behind=behind)

    async def step(self) -> None:
        """Run one batch of pending trials, publish its predictions, join, learn."""
        await self._learning.collect(block=False)
        if not self._ingest.pending_trials:
            return
        ids, t_in, received = self._ingest.take(self.batch_limit())
        ran = await self._worker.call(lambda: self._run(t_in))
        if self._predictions:
            await self._outbox.publish(
                "predictions", Predictions(ids, ran.classes, ran.output.astype(np.float32))
            )
        now = self._clock()
        self.latency.add(now - received)
        self.trial_rate.add(now, len(ids))
        self._counters.inc("trials.processed", len(ids))
        self._counters.inc("trials.silent_output", ran.silent_outputs)
        self.silent = ran.silent
        self.spikes_per_trial = ran.spikes / len(ids)
        self._seconds_per_trial += 0.2 * (ran.seconds_per_trial - self._seconds_per_trial)
        rows = ran.rows
        self._learning.add(self._join.join_trials(ids, rows, now))
        self._join.expire(now)
        await self._learn()

    def _run(self, t_in: np.ndarray) -> _Ran:
        """Driver's thread: the batch's driver run, packed rows and statistics (kept
        off the event loop, which decodes and joins meanwhile)."""
        start = time.perf_counter()
        observation, version = self._online.observe(t_in)
        seconds = time.perf_counter() - start
        out = observation.output
        return _Ran(
            output=out,
            classes=predict(out),
            rows=self._online.pack(t_in, observation, version),
            silent_outputs=int(np.isinf(out).all(axis=1).sum()),
            silent=np.array([float(np.isinf(t).mean()) for t in observation.times]),
            spikes=float(sum(np.isfinite(t).sum() for t in observation.times)),
            seconds_per_trial=seconds / max(1, len(t_in)),
        )

    async def drain(self) -> None:
        """Process what is already queued (in-flight batches) before shutting down."""
        while self._ingest.pending_trials and not self._state.paused:
            await self.step()
        if not self._state.paused:
            await self._learn()
        await self._learning.collect(block=True)
