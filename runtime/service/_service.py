"""The streaming service: ingest -> inference -> online learning -> publishing.

One asyncio loop; stages are joined by bounded buffers with stated policies:

* **pending trials** (``ingest.max_pending_trials``): trials waiting for inference;
  when full, the *oldest* trials are dropped and counted (``dropped.overload``).
  Labels and commands never wait here.
* **label join** (``join.capacity`` trials and labels, ``join.max_age_s``): see
  :class:`LabelJoin`; evictions are counted as missing / orphan / late labels.
* **learning buffer** (``learning.step_every`` trials): one optimiser step when full.
* **transport queues**: bounded inbox and outbox of the transport (see
  ``delgrad.protocols``); state-like topics keep only their newest message while
  the link is down, so a broker outage never builds a backlog.

Blocking work (driver runs, learning steps, checkpoints) runs in one worker
thread, so parameters reach the driver between batches, never during one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import DelgradError, ParameterError
from delgrad.protocols import (
    Command,
    DeltaEncoder,
    Labels,
    Metrics,
    Predictions,
    ProtocolError,
    Publisher,
    Reply,
    SensorEvents,
    SpikeBatch,
    Status,
    Transport,
    TransportError,
    decode,
    parse_topic,
    subscription,
    topic,
)
from delgrad.protocols import NeuronParams as WireNeuron
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._events import first_spike_inputs
from delgrad.runtime._losses import predict
from delgrad.runtime.service._join import JoinedRows, LabelJoin
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._run_config import RunConfig
from delgrad.runtime.service._stats import Counters, LatencyTracker, RateMeter, SlidingAccuracy
from delgrad.runtime.service._windowing import TrialWindower

CHECKPOINT_NAME = "service_checkpoint.npz"
HIGHWATER_NAME = "sequence_highwater.json"
#: Envelope sequence numbers reserved per topic beyond the last saved value, so
#: numbers stay increasing across a crash (see docs/runtime.md, "Restarts").
SEQ_RESERVE = 1 << 32

#: Learning jobs queued in the worker before the inference loop waits for the oldest.
MAX_LEARNING_IN_FLIGHT = 2

COMMANDS = ("checkpoint", "lr", "mode", "pause", "reset", "resume", "snapshot", "status")


@dataclass
class _Chunk:
    ids: np.ndarray  # (K,) int64 trial ids
    t_in: np.ndarray  # (K, n_inputs) model units
    received_s: float  # monotonic time the message arrived


class Service:
    """The online-learning service of one device.

    Args:
        config: service configuration.
        transport: connected message bus (MQTT or in-process).
        online: the learner with its driver.
        clock: monotonic clock in seconds (tests may replace it).
    """

    def __init__(
        self,
        config: RunConfig,
        transport: Transport,
        online: OnlineLearner,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.device = config.device
        self.transport = transport
        self.publisher = Publisher(transport, config.device)
        self.online = online
        self.clock = clock
        self.mode = config.learning.mode
        self.paused = False
        self.counters = Counters()
        self.join = LabelJoin(capacity=config.join.capacity, max_age_s=config.join.max_age_s)
        period = config.ingest.window_period or config.ingest.window_length
        self.windower = TrialWindower(
            online.n_inputs, length=config.ingest.window_length, period=period
        )
        self.accuracy = SlidingAccuracy(config.publish.metrics_window)
        self.latency = LatencyTracker(20_000)
        self.trial_rate = RateMeter(5.0)
        self.bytes_rate = RateMeter(5.0)
        self.pending: deque[_Chunk] = deque()
        self.pending_trials = 0
        self.encoder = DeltaEncoder(
            online.published_layers(), encoding=config.publish.delta_encoding
        )
        self.deltas_since_snapshot = 0
        self.steps_since_delta = 0
        self.silent = np.zeros(len(online.sizes))
        self.spikes_per_trial = 0.0
        self.started_s = clock()
        self.last_metrics: dict[str, float] = {}
        self.ready = asyncio.Event()  # set once subscribed and announced
        self._have_work = asyncio.Event()  # pending trials or joined labels to learn from
        self._stop = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delgrad-worker")
        self._labelled: list[JoinedRows] = []  # joined, not yet learned from (per message)
        # learning jobs submitted to the worker, oldest first (at most MAX_LEARNING_IN_FLIGHT)
        self._learning: deque[asyncio.Future] = deque()
        # commands are rare; the bound guards against a flood (overflow is counted)
        self._commands: deque = deque(maxlen=1000)
        self._checkpoint_dir = Path(config.checkpoint.dir) if config.checkpoint.dir else None

    # -- lifecycle -----------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to drain and return (safe from signal handlers)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`request_stop`: subscribe, announce, process, drain, checkpoint."""
        for kind in ("events/in", "labels"):
            await self.transport.subscribe(topic(self.device, kind))
        await self.transport.subscribe(subscription(self.device, "cmd"))
        await self._publish(topic(self.device, "status"), Status("birth", 0.0, self._detail()))
        await self._publish_snapshot()
        self.ready.set()
        inference = asyncio.create_task(self._inference_loop(), name="inference")
        tasks = [
            asyncio.create_task(self._receive_loop(), name="receive"),
            asyncio.create_task(self._metrics_loop(), name="metrics"),
        ]
        if self._checkpoint_dir is not None:
            tasks.append(asyncio.create_task(self._checkpoint_loop(), name="checkpoint"))
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait(
            [stopper, inference, *tasks], return_when=asyncio.FIRST_COMPLETED
        )
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        # The inference loop is never cancelled mid-batch: it sees the stop flag
        # between batches, so an in-flight batch (and its learning step) completes.
        self._have_work.set()
        await asyncio.gather(inference, return_exceptions=True)
        try:
            await self._drain()
            if self._checkpoint_dir is not None:
                await self._in_worker(self.save_checkpoint)
            await self._publish_metrics()
            await self._publish(
                topic(self.device, "status"),
                Status("dead", self.clock() - self.started_s, "graceful shutdown"),
            )
            with contextlib.suppress(TransportError, TimeoutError):
                await self.transport.flush(timeout=5.0)
        finally:
            self._executor.shutdown(wait=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

    async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _drain(self) -> None:
        """Process what is already queued (in-flight batches) before shutting down."""
        while self.pending_trials and not self.paused:
            await self._process_batch()
        if not self.paused:
            await self._learn_from_labelled()
        await self._collect_learning(block=True)

    # -- publishing ------------------------------------------------------------------

    async def _publish(self, topic_str: str, msg: Any) -> None:
        payload = self.publisher.encode(topic_str, msg, timestamp_ns=time.time_ns())
        self.bytes_rate.add(self.clock(), len(payload))
        self.counters.inc("published.messages")
        self.counters.inc("published.bytes", len(payload))
        try:
            await self.transport.publish(topic_str, payload)
        except TransportError:
            self.counters.inc("dropped.publish_failed")

    def _detail(self) -> str:
        net = self.online.learner.net_forward
        sizes = "-".join(str(n) for n in [net.n_inputs, *(ly.n_out for ly in net.layers)])
        return json.dumps(
            {
                "network": sizes,
                "delay": net.layers[0].delay,
                "driver": self.config.driver.name,
                "mode": self.mode,
                "paused": self.paused,
                "param_seq": self.encoder.seq,
            }
        )

    async def _publish_snapshot(self) -> None:
        net = self.online.learner.net_forward
        snapshot = self.encoder.snapshot(
            layer_sizes=[net.n_inputs, *(ly.n_out for ly in net.layers)],
            neuron=WireNeuron(net.neuron.tau_s, net.neuron.tau_m, net.neuron.theta),
            delay_kinds=[ly.delay for ly in net.layers],
        )
        self.deltas_since_snapshot = 0
        await self._publish(topic(self.device, "params/latest"), snapshot)
        self._write_highwater()

    async def _after_steps(self, steps: int, layers: list | None = None) -> None:
        if not steps:
            return
        self.steps_since_delta += steps
        if self.steps_since_delta < self.config.publish.delta_every:
            return
        self.steps_since_delta = 0
        delta = self.encoder.delta(layers if layers is not None else self.online.published_layers())
        await self._publish(topic(self.device, "params/delta"), delta)
        self.deltas_since_snapshot += 1
        if self.deltas_since_snapshot >= self.config.publish.snapshot_every:
            await self._publish_snapshot()

    # -- ingest --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            incoming = await self.transport.recv()
            self.handle_incoming(incoming.topic, incoming.payload)
            await self._run_commands()
            # recv() returns at once while the inbox holds messages; yield once per
            # message so inference, metrics and publishing keep their turn under overload
            await asyncio.sleep(0)

    def handle_incoming(self, topic_str: str, payload: bytes) -> None:
        """Decode and route one message; malformed ones are counted and dropped."""
        now = self.clock()
        try:
            info = parse_topic(topic_str)
            envelope = decode(payload)
        except ProtocolError as exc:
            self.counters.inc(f"malformed.{type(exc).__name__}")
            return
        except DelgradError as exc:
            self.counters.inc(f"malformed.{type(exc).__name__}")
            return
        msg = envelope.message
        kind = str(info.kind)
        if kind == "events/in" and isinstance(msg, SpikeBatch):
            self._ingest_trials(msg, now)
        elif kind == "events/in" and isinstance(msg, SensorEvents):
            self._ingest_stream(msg, now)
        elif kind == "labels" and isinstance(msg, Labels):
            self.counters.inc("labels.received", len(msg.trial_ids))
            joined = self.join.join_labels(msg.trial_ids, msg.labels, now)
            if len(joined.labels):
                self._labelled.append(joined)
                self._have_work.set()
        elif kind == "cmd" and isinstance(msg, Command):
            if len(self._commands) >= self._commands.maxlen:  # type: ignore[operator]
                self.counters.inc("dropped.commands_overflow")
            else:
                self._commands.append((info.name or msg.name, msg))
        else:
            self.counters.inc("malformed.wrong_schema_for_topic")

    def _enqueue(self, ids: np.ndarray, t_in: np.ndarray, now: float) -> None:
        if len(ids) == 0:
            return
        self.pending.append(_Chunk(ids, t_in, now))
        self.pending_trials += len(ids)
        self.counters.inc("trials.received", len(ids))
        limit = self.config.ingest.max_pending_trials
        while self.pending_trials > limit:
            oldest = self.pending[0]
            excess = self.pending_trials - limit
            if len(oldest.ids) <= excess:
                self.pending.popleft()
                dropped = oldest.ids
            else:
                dropped = oldest.ids[:excess]
                self.pending[0] = _Chunk(
                    oldest.ids[excess:], oldest.t_in[excess:], oldest.received_s
                )
            self.pending_trials -= len(dropped)
            self.counters.inc("dropped.overload", len(dropped))
            # their labels would only wait for eviction: orphans now (bounded memory)
            self.join.drop_labels(dropped)
        self._have_work.set()

    def _ingest_trials(self, msg: SpikeBatch, now: float) -> None:
        scale = 1.0 / self.config.ingest.us_per_tau if msg.time_unit == "us" else 1.0
        result = first_spike_inputs(
            msg.offsets, msg.channels, msg.times, self.online.n_inputs, time_scale=scale
        )
        if result.ignored:
            self.counters.inc("dropped.bad_events", result.ignored)
        self._enqueue(np.asarray(msg.trial_ids, dtype=np.int64), result.t_in, now)

    def _ingest_stream(self, msg: SensorEvents, now: float) -> None:
        scale = 1.0 / self.config.ingest.us_per_tau if msg.time_unit == "us" else 1.0
        trials = self.windower.push(np.asarray(msg.channels), np.asarray(msg.times) * scale)
        if len(trials.window_ids):
            self._enqueue(np.asarray(trials.window_ids, dtype=np.int64), trials.t_in, now)

    # -- inference and learning ---------------------------------------------------------------

    def _take(self, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, rows, received = [], [], []
        taken = 0
        while self.pending and taken < limit:
            chunk = self.pending[0]
            take = min(limit - taken, len(chunk.ids))
            ids.append(chunk.ids[:take])
            rows.append(chunk.t_in[:take])
            received.append(np.full(take, chunk.received_s))
            if take == len(chunk.ids):
                self.pending.popleft()
            else:
                self.pending[0] = _Chunk(chunk.ids[take:], chunk.t_in[take:], chunk.received_s)
            taken += take
        self.pending_trials -= taken
        return np.concatenate(ids), np.concatenate(rows), np.concatenate(received)

    def _batch_limit(self) -> int:
        """Trials per driver run: ``max_batch``; without ``learning.refresh``, while
        training, at most one step's worth.

        A step learns from spike times observed with some earlier parameters; with
        ``refresh`` the learner re-observes stale trials before the step, otherwise a
        batch of many steps' worth would feed all but its first step stale times
        (measured in simulation, 300k trials, H30_WS: 93.5-95.1 % test accuracy with
        1050-trial batches against 96.2-97.5 % with fresh times).
        """
        limit = self.config.inference.max_batch
        if not self.online.refresh and self.mode == "train" and not self.paused:
            limit = min(limit, self.online.step_every)
        return limit

    async def _inference_loop(self) -> None:
        cfg = self.config.inference
        while not self._stop.is_set():
            await self._have_work.wait()
            if self._stop.is_set():
                return
            if self.paused:
                await asyncio.sleep(0.05)
                continue
            if not self.pending_trials:
                self._have_work.clear()
                await self._learn_from_labelled()  # labels that came after their trials
                continue
            if self.pending_trials < self._batch_limit():
                # latency budget: wait a little for a fuller batch
                oldest = self.pending[0].received_s if self.pending else self.clock()
                wait_s = cfg.max_latency_ms / 1000.0 - (self.clock() - oldest)
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, cfg.max_latency_ms / 1000.0))
            await self._process_batch()

    async def _process_batch(self) -> None:
        await self._collect_learning(block=False)
        if not self.pending_trials:
            return
        ids, t_in, received = self._take(self._batch_limit())
        observation, version = await self._in_worker(self.online.observe, t_in)
        out = observation.output
        predicted = predict(out)
        if self.config.publish.predictions:
            await self._publish(
                topic(self.device, "predictions"),
                Predictions(ids, predicted, out.astype(np.float32)),
            )
        now = self.clock()
        self.latency.add(now - received)
        self.trial_rate.add(now, len(ids))
        self.counters.inc("trials.processed", len(ids))
        self.silent = np.array([float(np.isinf(t).mean()) for t in observation.times])
        self.spikes_per_trial = float(sum(np.isfinite(t).sum() for t in observation.times)) / len(
            ids
        )
        rows = self.online.pack(t_in, observation, version)
        joined = self.join.join_trials(ids, rows, now)
        if len(joined.labels):
            self._labelled.append(joined)
        self.join.expire(now)
        await self._learn_from_labelled()

    def _learn_job(self, rows: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
        """Worker thread: learn, and copy the parameters a delta is made from (so
        the event loop never reads parameters a later step is changing)."""
        report = self.online.learn_rows(rows, labels)
        layers = None
        if report.steps + report.bumps:
            layers = [{k: v.copy() for k, v in ly.items()} for ly in self.online.published_layers()]
        return report, layers

    async def _learn_from_labelled(self) -> None:
        if not self._labelled:
            return
        joined, self._labelled = self._labelled, []
        if len(joined) == 1:
            rows, labels = joined[0].rows, joined[0].labels
        else:
            rows = np.concatenate([j.rows for j in joined])
            labels = np.concatenate([j.labels for j in joined])
        out = self.online.output_times(rows)
        n_out = out.shape[1]
        valid = (labels >= 0) & (labels < n_out)
        if not valid.all():
            self.counters.inc("dropped.bad_label", int((~valid).sum()))
            rows, labels, out = rows[valid], labels[valid], out[valid]
            if not len(labels):
                return
        result = self.online.learner.loss(out, labels)
        self.accuracy.add(result.correct, result.loss)
        if self.mode != "train" or self.paused:
            return
        # Not awaited: the worker runs this step, then the next batch's driver run
        # (queued behind it, so parameters still change between batches only),
        # while the event loop ingests and joins. Results are taken in order.
        self._learning.append(
            asyncio.get_running_loop().run_in_executor(
                self._executor, self._learn_job, rows, labels
            )
        )
        if len(self._learning) > MAX_LEARNING_IN_FLIGHT:
            await self._collect_learning(block=True, keep=MAX_LEARNING_IN_FLIGHT)

    async def _collect_learning(self, *, block: bool, keep: int = 0) -> None:
        """Account finished learning jobs in order and publish their deltas; with
        ``block``, wait until at most ``keep`` are left."""
        while self._learning and (
            self._learning[0].done() or (block and len(self._learning) > keep)
        ):
            report, layers = await self._learning.popleft()
            self.counters.inc("learning.steps", report.steps)
            self.counters.inc("learning.bumps", report.bumps)
            await self._after_steps(report.steps + report.bumps, layers)

    # -- metrics -------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The current metrics (also what the live display shows)."""
        now = self.clock()
        values: dict[str, float | None] = {
            "accuracy": self.accuracy.accuracy,
            "loss": self.accuracy.loss,
            "labelled_in_window": float(self.accuracy.count),
            "samples_per_s": self.trial_rate.rate(now),
            "bytes_published_per_s": self.bytes_rate.rate(now),
            "spikes_per_trial": self.spikes_per_trial,
            "queue.pending_trials": float(self.pending_trials),
            "queue.learning_buffer": float(self.online.buffered),
            "learning.refreshed_trials": float(self.online.refreshed),
            "uptime_s": now - self.started_s,
            "param_seq": float(self.encoder.seq),
            "mode_train": float(self.mode == "train"),
            "paused": float(self.paused),
        }
        for index, value in enumerate(self.silent):
            values[f"silent.layer{index}"] = float(value)
        for key, value in self.latency.percentiles().items():
            values[f"latency.{key}"] = value
        for key, value in self.join.counters().items():
            values[f"join.{key}"] = float(value)
        values["queue.join_waiting"] = float(len(self.join))
        stats = getattr(self.transport, "stats", None)
        if stats is not None:
            for key, value in vars(stats).items():
                values[f"transport.{key}"] = float(value)
        for key, value in self.counters.as_dict().items():
            values[key] = float(value)
        # a statistic of nothing (no labelled trial yet) is left out, never NaN or 0
        clean = {k: float(v) for k, v in values.items() if v is not None}
        self.last_metrics = clean
        return clean

    async def _publish_metrics(self) -> None:
        values = {k: v for k, v in self.metrics().items() if np.isfinite(v)}
        await self._publish(topic(self.device, "metrics"), Metrics(self.online.steps, values))

    async def _metrics_loop(self) -> None:
        reconnects = self._reconnects()
        while True:
            await asyncio.sleep(self.config.publish.metrics_period_s)
            self.join.expire(self.clock())
            now_reconnects = self._reconnects()
            if now_reconnects != reconnects:
                # A restarted broker without persistence lost the retained status and
                # snapshot: announce again, so late subscribers find both.
                reconnects = now_reconnects
                await self._publish(
                    topic(self.device, "status"),
                    Status("alive", self.clock() - self.started_s, self._detail()),
                )
                await self._publish_snapshot()
            await self._publish_metrics()

    def _reconnects(self) -> int:
        stats = getattr(self.transport, "stats", None)
        return int(getattr(stats, "reconnects", 0))

    # -- commands ------------------------------------------------------------------------

    async def _run_commands(self) -> None:
        while self._commands:
            name, command = self._commands.popleft()
            try:
                result = await self._command(name, dict(command.args))
                reply = Reply(command.correlation_id, True, result, "")
            except (DelgradError, KeyError, TypeError, ValueError) as exc:
                reply = Reply(command.correlation_id, False, {}, f"{type(exc).__name__}: {exc}")
            await self._publish(topic(self.device, "cmd/reply", name=name), reply)

    async def _command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "pause":
            self.paused = True
        elif name == "resume":
            self.paused = False
            self._have_work.set()
        elif name == "mode":
            mode = args.get("mode")
            if mode not in ("train", "infer"):
                raise ParameterError(f"mode must be 'train' or 'infer', got {mode!r}")
            self.mode = mode
        elif name == "lr":
            scale = args.get("scale")
            if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
                raise ParameterError(f"lr needs a number scale > 0, got {scale!r}")
            self.online.learner.optimizer.lr_scale = float(scale)
        elif name == "snapshot":
            await self._publish_snapshot()
        elif name == "checkpoint":
            if self._checkpoint_dir is None:
                raise ParameterError("no checkpoint folder configured")
            await self._collect_learning(block=True)
            path = await self._in_worker(self.save_checkpoint)
            return {"path": str(path)}
        elif name == "reset":
            if self._checkpoint_dir is None:
                raise ParameterError("no checkpoint folder configured")
            await self._collect_learning(block=True)
            await self._in_worker(self.load_checkpoint)
            await self._publish_snapshot()
        elif name == "status":
            pass
        else:
            raise ParameterError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
        return {
            "mode": self.mode,
            "paused": self.paused,
            "param_seq": self.encoder.seq,
            "steps": self.online.steps,
        }

    # -- checkpoints ---------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint.period_s)
            await self._collect_learning(block=True)
            await self._in_worker(self.save_checkpoint)

    def _service_state(self) -> dict[str, Any]:
        return {
            "param_seq": self.encoder.seq,
            "publisher_seq": self.publisher.sequences(),
            "steps": self.online.steps,
            "bumps": self.online.bumps,
            "counters": self.counters.as_dict(),
            "mode": self.mode,
        }

    def save_checkpoint(self) -> Path:
        """Write learner and service state atomically (worker thread)."""
        assert self._checkpoint_dir is not None
        arrays = self.online.learner.state_arrays()
        state = self._service_state()
        arrays["service"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        path = atomic_write(
            self._checkpoint_dir / CHECKPOINT_NAME, lambda fh: np.savez(fh, **arrays)
        )
        self.counters.inc("checkpoints.written")
        return path

    def _write_highwater(self) -> None:
        if self._checkpoint_dir is None:
            return
        state = {
            "param_seq": self.encoder.seq
            + self.config.publish.snapshot_every * self.config.publish.delta_every
            + 1
        }
        atomic_write(
            self._checkpoint_dir / HIGHWATER_NAME, lambda fh: fh.write(json.dumps(state).encode())
        )

    def load_checkpoint(self) -> bool:
        """Restore the newest checkpoint if there is one (worker thread). Returns whether."""
        if self._checkpoint_dir is None:
            return False
        path = self._checkpoint_dir / CHECKPOINT_NAME
        if not path.is_file():
            return False
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        state = json.loads(bytes(arrays.pop("service")).decode())
        self.online.learner.load_state_arrays(arrays)
        self.online.steps = int(state["steps"])
        self.online.bumps = int(state["bumps"])
        self.mode = state.get("mode", self.mode)
        seq = int(state["param_seq"])
        high = self._checkpoint_dir / HIGHWATER_NAME
        if high.is_file():
            seq = max(seq, int(json.loads(high.read_text())["param_seq"]))
        # Continue above every number published before the restart: the snapshot
        # published at start then re-syncs every subscriber.
        self.encoder = DeltaEncoder(
            self.online.published_layers(),
            seq=seq + 1,
            encoding=self.config.publish.delta_encoding,
        )
        self.publisher.restore_sequences(
            {t: int(v) + SEQ_RESERVE for t, v in state["publisher_seq"].items()}
        )
        for key, value in state["counters"].items():
            self.counters.inc(key, int(value))
        return True
