"""Parameter deltas are encoded off the inference loop's path (issue 24): a step hands
its parameters over and returns; steps that come faster than deltas are encoded are
coalesced into one delta, and subscribers still end up with the newest parameters; a
snapshot never reads the encoder while a delta is made."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from delgrad.protocols import ParameterDelta, ParameterReplica, ParameterSnapshot
from delgrad.runtime.service import Storage
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._stats import Counters
from delgrad.tools._run_app import build_online

from .test_service import make_config


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(self, kind: str, message: Any) -> None:
        self.sent.append(message)


def _stream(
    encoding: str = "float32", interval_ms: float = 0.0
) -> tuple[ParameterStream, _Outbox, threading.Event]:
    config = make_config(
        publish={
            "delta_encoding": encoding,
            "snapshot_every": 1000,
            "delta_interval_ms": interval_ms,
        }
    )
    online = build_online(config)
    outbox = _Outbox()
    counters = Counters()
    params = ParameterStream(
        online, outbox, config.publish, None, storage=Storage(counters), counters=counters
    )  # type: ignore[arg-type]
    gate = threading.Event()
    encoder = params._encoder
    delta = encoder.delta

    def held(layers: Any, **kw: Any) -> ParameterDelta:
        gate.wait(20)
        return delta(layers, **kw)

    encoder.delta = held  # type: ignore[method-assign]
    return params, outbox, gate


def _changed(params: ParameterStream, k: int) -> list[dict[str, np.ndarray]]:
    layers = params._online.published_copy()
    for layer in layers:
        layer["w"] = layer["w"] + 0.01 * (k + 1)
    return layers


async def test_steps_faster_than_deltas_are_coalesced_and_nothing_is_lost() -> None:
    params, outbox, gate = _stream()
    await params.snapshot()
    stop = asyncio.Event()
    loop = asyncio.create_task(params.loop(stop))
    await params.after_steps(1, _changed(params, 0))
    await asyncio.sleep(0.05)  # the first delta is being encoded (held at the gate)
    for k in range(1, 5):  # four more steps meanwhile: each returns at once
        await asyncio.wait_for(params.after_steps(1, _changed(params, k)), 0.5)
    gate.set()
    stop.set()
    params.wake()
    await asyncio.wait_for(loop, 20)
    await params.publish_due()
    deltas = [m for m in outbox.sent if isinstance(m, ParameterDelta)]
    assert len(deltas) == 2  # the first step's, then one for the other four
    assert [d.seq for d in deltas] == [1, 2] and params.seq == 2
    replica = ParameterReplica()
    assert replica.apply_snapshot(outbox.sent[0])
    for d in deltas:
        assert replica.apply_delta(d)
    for got, want in zip(replica.layers(), _changed(params, 4), strict=True):
        np.testing.assert_allclose(got["w"], want["w"].astype(np.float32), atol=1e-6)
    params.close()


async def test_deltas_are_at_least_the_interval_apart_and_cover_the_steps_between() -> None:
    params, outbox, gate = _stream(interval_ms=400)
    gate.set()  # encoding is not held here
    await params.snapshot()
    stop = asyncio.Event()
    loop = asyncio.create_task(params.loop(stop))
    sent_at = []

    async def deltas_sent(n: int) -> None:
        while sum(isinstance(m, ParameterDelta) for m in outbox.sent) < n:
            await asyncio.sleep(0.005)
        sent_at.append(asyncio.get_running_loop().time())

    await params.after_steps(1, _changed(params, 0))
    await asyncio.wait_for(deltas_sent(1), 5)  # the first goes out at once
    for k in range(1, 5):  # four steps within the interval
        await params.after_steps(1, _changed(params, k))
        await asyncio.sleep(0.02)
    assert sum(isinstance(m, ParameterDelta) for m in outbox.sent) == 1
    await asyncio.wait_for(deltas_sent(2), 5)
    assert sent_at[1] - sent_at[0] >= 0.4 - 0.01
    deltas = [m for m in outbox.sent if isinstance(m, ParameterDelta)]
    assert [d.seq for d in deltas] == [1, 2]  # one delta for the four steps
    replica = ParameterReplica()
    assert replica.apply_snapshot(outbox.sent[0])
    assert all(replica.apply_delta(d) for d in deltas)
    for got, want in zip(replica.layers(), _changed(params, 4), strict=True):
        np.testing.assert_allclose(got["w"], want["w"].astype(np.float32), atol=1e-6)
    # a stop is seen during the wait, not after it
    await params.after_steps(1, _changed(params, 5))
    await asyncio.wait_for(deltas_sent(3), 5)
    stopped_at = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert asyncio.get_running_loop().time() - stopped_at < 0.2
    params.close()


async def test_a_snapshot_waits_for_the_delta_being_encoded() -> None:
    params, outbox, gate = _stream("int8")
    stop = asyncio.Event()
    loop = asyncio.create_task(params.loop(stop))
    await params.after_steps(1, _changed(params, 0))
    await asyncio.sleep(0.05)
    snapshot = asyncio.create_task(params.snapshot())
    await asyncio.sleep(0.1)
    assert not snapshot.done()  # held by the delta in the encoding thread
    gate.set()
    await asyncio.wait_for(snapshot, 20)
    stop.set()
    params.wake()
    await asyncio.wait_for(loop, 20)
    kinds = [type(m) for m in outbox.sent]
    assert kinds == [ParameterDelta, ParameterSnapshot]
    assert outbox.sent[1].seq == outbox.sent[0].seq == 1  # the snapshot is of the delta's view
    params.close()


async def test_the_encoding_thread_yields_to_the_kernels() -> None:
    import os

    from delgrad.runtime.service._worker import Worker

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    plain, low = Worker("plain"), Worker("low", nice=10)
    try:
        assert await low.call(niceness) == await plain.call(niceness) + 10
    finally:
        plain.shutdown()
        low.shutdown()


def test_the_delta_interval_is_checked() -> None:
    from delgrad.errors import ConfigError

    assert make_config().publish.delta_interval_ms == 100.0  # the documented default
    assert make_config(publish={"delta_interval_ms": 0}).publish.delta_interval_ms == 0
    for bad in (-1, 60_001, float("nan")):
        with pytest.raises(ConfigError, match=r"publish\.delta_interval_ms"):
            make_config(publish={"delta_interval_ms": bad})
