"""Service: the streaming service's parts wired into tasks on one asyncio loop.

Ingest -> inference -> label join -> learning -> publishing, joined by bounded
buffers with stated policies (docs/runtime.md, "Stages and their bounds"). Each
part has its module and is asked, never reached into: ``_ingest`` (pending-trial
queue), ``_inference`` (batches, driver runs, predictions, join), ``_learning``
(scoring, learning jobs in order), ``_param_stream`` (snapshots, deltas,
high-water), ``_metrics``, ``_commands`` and ``_control`` (what commands ask),
``_checkpoints``. Blocking work runs in two worker threads (``_worker``): the
driver's (driver runs for predictions) and the learner's (learning steps,
checkpoints), so batch k+1 runs on the driver while step k learns; parameters
reach the driver between batches, never during one (docs/runtime.md, "Pipeline
and parameter versions").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from delgrad.errors import ParameterError, StorageError
from delgrad.protocols import (
    Alarm,
    Status,
    Transport,
    TransportError,
    subscription,
    topic,
)
from delgrad.runtime.service._checkpoints import Checkpoints
from delgrad.runtime.service._commands import Commands
from delgrad.runtime.service._continual import (
    DegradationState,
    LrPolicy,
    degradation_detector,
    replay_buffer,
)
from delgrad.runtime.service._control import Control
from delgrad.runtime.service._degradation import Judgement
from delgrad.runtime.service._inference import Inference
from delgrad.runtime.service._ingest import Ingest
from delgrad.runtime.service._join import LabelJoin
from delgrad.runtime.service._learning import LearningPipeline
from delgrad.runtime.service._limits import byte_bounds_note, join_capacity, label_capacity
from delgrad.runtime.service._memory import mmap_threshold, tame_allocator, trim
from delgrad.runtime.service._metrics import MetricsReporter
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox, next_boot_epoch
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._receiver import Receiver
from delgrad.runtime.service._run_config import RunConfig
from delgrad.runtime.service._run_state import Mode, RunState
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._storage import Storage
from delgrad.runtime.service._supervision import ServiceFailed, Supervisor
from delgrad.runtime.service._worker import Worker

log = logging.getLogger(__name__)


class Service:
    """The online-learning service of one device.

    Args:
        config: service configuration.
        transport: connected message bus (MQTT or in-process).
        online: the learner with its driver.
        clock: monotonic clock in seconds (tests may replace it).
        epoch: the boot epoch of the envelope sequence numbers; None: the next one
            (:func:`~._outbox.next_boot_epoch`, recorded in the checkpoint folder).
    """

    def __init__(
        self,
        config: RunConfig,
        transport: Transport,
        online: OnlineLearner,
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch: int | None = None,
    ) -> None:
        self.config = config
        self.device = config.device
        self.transport = transport
        self.online = online
        self.clock = clock
        self.counters = Counters()
        self.join = LabelJoin(
            capacity=join_capacity(config.join, online.n_inputs),
            max_age_s=config.join.max_age_s,
            label_capacity=label_capacity(config, online.n_inputs),
        )
        self.ready = asyncio.Event()  # set once subscribed and announced
        self._stop = asyncio.Event()
        self._started_s = clock()
        self._state = RunState(config.learning.mode)
        self._worker = Worker("delgrad-learner")
        # learning.pipeline = false (default): one thread in order, each trial observed once
        self._driver_worker = Worker("delgrad-driver") if config.learning.pipeline else self._worker
        folder = Path(config.checkpoint.dir) if config.checkpoint.dir else None
        counters, state, worker = self.counters, self._state, self._worker
        storage = self._storage = Storage(counters, clock=clock)
        if epoch is None:
            epoch = next_boot_epoch(folder, storage=storage)
        outbox = self._outbox = Outbox(transport, config.device, counters, clock, epoch=epoch)
        params = self._params = ParameterStream(
            online,
            outbox,
            config.publish,
            folder,
            storage=storage,
            counters=counters,
            epoch=epoch,
        )
        ingest = self._ingest = Ingest(
            config.ingest, online.n_inputs, counters, self.join.drop_labels
        )
        if (note := byte_bounds_note(config, online.n_inputs)) is not None:
            log.info(note)
        self.replay = replay_buffer(config, online)
        learning = self._learning = LearningPipeline(
            online,
            worker,
            params,
            counters,
            metrics_window=config.publish.metrics_window,
            detector=degradation_detector(config.degradation),
            replay=self.replay,
            replay_fraction=config.replay.fraction,
            when_behind=config.learning.when_behind,
        )
        self._lr_policy = LrPolicy(config.learning, online)
        self._degradation = DegradationState(learning.detector, self._lr_policy)
        self._inference = Inference(
            config.inference,
            predictions=config.publish.predictions,
            online=online,
            ingest=ingest,
            join=self.join,
            learning=learning,
            worker=self._driver_worker,
            outbox=outbox,
            counters=counters,
            state=state,
            clock=clock,
        )
        self._metrics = MetricsReporter(
            config.publish.metrics_period_s,
            transport=transport,
            online=online,
            ingest=ingest,
            join=self.join,
            learning=learning,
            inference=self._inference,
            params=params,
            outbox=outbox,
            counters=counters,
            state=state,
            clock=clock,
            started_s=self._started_s,
            storage=storage,
        )
        self._checkpoints = None
        if folder is not None:
            self._checkpoints = Checkpoints(
                folder,
                online=online,
                params=params,
                outbox=outbox,
                counters=counters,
                state=state,
                keep=config.checkpoint.keep,
                storage=storage,
                replay=self.replay,
                degradation=self._degradation,
            )
        self._control = Control(
            config.driver.name,
            online=online,
            state=state,
            params=params,
            learning=learning,
            worker=worker,
            outbox=outbox,
            checkpoints=self._checkpoints,
            wake=self._inference.wake,
            uptime_s=lambda: clock() - self._started_s,
            health=self._metrics.health,
            heartbeat_period_s=config.publish.heartbeat_period_s,
        )
        self._commands = Commands(
            self._control, outbox, counters, max_age_s=config.commands.max_age_s
        )
        self._receiver = Receiver(
            ingest=ingest,
            join=self.join,
            learning=learning,
            commands=self._commands,
            inference=self._inference,
            counters=counters,
            clock=clock,
        )
        learning.on_degradation = self._degradation_changed
        self._supervisor = Supervisor(
            counters, max_restarts=config.supervision.max_task_restarts, stop=self._stop
        )

    # -- what others read ------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """``"train"`` or ``"infer"``."""
        return self._state.mode

    @property
    def paused(self) -> bool:
        """Whether inference and learning are paused."""
        return self._state.paused

    @property
    def last_metrics(self) -> dict[str, float]:
        """The metrics as of the last :meth:`metrics` call (or publication)."""
        return self._metrics.last

    def metrics(self) -> dict[str, float]:
        """The current metrics (also what the live display shows)."""
        return self._metrics.metrics()

    # -- lifecycle -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to drain and return (safe from signal handlers)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`request_stop`: subscribe, announce, process, drain, checkpoint.

        Every task is supervised (:class:`~._supervision.Supervisor`): an unexpected exception is
        logged with the task's name, counted in ``tasks.failed.<name>`` and the task
        restarts, up to ``supervision.max_task_restarts`` times; beyond that the
        service stops at once, publishes a retained ``dead`` status naming the
        failure and raises :class:`ServiceFailed`.

        Raises:
            ServiceFailed: a task failed more often than allowed.
        """
        # big transient buffers go back to the system (case 6); a step's do not
        largest = max(w.nbytes for w in self.online.learner.net_forward.w)
        tame_allocator(mmap_threshold(largest))
        for kind in ("events/in", "labels"):
            await self.transport.subscribe(topic(self.device, kind))
        await self.transport.subscribe(subscription(self.device, "cmd"))
        await self._control.announce("birth")
        await self._announce_alarm()
        self.ready.set()
        start = self._supervisor.task
        inference = start("inference", lambda: self._inference.loop(self._stop))
        params = start("params", lambda: self._params.loop(self._stop))
        announce_alive = lambda: self._control.announce("alive")  # noqa: E731
        tasks = [
            start("receive", lambda: self._receiver.loop(self.transport)),
            start("metrics", lambda: self._metrics.loop(announce_alive)),
            start("heartbeat", self._heartbeat_loop),
        ]
        if self._checkpoints is not None:
            tasks.append(start("checkpoint", self._checkpoint_loop))
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait(
            [stopper, inference, params, *tasks], return_when=asyncio.FIRST_COMPLETED
        )
        self._stop.set()  # whatever ended first, everything ends now
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        # The inference loop is never cancelled mid-batch: it sees the stop flag
        # between batches, so an in-flight batch (and its learning step) completes.
        self._inference.wake()
        self._params.wake()  # as the inference loop: a delta being encoded is published
        await asyncio.gather(inference, params, return_exceptions=True)
        try:
            if self._supervisor.failure is None:
                try:
                    await self._inference.drain()
                    await self._params.publish_due()  # the last steps' delta
                    if self._checkpoints is not None:
                        try:
                            await self._worker.call(self._checkpoints.save)
                        except ParameterError:  # invalid state: not kept
                            pass
                        except StorageError as exc:  # the older checkpoints stay
                            log.warning("final checkpoint not written: %s", exc)
                except Exception as exc:  # the dead status below still goes out
                    log.exception("draining or the final checkpoint failed")
                    self._supervisor.fail(f"shutdown: {type(exc).__name__}: {exc}")
            try:
                await self._metrics.publish()
            except Exception:  # e.g. the failed task was the metrics one
                log.exception("final metrics not published")
            uptime_s = self.clock() - self._started_s
            failure = self._supervisor.failure
            detail = "graceful shutdown" if failure is None else f"failed: {failure}"
            await self._outbox.publish("status", Status("dead", uptime_s, detail[:256]))
            with contextlib.suppress(TransportError, TimeoutError):
                await self.transport.flush(timeout=5.0)
        finally:
            wait = self._supervisor.failure is None
            for worker in {self._driver_worker, self._worker}:
                worker.shutdown(wait=wait)
            self._params.close()
        if self._supervisor.failure is not None:
            raise ServiceFailed(self._supervisor.failure)

    async def _degradation_changed(self, judged: Judgement) -> None:
        """The alarm fired or cleared: count it, steer the learning rate, publish the
        retained alarm (``alarm`` topic). The health warning, its log lines and the
        status detail follow from the metrics (``_health``)."""
        if judged.degraded:
            self.counters.inc("degradation.alarms")
        self._lr_policy.degraded(judged.degraded)
        await self._publish_alarm(judged)

    async def _announce_alarm(self) -> None:
        """At start, the alarm as this run starts: one retained from an earlier run is
        stale (the detector's history comes from the checkpoint, if any)."""
        detector = self._degradation.detector
        if detector is None:
            judged = Judgement(False, False, None, None, None, None)
            await self._publish_alarm(judged, "started: the degradation detector is off")
            return
        judged = detector.last
        state = "started degraded" if judged.degraded else "started"
        await self._publish_alarm(judged, f"{state}: {judged.text()}")

    async def _publish_alarm(self, judged: Judgement, text: str | None = None) -> None:
        if text is None:
            text = judged.text()
        alarm = Alarm(
            "degraded",
            judged.degraded,
            judged.accuracy or 0.0,
            judged.reference or 0.0,
            text[:256],
        )
        await self._outbox.publish("alarm", alarm)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.publish.heartbeat_period_s)
            await self._control.heartbeat()
            trim()

    async def _checkpoint_loop(self) -> None:
        period_s = self.config.checkpoint.period_s
        delay_s = period_s
        while True:
            await asyncio.sleep(delay_s)
            delay_s = period_s
            try:
                await self._control.checkpoint()
            except ParameterError as exc:  # invalid state is never written; the older ones stay
                log.warning("checkpoint not written: %s", exc)
            except StorageError:  # the storage warning says why; try again sooner
                delay_s = min(period_s, max(self._storage.retry_delay_s, 0.1))

    def handle_incoming(self, topic_str: str, payload: bytes, *, retained: bool = False) -> None:
        """Decode and route one message (see :class:`~._receiver.Receiver`)."""
        self._receiver.handle(topic_str, payload, retained=retained)

    # -- checkpoints -----------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write learner and service state atomically (worker thread).

        Raises:
            ParameterError: if no checkpoint folder is configured.
        """
        if self._checkpoints is None:
            raise ParameterError("no checkpoint folder configured")
        return self._checkpoints.save()

    def load_checkpoint(self) -> bool:
        """Restore the newest valid checkpoint if there is one, with its counters (at
        start; worker thread). Returns whether."""
        return self._checkpoints is not None and self._checkpoints.load()
