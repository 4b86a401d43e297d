"""Processes for end-to-end and fault tests: ``delgrad run``, ``delgrad sensor`` and a
test subscriber that decodes everything a device publishes (Mosquitto itself is the
shared ``mosquitto`` fixture of tests/conftest.py).

Everything binds 127.0.0.1 on free ports; every process is started in its own
process group and killed (the whole group) by the fixtures' finalizers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from delgrad.protocols import (
    Command,
    Envelope,
    Metrics,
    MqttTransport,
    ParameterDelta,
    ParameterReplica,
    ParameterSnapshot,
    ProtocolError,
    Publisher,
    Reply,
    Status,
    decode,
    subscription,
    topic,
)
from delgrad.runtime import (
    Layer,
    Network,
    NeuronParams,
    encode_yinyang,
    forward,
    predict,
    yinyang_split,
)
from delgrad.tools._toml import write_toml

#: The ``delgrad`` command as a module (works without the console script on PATH).
DELGRAD = [sys.executable, "-m", "delgrad.tools"]


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Kill ``proc``'s process group if it still runs, and wait for it."""
    if proc.poll() is None:
        _kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


# ---- processes ---------------------------------------------------------------------------


class Processes:
    """Owns every child process of a test; :meth:`cleanup` kills what still runs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``args`` in a new process group, output to ``workdir/name.log``."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        self.procs.append(proc)
        return proc, log_path

    def cleanup(self) -> None:
        for proc in self.procs:
            _reap(proc)


@pytest.fixture(name="processes")
def processes_fixture(tmp_path: Path) -> Iterator[Processes]:
    """Child processes of the test, killed (process group) at teardown."""
    owner = Processes(tmp_path)
    try:
        yield owner
    finally:
        owner.cleanup()


class RuntimeProcess:
    """``delgrad run --config FILE --quiet`` with a config written into the test folder.

    Args:
        processes: owner of the child process.
        broker_url: ``mqtt://127.0.0.1:PORT``.
        device: device id.
        sections: further config sections, e.g. ``learning={"step_every": 40}``.
    """

    def __init__(
        self, processes: Processes, broker_url: str, device: str, **sections: dict[str, Any]
    ) -> None:
        self.processes = processes
        self.device = device
        data: dict[str, Any] = {
            "device": device,
            "broker": {"url": broker_url},
            "publish": {"metrics_period_s": 0.5},
        }
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        self.config = data
        self.config_path = write_toml(processes.workdir / f"run-{device}.toml", data)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.starts = 0

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        args = [*DELGRAD, "run", "--config", str(self.config_path), "--quiet", *extra]
        self.starts += 1
        self.proc, self.log = self.processes.spawn(args, f"run-{self.device}-{self.starts}")
        return self.proc

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the ``delgrad run`` process itself (not its group)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        """Wait (without blocking the loop) for the process to exit; its return code."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"delgrad run did not exit in {timeout} s:\n{self.output()}")
            await asyncio.sleep(0.1)
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"delgrad run exited with {self.proc.returncode}:\n{self.output()}"
            )


def sensor_args(broker_url: str, device: str, *args: str | int | float) -> list[str]:
    """``delgrad sensor --broker URL --device DEVICE ARGS...``."""
    return [*DELGRAD, "sensor", "--broker", broker_url, "--device", device, *map(str, args)]


async def run_sensor(
    processes: Processes, broker_url: str, device: str, *args: str | int | float, timeout: float
) -> str:
    """Run ``delgrad sensor`` to its end (exit 0 required); its output."""
    proc, log = processes.spawn(sensor_args(broker_url, device, *args), f"sensor-{device}")
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            _reap(proc)
            raise AssertionError(f"delgrad sensor did not end in {timeout} s")
        await asyncio.sleep(0.1)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"delgrad sensor exited with {proc.returncode}:\n{text}"
    return text


# ---- the test subscriber -----------------------------------------------------------------


@dataclass
class Received:
    """One decoded message."""

    topic: str
    envelope: Envelope
    retain: bool
    at_s: float  # monotonic receive time

    @property
    def message(self) -> Any:
        return self.envelope.message


@dataclass
class ParamEvent:
    """One snapshot or delta as the subscriber saw it, and what the replica made of it."""

    kind: str  # "snapshot" or "delta"
    seq: int
    base_seq: int | None
    retain: bool
    applied: bool
    replica_seq: int | None


@dataclass
class Subscriber:
    """Collects every message of ``device`` (decoded), in a background asyncio task.

    Keeps a :class:`ParameterReplica` fed with every snapshot and delta; when the
    replica needs a re-sync it re-subscribes ``params/latest`` to get the retained
    snapshot again (at most every ``resync_interval_s``).
    """

    port: int
    device: str
    messages: list[Received] = field(default_factory=list)
    undecodable: int = 0
    replica: ParameterReplica = field(default_factory=ParameterReplica)
    param_events: list[ParamEvent] = field(default_factory=list)
    resync_interval_s: float = 0.5
    _transport: MqttTransport | None = None
    _task: asyncio.Task[None] | None = None
    _last_resync: float = 0.0

    async def __aenter__(self) -> Subscriber:
        self._transport = MqttTransport(
            "127.0.0.1",
            self.port,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            timeout_s=5.0,
            reconnect_max_s=0.5,
        )
        await self._transport.connect()
        await self._transport.subscribe(subscription(self.device), qos=1)
        self.publisher = Publisher(self._transport, f"tester-{uuid.uuid4().hex[:6]}")
        self._task = asyncio.create_task(self._collect(), name="test-subscriber")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            await self._transport.close()

    @property
    def transport(self) -> MqttTransport:
        assert self._transport is not None
        return self._transport

    async def _collect(self) -> None:
        assert self._transport is not None
        while True:
            incoming = await self._transport.recv()
            try:
                envelope = decode(incoming.payload)
            except ProtocolError:
                self.undecodable += 1  # the bad messages the tests send themselves
                continue
            item = Received(incoming.topic, envelope, incoming.retain, time.monotonic())
            self.messages.append(item)
            msg = envelope.message
            if isinstance(msg, ParameterSnapshot):
                applied = self.replica.apply_snapshot(msg)
                self.param_events.append(
                    ParamEvent("snapshot", msg.seq, None, item.retain, applied, self.replica.seq)
                )
            elif isinstance(msg, ParameterDelta):
                applied = self.replica.apply_delta(msg)
                self.param_events.append(
                    ParamEvent("delta", msg.seq, msg.base_seq, False, applied, self.replica.seq)
                )
                if self.replica.needs_resync:
                    await self._resync()

    async def _resync(self) -> None:
        now = time.monotonic()
        if now - self._last_resync < self.resync_interval_s:
            return
        self._last_resync = now
        latest = topic(self.device, "params/latest")
        await self.transport.unsubscribe(latest)
        await self.transport.subscribe(latest, qos=1)

    # -- queries ---------------------------------------------------------------------

    def of(self, cls: type, kind: str | None = None) -> list[Any]:
        """Messages of type ``cls`` (and topic kind ``kind``, e.g. ``"status"``)."""
        suffix = None if kind is None else f"/{kind}"
        return [
            r.message
            for r in self.messages
            if isinstance(r.message, cls) and (suffix is None or r.topic.endswith(suffix))
        ]

    def received(self, cls: type) -> list[Received]:
        return [r for r in self.messages if isinstance(r.message, cls)]

    def metrics(self) -> list[Metrics]:
        return self.of(Metrics)

    def last_metrics(self) -> dict[str, float]:
        found = self.metrics()
        return dict(found[-1].values) if found else {}

    def statuses(self) -> list[str]:
        return [m.state for m in self.of(Status)]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str = "a condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"last metrics: {summary(self.last_metrics())}; statuses: {self.statuses()}"
                )
            await asyncio.sleep(0.05)

    async def wait_metric(self, key: str, above: float, timeout: float) -> dict[str, float]:
        """Wait for a metrics message with ``values[key] > above``; its values."""
        await self.wait_for(
            lambda: self.last_metrics().get(key, -np.inf) > above, timeout, f"{key} > {above}"
        )
        return self.last_metrics()

    async def wait_quiet(self, key: str, seconds: float, timeout: float) -> float:
        """Wait until metric ``key`` stayed unchanged for ``seconds``; its value."""
        deadline = time.monotonic() + timeout
        value, since = self.last_metrics().get(key), time.monotonic()
        while time.monotonic() - since < seconds:
            if time.monotonic() > deadline:
                raise AssertionError(f"{key} kept changing for {timeout} s")
            await asyncio.sleep(0.1)
            now = self.last_metrics().get(key)
            if now != value:
                value, since = now, time.monotonic()
        assert value is not None, f"no metric {key}"
        return value

    async def command(
        self, name: str, args: dict[str, Any] | None = None, *, timeout: float = 20.0
    ) -> Reply:
        """Publish ``Command(name)`` on cmd/NAME and wait for its Reply (matched by id)."""
        cid = f"c-{uuid.uuid4().hex[:10]}"
        await self.publisher.publish(
            topic(self.device, "cmd", name=name), Command(name, cid, args or {})
        )
        matches: list[Reply] = []

        def found() -> bool:
            matches[:] = [r for r in self.of(Reply) if r.correlation_id == cid]
            return bool(matches)

        await self.wait_for(found, timeout, f"the reply to {name!r}")
        return matches[0]


def summary(metrics: dict[str, float]) -> str:
    keys = ("accuracy", "learning.steps", "param_seq", "trials.processed", "dropped.overload")
    return ", ".join(f"{k}={metrics[k]:g}" for k in keys if k in metrics)


# ---- evaluation --------------------------------------------------------------------------


def replica_test_accuracy(
    layers: list[dict[str, np.ndarray]], snapshot: ParameterSnapshot
) -> float:
    """Accuracy of the replica's parameters on the standard Yin-Yang test split.

    Builds a :class:`delgrad.runtime.Network` for the 4-30-3 synaptic-delay recipe
    (checked against the snapshot's structure) and runs ``forward`` + ``predict``.
    """
    assert list(snapshot.layer_sizes) == [4, 30, 3]
    assert list(snapshot.delay_kinds) == ["synaptic", "synaptic"]
    assert (snapshot.neuron.tau_m, snapshot.neuron.theta) == (2.0, 1.0)
    net = Network(
        [Layer(4, 30, "synaptic"), Layer(30, 3, "synaptic")],
        NeuronParams(tau_m=2.0, theta=1.0),
        w=[ly["w"] for ly in layers],
        d=[ly["d"] for ly in layers],
    )
    features, labels = yinyang_split("test")
    out = forward(net, encode_yinyang(features))[-1]
    return float(np.mean(predict(out) == labels))


def start_sensor(
    processes: Processes, broker_url: str, device: str, *args: str | int | float
) -> subprocess.Popen[bytes]:
    """Start ``delgrad sensor`` in the background (killed at teardown)."""
    proc, _ = processes.spawn(sensor_args(broker_url, device, *args), f"sensor-bg-{device}")
    return proc


def read_checkpoint_state(folder: Path) -> dict[str, Any]:
    """The service state (steps, param_seq, ...) of the checkpoint in ``folder``."""
    with np.load(folder / "service_checkpoint.npz", allow_pickle=False) as npz:
        return json.loads(bytes(npz["service"]).decode())


async def wait_for(check: Any, timeout: float, what: str) -> None:
    """Poll ``check()`` every 0.2 s until true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
