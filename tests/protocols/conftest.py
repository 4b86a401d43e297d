"""Fixtures for protocol tests: sample messages and MQTT brokers on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from delgrad.protocols import (
    Command,
    DeltaEncoder,
    EmbeddedBroker,
    Labels,
    Message,
    Metrics,
    NeuronParams,
    Predictions,
    Reply,
    SensorEvents,
    SpikeBatch,
    Status,
)
from tests._loopback import free_port
from tests._loopback import mosquitto_binary as mosquitto_path


def yinyang_like_network(seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A 4-30-3 network with synaptic delays: w and d per layer (float32)."""
    rng = np.random.default_rng(seed)
    return [
        {"w": rng.normal(0, 0.5, (4, 30)), "d": rng.uniform(0, 1, (4, 30))},
        {"w": rng.normal(0, 0.5, (30, 3)), "d": rng.uniform(0, 1, (30, 3))},
    ]


def sample_messages() -> dict[str, Message]:
    """One instance of every message type, keyed by schema name."""
    rng = np.random.default_rng(1)
    layers = yinyang_like_network()
    enc = DeltaEncoder(layers, seq=5)
    snap = enc.snapshot(
        layer_sizes=(4, 30, 3), neuron=NeuronParams(1.0, 2.0, 1.0), delay_kinds=("synaptic",) * 2
    )
    moved = [{k: v + rng.normal(0, 1e-2, v.shape) for k, v in lay.items()} for lay in layers]
    msgs: list[Message] = [
        SpikeBatch.from_trials(
            [10, 11, 12], [([0, 1, 2, 3], rng.uniform(0, 2, 4)), ([], []), ([3], [0.5])]
        ),
        SensorEvents([5, 70000, 2], [1.0, 2.5, 1e9], time_unit="us"),
        Labels([10, 11], [2, 0]),
        Predictions([10, 11], [2, -1], [[1.5, 2.0, 0.9], [np.inf, np.inf, np.inf]]),
        snap,
        enc.delta(moved),
        Metrics(7, {"loss": 0.25, "accuracy": 0.9}),
        Status("alive", 12.5, "ok"),
        Command("set_lr", "c-1", {"lr": 0.001, "layers": [0, 1], "note": None, "on": True}),
        Reply("c-1", False, {}, "no such layer"),
    ]
    return {m.SCHEMA: m for m in msgs}


class MosquittoServer:
    """A mosquitto process on 127.0.0.1 with a generated config; restartable on one port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class AmqttServer:
    """The embedded broker behind the same start/stop/port interface."""

    def __init__(self) -> None:
        self.broker = EmbeddedBroker("127.0.0.1", 0)

    @property
    def port(self) -> int:
        return self.broker.port

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    """A running broker on a free loopback port: real Mosquitto, or embedded amqtt."""
    if request.param == "mosquitto":
        binary = mosquitto_path()
        if binary is None:
            pytest.skip("mosquitto not installed (apt-get install mosquitto)")
        server: MosquittoServer | AmqttServer = MosquittoServer(binary, tmp_path)
    else:
        server = AmqttServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
