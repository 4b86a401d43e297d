"""Fixtures for protocol tests: sample messages and MQTT brokers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from delgrad.protocols import (
    Alarm,
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
from delgrad.tools import Mosquitto
from delgrad.tools import free_port as free_port  # re-exported for the tests here


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
        Alarm("degraded", True, 0.81, 0.93, "sliding accuracy 81.0 % < reference 93.0 % - 5"),
        Command("set_lr", "c-1", {"lr": 0.001, "layers": [0, 1], "note": None, "on": True}),
        Reply("c-1", False, {}, "no such layer"),
    ]
    return {m.SCHEMA: m for m in msgs}


class MosquittoServer:
    """The shared ``mosquitto`` fixture (tests/conftest.py) behind this module's async
    start/stop/port interface; start and stop run in a thread, off the event loop."""

    def __init__(self, server: Mosquitto) -> None:
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)


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
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """A running broker on a free loopback port: real Mosquitto (the shared fixture; skips
    when the binary is absent), or the embedded amqtt broker."""
    if request.param == "mosquitto":
        yield MosquittoServer(request.getfixturevalue("mosquitto"))  # stopped by its fixture
        return
    server = AmqttServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
