"""A light fleet: N simulated devices publishing the real message kinds, no learning.

Each device publishes, through one shared MQTT connection, what a ``delgrad run``
publishes: a ``metrics`` message every ``metrics_period_s`` (the ~70 figures of a real
device: accuracy, loss, throughput, latency percentiles, queues, health flags and
the cumulative counters, moving as a device's would), the retained ``alive`` status
with a ``heartbeat`` counter every ``heartbeat_period_s``, and, with a
``delta_rate_per_s`` above zero, a retained parameter snapshot then ``params/delta``
messages of a 4-30-3 network. Devices start spread over one period (no thundering
herd). :meth:`FleetSimulator.silence` stops devices, as a device that died without
a last will would (the monitor must find them stale). Used by ``delgrad bench fleet``
and the exporter's tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Iterable

import numpy as np

from delgrad.protocols import (
    DeltaEncoder,
    Metrics,
    NeuronParams,
    Status,
    Transport,
    encode,
    topic,
)
from delgrad.runtime.service import HEALTH_CONDITIONS

__all__ = ["FleetSimulator"]

_SIZES = (4, 30, 3)
_KINDS = ("synaptic", "synaptic")
_JOIN = ("duplicate_labels", "duplicate_trials", "late_labels", "missing_labels", "orphan_labels")
_TRANSPORT = (
    "coalesced_out",
    "dropped_in_lossy",
    "dropped_in_reliable",
    "dropped_out_lossy",
    "dropped_out_reliable",
    "refused_oversize",
    "stalls",
)


class FleetSimulator:
    """N devices on one transport (see the module doc).

    Args:
        transport: A connected transport (one connection for the whole fleet).
        n_devices: Devices, named ``{prefix}0000`` ...
        metrics_period_s: Seconds between a device's metrics messages.
        heartbeat_period_s: Seconds between a device's heartbeats (retained status).
        delta_rate_per_s: Parameter deltas per second per device (0: no parameters).
        prefix: Device id prefix.
        degraded: Share of devices whose accuracy is low and whose ``degraded``
            health flag is set (so "worst first" has something to show).
        seed: Seed of the figures' noise.
    """

    def __init__(
        self,
        transport: Transport,
        n_devices: int,
        *,
        metrics_period_s: float = 2.0,
        heartbeat_period_s: float = 5.0,
        delta_rate_per_s: float = 0.0,
        prefix: str = "sim",
        degraded: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.transport = transport
        self.devices = [f"{prefix}{i:04d}" for i in range(n_devices)]
        self.metrics_period_s = float(metrics_period_s)
        self.heartbeat_period_s = float(heartbeat_period_s)
        self.delta_rate_per_s = float(delta_rate_per_s)
        self._rng = np.random.default_rng(seed)
        self._degraded = set(self._rng.permutation(n_devices)[: round(degraded * n_devices)])
        self._seq: dict[str, int] = {}
        self._silent: set[int] = set()
        self._beats = [0] * n_devices
        self._encoders: list[DeltaEncoder] = []
        self.started_s = time.time()
        #: Wall-clock time of each device's last message (s since the epoch).
        self.last_sent_s: dict[str, float] = {}
        #: Wall-clock time of each device's last heartbeat (status).
        self.last_beat_s: dict[str, float] = {}
        self.published = 0

    async def _send(self, i: int, kind: str, msg: object, *, retain: bool | None = None) -> None:
        device = self.devices[i]
        t = topic(device, kind)
        seq = self._seq.get(t, 0)
        self._seq[t] = seq + 1
        payload = encode(msg, seq=seq, sender=device)  # type: ignore[arg-type]
        await self.transport.publish(t, payload, retain=retain)
        self.last_sent_s[device] = time.time()
        self.published += 1

    def metrics(self, i: int, now_s: float) -> dict[str, float]:
        """The figures of device ``i`` at ``now_s`` (what its metrics message holds)."""
        up = max(0.0, now_s - self.started_s) + 60.0
        rate = 500.0 + 10.0 * (i % 7)
        trials = rate * up
        bad = i in self._degraded
        acc = (0.55 if bad else 0.93) + 0.01 * math.sin(up / 30 + i)
        values = {
            "accuracy": acc,
            "loss": 0.2 + (1 - acc),
            "labelled_in_window": 5000.0,
            "samples_per_s": rate + self._rng.normal(0, 5),
            "bytes_published_per_s": 800.0,
            "spikes_per_trial": 3.1,
            "uptime_s": up,
            "param_seq": float(int(up * self.delta_rate_per_s)),
            "mode_train": 1.0,
            "paused": 0.0,
            "broker.outage_s": 0.0,
            "queue.pending_trials": 0.0,
            "queue.learning_buffer": 12.0,
            "queue.join_waiting": 3.0,
            "join.waiting_trials": 2.0,
            "join.waiting_labels": 1.0,
            "latency.p50_ms": 4.0 + (i % 5),
            "latency.p90_ms": 8.0 + (i % 5),
            "latency.p99_ms": 15.0 + (i % 11),
            "latency.max_ms": 30.0 + (i % 13),
            "degradation.accuracy": acc,
            "degradation.reference": 0.93,
            "degradation.silent": 0.01,
            "degradation.silent_reference": 0.01,
            "scored.trials": trials,
            "scored.correct": trials * acc,
            "trials.received": trials,
            "trials.processed": trials,
            "trials.silent_output": trials * 0.01,
            "labels.received": trials,
            "events.received": trials * 30,
            "join.trials_in": trials,
            "join.labels_in": trials,
            "join.joined": trials,
            "learning.steps": trials / 10,
            "learning.bumps": 0.0,
            "learning.refreshed_trials": trials,
            "published.messages": up * 3,
            "published.bytes": up * 800,
            "transport.published": up * 3,
            "transport.received": up * 100,
            "transport.reconnects": 0.0,
            "transport.down_s": 0.0,
            "health.warnings": float(bad),
        }
        for k in range(3):
            values[f"accuracy.class{k}"] = acc
        for k in range(2):
            values[f"silent.layer{k}"] = 0.1 * (k + 1)
        for name in HEALTH_CONDITIONS:
            values[f"health.{name}"] = float(bad and name == "degraded")
        for name in _JOIN:
            values[f"join.{name}"] = 0.0
        for name in _TRANSPORT:
            values[f"transport.{name}"] = 0.0
        return values

    def silence(self, devices: Iterable[str]) -> None:
        """Stop publishing for these devices (no last will: they go quiet)."""
        index = {d: i for i, d in enumerate(self.devices)}
        self._silent.update(index[d] for d in devices)

    async def _heartbeat(self, i: int, state: str = "alive") -> None:
        self._beats[i] += 1
        detail = json.dumps(
            {
                "network": "4-30-3",
                "mode": "train",
                "heartbeat": self._beats[i],
                "heartbeat_period_s": self.heartbeat_period_s,
            },
            separators=(",", ":"),
        )
        up = time.time() - self.started_s + 60.0
        await self._send(i, "status", Status(state, up, detail))
        self.last_beat_s[self.devices[i]] = time.time()

    def _network(self, i: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(i)
        return [
            {"w": rng.normal(0, 1, (a, b)), "d": rng.uniform(0.1, 1.0, (a, b))}
            for a, b in itertools.pairwise(_SIZES)
        ]

    async def run(self, stop: asyncio.Event, tick_s: float = 0.05) -> None:
        """Publish until ``stop`` is set (births and snapshots first, then periodic)."""
        n = len(self.devices)
        now = time.monotonic()
        offsets = self._rng.uniform(0, 1, n)
        next_metrics = now + offsets * self.metrics_period_s
        next_beat = now + offsets * self.heartbeat_period_s
        delta_period = 1 / self.delta_rate_per_s if self.delta_rate_per_s > 0 else math.inf
        next_delta = now + offsets * min(delta_period, 1e9)
        for i in range(n):
            await self._heartbeat(i, "birth")
            if self.delta_rate_per_s > 0:
                enc = DeltaEncoder(self._network(i), seq=0, encoding="int8")
                self._encoders.append(enc)
                snap = enc.snapshot(layer_sizes=_SIZES, neuron=NeuronParams(), delay_kinds=_KINDS)
                await self._send(i, "params/latest", snap)
        while not stop.is_set():
            now = time.monotonic()
            wall = time.time()
            for i in np.flatnonzero(next_metrics <= now).tolist():
                next_metrics[i] += self.metrics_period_s
                if i not in self._silent:
                    values = self.metrics(i, wall)
                    step = Metrics(int(values["learning.steps"]), values)
                    await self._send(i, "metrics", step)
            for i in np.flatnonzero(next_beat <= now).tolist():
                next_beat[i] += self.heartbeat_period_s
                if i not in self._silent:
                    await self._heartbeat(i)
            for i in np.flatnonzero(next_delta <= now).tolist():
                next_delta[i] += delta_period
                if i not in self._silent:
                    enc = self._encoders[i]
                    moved = [
                        {k: v + self._rng.normal(0, 0.01, v.shape) for k, v in lay.items()}
                        for lay in enc.view()
                    ]
                    await self._send(i, "params/delta", enc.delta(moved))
            await asyncio.sleep(tick_s)
