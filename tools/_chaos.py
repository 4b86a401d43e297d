"""Chaos run: a seeded storm of valid, invalid and hostile input against ``delgrad run``.

A Mosquitto broker and a ``delgrad run`` process on loopback (checkpoints in a
temporary folder); then ``events`` random events, each one of

* a valid command (pause, resume, mode, lr, snapshot, checkpoint, reset, status);
* a hostile or invalid one: the eight cases of issue 10 (a 1,024-character mode,
  ``lr`` 1e308 or NaN, a body name other than the topic's, unknown arguments,
  garbage on a command topic, a command an hour old) and QoS 1 duplicates
  (the same correlation id twice, ``reset`` included);
* a retained ``pause`` or ``lr`` (cleared again after the check);
* malformed messages on ``events/in`` and ``labels``; an oversize one (above the
  device's ``broker.max_packet_bytes``) and one of maximum size;
* a burst of labelled trials (learning goes on);
* a broker restart (SIGKILL, start on the same port) or a SIGKILL of the service
  and a restart from its checkpoints (spread at random over the run, as many as
  asked).

After every event the invariants are checked and every violation is recorded:
the device answers a ``status`` command within ``status_timeout_s`` (after a
restart: once it announced itself, within ``recover_timeout_s``); its state
(mode, paused) is what the valid commands made it; hostile commands are refused
(``ok = false``); every parameter snapshot holds finite values; the newest
checkpoint loads; envelope sequence numbers per topic never go backwards and a
number is never reused for a different message; counters never exceed what was
sent (``trials.received``); the service's RSS stays under ``rss_bound_mb``; and
learning goes on (steps grow after each burst, checked every ``learn_every``
events in train mode). Returns the figures (events by kind, checks, violations,
recovery times, RSS).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from delgrad.errors import DelgradError
from delgrad.protocols import (
    Command,
    Labels,
    Metrics,
    MqttTransport,
    ParameterSnapshot,
    Publisher,
    Reply,
    SpikeBatch,
    Status,
    decode,
    encode,
    subscription,
    topic,
)
from delgrad.runtime.service import checkpoint_paths, checkpoint_problem
from delgrad.tools._mosquitto import Mosquitto
from delgrad.tools._toml import write_toml

DEVICE = "chaos"
DELGRAD = [sys.executable, "-m", "delgrad.tools"]
PAGE = os.sysconf("SC_PAGE_SIZE")
#: The device's packet limit in a chaos run (small, so an oversize message is cheap).
MAX_PACKET_BYTES = 1 << 20


@dataclass
class ChaosReport:
    """The figures of a chaos run."""

    seed: int
    events: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    violations: list[str] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    trials_sent: int = 0
    stop_s: float = 0.0  # SIGTERM to exit at the end
    wall_s: float = 0.0
    final: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """One JSON-ready dict."""
        return {
            "seed": self.seed,
            "events": sum(self.events.values()),
            "by_kind": dict(sorted(self.events.items())),
            "invariant_checks": self.checks,
            "violations": len(self.violations),
            "first_violations": self.violations[:10],
            "recover_s_max": round(max(self.recover_s, default=0.0), 2),
            "recover_s_median": round(float(np.median(self.recover_s)) if self.recover_s else 0, 2),
            "rss_mb_max": round(max(self.rss_mb, default=0.0), 1),
            "rss_mb_first": round(self.rss_mb[0] if self.rss_mb else 0.0, 1),
            "trials_sent": self.trials_sent,
            "learning_steps": self.final.get("learning.steps", 0.0),
            "rejected_steps": self.final.get("learning.rejected_steps", 0.0),
            "sigterm_to_exit_s": round(self.stop_s, 2),
            "wall_s": round(self.wall_s, 1),
        }


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class _Observer:
    """Subscribes to everything of the device; checks sequence numbers on arrival."""

    def __init__(self, port: int, report: ChaosReport) -> None:
        self.transport = MqttTransport("127.0.0.1", port, client_id="chaos-observer")
        self.publisher = Publisher(self.transport, "chaos-operator")
        self.report = report
        self.replies: dict[str, list[Reply]] = {}
        self.births = 0
        self.metrics: dict[str, float] = {}
        self._seen: dict[tuple[str, int], bytes] = {}
        self._top: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Observer:
        await self.transport.connect()
        await self.transport.subscribe(subscription(DEVICE), qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.transport.close()

    def _violation(self, text: str) -> None:
        self.report.violations.append(text)

    async def _collect(self) -> None:
        while True:
            msg = await self.transport.recv()
            try:
                env = decode(msg.payload)
            except DelgradError:
                continue  # our own hostile messages on the command topics
            if env.sender != DEVICE:
                continue
            self._check_seq(msg.topic, env.seq, msg.payload, retained=msg.retain)
            body = env.message
            if isinstance(body, Reply):
                self.replies.setdefault(body.correlation_id, []).append(body)
            elif isinstance(body, Status) and body.state == "birth" and not msg.retain:
                self.births += 1
            elif isinstance(body, Metrics):
                self.metrics = dict(body.values)
            elif isinstance(body, ParameterSnapshot):
                for layer in body.layers:
                    for name, tensor in layer.items():
                        if not np.all(np.isfinite(tensor)):
                            self._violation(f"snapshot {body.seq}: tensor {name} not finite")

    def _check_seq(self, topic_str: str, seq: int, payload: bytes, *, retained: bool) -> None:
        digest = hashlib.blake2b(payload, digest_size=8).digest()
        earlier = self._seen.get((topic_str, seq))
        if earlier is not None:
            if earlier != digest:
                self._violation(f"{topic_str}: seq {seq} reused for a different message")
            return  # a retained copy or a QoS 1 duplicate of the same message
        self._seen[(topic_str, seq)] = digest
        if len(self._seen) > 400_000:  # bounded memory in long runs: forget the oldest half
            for key in list(self._seen)[: len(self._seen) // 2]:
                del self._seen[key]
        top = self._top.get(topic_str, -1)
        if seq < top and not retained:
            self._violation(f"{topic_str}: seq went back from {top} to {seq}")
        self._top[topic_str] = max(top, seq)

    async def command(
        self, name: str, cid: str, args: dict[str, Any] | None = None, **publish: Any
    ) -> None:
        await self.publisher.publish(
            topic(DEVICE, "cmd", name=name), Command(name, cid, args or {}), **publish
        )

    async def raw(self, kind: str, payload: bytes, *, name: str | None = None, **kw: Any) -> None:
        await self.transport.publish(topic(DEVICE, kind, name=name), payload, **kw)

    async def reply(self, cid: str, timeout_s: float) -> Reply | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.replies.get(cid)
            if got:
                return got[-1]
            await asyncio.sleep(0.01)
        return None


class _Runtime:
    """The ``delgrad run`` process, restartable."""

    def __init__(self, folder: Path, broker_url: str) -> None:
        self.folder = folder
        self.config = write_toml(
            folder / "run.toml",
            {
                "device": DEVICE,
                "broker": {"url": broker_url, "max_packet_bytes": MAX_PACKET_BYTES},
                "learning": {"step_every": 50},
                "publish": {
                    "metrics_period_s": 0.5,
                    "heartbeat_period_s": 1.0,
                    "snapshot_every": 10,
                },
                "checkpoint": {"dir": str(folder / "checkpoints"), "period_s": 3.0},
                "commands": {"max_age_s": 60.0},
            },
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.folder / "runtime.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*DELGRAD, "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -1  # it did not stop within the bound
        return self.proc.returncode


def _trials(rng: random.Random, first_id: int, count: int) -> tuple[SpikeBatch, Labels]:
    """Yin-Yang-like trials: four input times in 0.15 .. 2 tau_s and a class 0 .. 2."""
    gen = np.random.default_rng(rng.randrange(1 << 30))
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    xy = gen.uniform(0, 1, (count, 2))
    times = 0.15 + 1.85 * np.concatenate([xy, 1 - xy], axis=1)
    labels = (np.floor(xy[:, 0] * 3)).astype(np.int32).clip(0, 2)
    trials = [(np.arange(4), times[i]) for i in range(count)]
    return SpikeBatch.from_trials(ids, trials), Labels(ids, labels)


def _raw_command(name: str, cid: str, args: dict[str, Any], **envelope: Any) -> bytes:
    """A command packed by hand (values the encoder would refuse: NaN, inf)."""
    env = {
        "schema": "command",
        "major": 1,
        "seq": envelope.get("seq", 0),
        "timestamp_ns": envelope.get("timestamp_ns", time.time_ns()),
        "sender": "chaos-operator",
        "body": {"name": envelope.get("body_name", name), "correlation_id": cid, "args": args},
    }
    packed: bytes = msgpack.packb(env, use_bin_type=True)
    return packed


class _Chaos:
    def __init__(
        self,
        observer: _Observer,
        runtime: _Runtime,
        broker: Mosquitto,
        report: ChaosReport,
        rng: random.Random,
        *,
        status_timeout_s: float,
        recover_timeout_s: float,
        rss_bound_mb: float,
    ) -> None:
        self.obs = observer
        self.rt = runtime
        self.broker = broker
        self.report = report
        self.rng = rng
        self.status_timeout_s = status_timeout_s
        self.recover_timeout_s = recover_timeout_s
        self.rss_bound_mb = rss_bound_mb
        self.expected: dict[str, Any] | None = None  # mode, paused as the commands made them
        self.cid = 0
        self.next_trial = 0
        self.restart_s = 0.0  # the last restart's time until the birth message

    def new_cid(self) -> str:
        self.cid += 1
        return f"c{self.cid}"

    def violation(self, text: str) -> None:
        self.report.violations.append(f"event {sum(self.report.events.values())}: {text}")

    # -- invariants ----------------------------------------------------------------

    async def status(self, timeout_s: float) -> dict[str, Any] | None:
        cid = self.new_cid()
        await self.obs.command("status", cid)
        reply = await self.obs.reply(cid, timeout_s)
        return None if reply is None or not reply.ok else dict(reply.result)

    def _take(self, result: dict[str, Any]) -> None:
        if "mode" in result:  # a status (checkpoint replies carry only the path)
            self.expected = {"mode": result.get("mode"), "paused": result.get("paused")}

    async def check(self, *, recovering: bool = False) -> None:
        self.report.checks += 1
        started = time.monotonic()
        result = await self.status(self.status_timeout_s)
        if recovering:
            while result is None and time.monotonic() - started < self.recover_timeout_s:
                result = await self.status(self.status_timeout_s)
            self.report.recover_s.append(time.monotonic() - started + self.restart_s)
            self.restart_s = 0.0
        if result is None:
            self.violation("no status reply in time")
            return
        if recovering or self.expected is None:
            self._take(result)  # a restart resumes the checkpoint's mode, unpaused
        elif {"mode": result.get("mode"), "paused": result.get("paused")} != self.expected:
            self.violation(f"state {result} differs from the commands' {self.expected}")
            self._take(result)
        folder = self.rt.folder / "checkpoints"
        newest = next((p for p in checkpoint_paths(folder, 3) if p.is_file()), None)
        if newest is not None:
            problem = checkpoint_problem(newest)
            if problem is not None and not newest.name.startswith("."):
                self.violation(f"newest checkpoint {newest.name} does not load: {problem}")
        received = self.obs.metrics.get("trials.received", 0.0)
        if received > self.report.trials_sent:
            self.violation(f"trials.received {received} > trials sent {self.report.trials_sent}")
        if self.rt.proc is not None:
            rss = _rss_mb(self.rt.proc.pid)
            if rss:
                self.report.rss_mb.append(rss)
                if rss > self.rss_bound_mb:
                    self.violation(f"RSS {rss:.0f} MB above the bound {self.rss_bound_mb:.0f} MB")
            if self.rt.proc.poll() is not None:
                self.violation(f"service exited with {self.rt.proc.returncode}")
                self.rt.start()

    async def learning_goes_on(self) -> None:
        """Train mode, unpaused, a burst: the step count must grow within 30 s."""
        for name, args in (("resume", {}), ("mode", {"mode": "train"}), ("lr", {"scale": 1.0})):
            cid = self.new_cid()
            await self.obs.command(name, cid, args)
            reply = await self.obs.reply(cid, 5.0)
            if reply is not None and reply.ok:
                self._take(dict(reply.result))
        before = self.obs.metrics.get("learning.steps", 0.0)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            await self.trials(400)
            await asyncio.sleep(1.0)
            if self.obs.metrics.get("learning.steps", 0.0) > before:
                return
        self.violation(f"learning stalled at {before} steps")

    # -- events ----------------------------------------------------------------------

    async def trials(self, count: int) -> None:
        batch, labels = _trials(self.rng, self.next_trial, count)
        self.next_trial += count
        self.report.trials_sent += count
        await self.obs.publisher.publish(topic(DEVICE, "events/in"), batch)
        await self.obs.publisher.publish(topic(DEVICE, "labels"), labels)

    async def valid_command(self) -> None:
        choices: list[tuple[str, dict[str, Any]]] = [
            ("pause", {}),
            ("resume", {}),
            ("resume", {}),
            ("mode", {"mode": "infer"}),
            ("mode", {"mode": "train"}),
            ("mode", {"mode": "train"}),
            ("lr", {"scale": self.rng.choice([0.5, 1.0, 2.0])}),
            ("snapshot", {}),
            ("checkpoint", {}),
            ("reset", {}),
            ("status", {}),
        ]
        name, args = self.rng.choice(choices)
        cid = self.new_cid()
        await self.obs.command(name, cid, args)
        reply = await self.obs.reply(cid, 10.0)
        if reply is None:
            self.violation(f"valid command {name} unanswered")
        elif reply.ok:
            self._take(dict(reply.result))
        elif name != "reset":  # reset may find no checkpoint yet
            self.violation(f"valid command {name} {args} refused: {reply.error}")

    async def hostile_command(self) -> None:
        cid = self.new_cid()
        kind = self.rng.randrange(7)
        if kind == 0:  # case 1
            await self.obs.command("mode", cid, {"mode": "x" * 1024})
        elif kind == 1:  # case 2
            await self.obs.command("lr", cid, {"scale": 1e308})
        elif kind == 2:  # case 7: NaN does not even encode
            await self.obs.raw("cmd", _raw_command("lr", cid, {"scale": math.nan}), name="lr")
        elif kind == 3:  # case 7: body name differs from the topic
            await self.obs.raw(
                "cmd", _raw_command("pause", cid, {}, body_name="status"), name="pause"
            )
        elif kind == 4:  # case 7: unknown arguments
            await self.obs.command("pause", cid, {"hard": True, "x": "y" * 100})
        elif kind == 5:  # case 5: an hour old
            old = time.time_ns() - 3600 * 10**9
            await self.obs.raw(
                "cmd", _raw_command("pause", cid, {}, timestamp_ns=old), name="pause"
            )
        else:  # undecodable bytes on a command topic (answered with cid "unknown")
            await self.obs.raw("cmd", os.urandom(self.rng.randrange(1, 300)), name="reset")
            return
        reply = await self.obs.reply(cid, self.status_timeout_s)
        if reply is None:
            self.violation(f"hostile command {kind} unanswered")
        elif reply.ok:
            self.violation(f"hostile command {kind} accepted")

    async def retained_command(self) -> None:
        cid = self.new_cid()
        name, args = self.rng.choice([("pause", {}), ("lr", {"scale": 50.0})])
        await self.obs.command(name, cid, args, retain=True)
        reply = await self.obs.reply(cid, self.status_timeout_s)
        if reply is None or reply.ok:
            self.violation(f"retained {name} {'accepted' if reply else 'unanswered'}")
        await self.obs.raw("cmd", b"", name=name, retain=True, qos=1)  # clear it

    async def duplicate_command(self) -> None:
        cid = self.new_cid()
        name = self.rng.choice(["reset", "checkpoint", "pause", "resume"])
        payload = encode(Command(name, cid, {}), seq=self.cid, sender="chaos-operator")
        for _ in range(2):  # a QoS 1 redelivery carries the same bytes
            await self.obs.raw("cmd", payload, name=name, qos=1)
        deadline = time.monotonic() + 10.0
        while len(self.obs.replies.get(cid, [])) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        replies = self.obs.replies.get(cid, [])
        if len(replies) < 2:
            self.violation(f"duplicate {name}: {len(replies)} replies")
        elif replies[-1].ok:
            self._take(dict(replies[-1].result))

    async def malformed(self) -> None:
        kind = self.rng.choice(["events/in", "labels"])
        good = encode(Labels(np.array([1]), np.array([0])), seq=0, sender="x")
        payload = self.rng.choice(
            [
                os.urandom(self.rng.randrange(0, 2000)),
                good[: len(good) // 2],
                encode(Status("alive", 1.0, ""), seq=0, sender="x"),
                bytes(good).replace(b"\x01", b"\x09", 1),
                b"",
            ]
        )
        await self.obs.raw(kind, payload, qos=self.rng.choice([0, 1]))

    async def oversize(self, *, over: bool) -> None:
        size = MAX_PACKET_BYTES * 2 if over else MAX_PACKET_BYTES - 4096
        await self.obs.raw("events/in", os.urandom(16) + bytes(size - 16), qos=0)

    async def restart_broker(self) -> None:
        self.broker.kill()
        await asyncio.sleep(self.rng.uniform(0.1, 1.0))
        started = time.monotonic()
        await asyncio.to_thread(self.broker.start)
        await self.obs.transport.wait_connected(timeout=30)
        self.restart_s = time.monotonic() - started

    async def kill_runtime(self) -> None:
        births = self.obs.births
        await asyncio.to_thread(self.rt.kill)
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        started = time.monotonic()
        self.rt.start()
        deadline = started + self.recover_timeout_s
        while self.obs.births <= births and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.restart_s = time.monotonic() - started


async def run_chaos(
    *,
    events: int = 2000,
    broker_restarts: int = 20,
    kills: int = 10,
    seed: int = 0,
    status_timeout_s: float = 2.0,
    recover_timeout_s: float = 120.0,
    rss_bound_mb: float = 1024.0,
    learn_every: int = 100,
    folder: Path | None = None,
) -> ChaosReport:
    """Run the chaos storm and check the invariants after every event.

    Args:
        events: events in all (broker restarts and kills included).
        broker_restarts, kills: how many of them restart the broker / SIGKILL the service.
        seed: the random seed (the same seed, the same sequence of events).
        status_timeout_s: a status command must be answered within this.
        recover_timeout_s: bound on a restart until the device answers again.
        rss_bound_mb: the service's resident memory must stay below this.
        learn_every: check that learning goes on every this many events.
        folder: work folder (default: a new temporary one, removed afterwards).
    """
    if broker_restarts + kills > events:
        raise ValueError("more restarts and kills than events")
    rng = random.Random(seed)
    report = ChaosReport(seed)
    started = time.monotonic()
    own = folder is None
    work = Path(tempfile.mkdtemp(prefix="delgrad-chaos-")) if folder is None else folder
    broker = Mosquitto(work)
    runtime = None
    special = rng.sample(range(1, events), broker_restarts + kills)
    schedule = dict.fromkeys(special[:broker_restarts], "broker_restart")
    schedule.update(dict.fromkeys(special[broker_restarts:], "kill"))
    kinds = [
        "valid",
        "hostile",
        "retained",
        "duplicate",
        "malformed",
        "oversize",
        "maxsize",
        "trials",
    ]
    weights = [20, 20, 4, 6, 10, 3, 3, 25]
    try:
        broker.start()
        runtime = _Runtime(work, broker.url)
        runtime.start()
        async with _Observer(broker.port, report) as obs:
            chaos = _Chaos(
                obs,
                runtime,
                broker,
                report,
                rng,
                status_timeout_s=status_timeout_s,
                recover_timeout_s=recover_timeout_s,
                rss_bound_mb=rss_bound_mb,
            )
            deadline = time.monotonic() + recover_timeout_s
            while obs.births < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await chaos.check(recovering=True)
            for index in range(events):
                kind = schedule.get(index) or rng.choices(kinds, weights)[0]
                report.events[kind] += 1
                recovering = kind in ("broker_restart", "kill")
                if kind == "broker_restart":
                    await chaos.restart_broker()
                elif kind == "kill":
                    await chaos.kill_runtime()
                elif kind == "valid":
                    await chaos.valid_command()
                elif kind == "hostile":
                    await chaos.hostile_command()
                elif kind == "retained":
                    await chaos.retained_command()
                elif kind == "duplicate":
                    await chaos.duplicate_command()
                elif kind == "malformed":
                    await chaos.malformed()
                elif kind in ("oversize", "maxsize"):
                    await chaos.oversize(over=kind == "oversize")
                else:
                    await chaos.trials(rng.choice([50, 200, 500]))
                await chaos.check(recovering=recovering)
                if learn_every and (index + 1) % learn_every == 0:
                    await chaos.learning_goes_on()
            await chaos.learning_goes_on()
            report.final = dict(obs.metrics)
    finally:
        if runtime is not None:
            started_stop = time.monotonic()
            code = runtime.stop()
            if code not in (0, None):
                report.violations.append(f"service exit code {code} on SIGTERM")
            report.stop_s = time.monotonic() - started_stop
        broker.stop()
        report.wall_s = time.monotonic() - started
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main_json(**kwargs: Any) -> str:
    """Run :func:`run_chaos` and return its summary as one JSON line."""
    return json.dumps(asyncio.run(run_chaos(**kwargs)).summary())
