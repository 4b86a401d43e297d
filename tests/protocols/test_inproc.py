"""The in-process bus and the bounded queue policies."""

from __future__ import annotations

import asyncio

import pytest

from delgrad.protocols import (
    IncomingMessage,
    InProcessBus,
    Publisher,
    SequenceTracker,
    Status,
    TransportError,
    TransportStats,
    decode,
    subscription,
    topic,
)
from delgrad.protocols._queues import Inbox, Outbox, OutgoingMessage

from .conftest import sample_messages

TOPIC_OF = {
    "spikes": "events/in",
    "sensor_events": "events/in",
    "labels": "labels",
    "predictions": "predictions",
    "params": "params/latest",
    "params_delta": "params/delta",
    "metrics": "metrics",
    "status": "status",
    "alarm": "alarm",
}


async def test_every_message_type_over_the_bus() -> None:
    bus = InProcessBus()
    async with bus.transport("rx") as rx, bus.transport("tx") as tx:
        await rx.subscribe(subscription("dev1"), qos=1)
        pub = Publisher(tx, "dev1")
        samples = sample_messages()
        for schema, msg in samples.items():
            if schema in ("command", "reply"):
                t = topic("dev1", "cmd" if schema == "command" else "cmd/reply", name="set_lr")
            else:
                t = topic("dev1", TOPIC_OF[schema])
            await pub.publish(t, msg)
        got = [await rx.recv(timeout=1) for _ in samples]
        assert [decode(m.payload).message for m in got] == list(samples.values())
        assert got[0].qos == 0 and got[2].qos == 1  # events at most once, labels at least once


async def test_retained_snapshot_reaches_late_subscriber_and_can_be_cleared() -> None:
    bus = InProcessBus()
    snap = sample_messages()["params"]
    t = topic("dev1", "params/latest")
    async with bus.transport("tx") as tx:
        await Publisher(tx, "dev1").publish(t, snap)
    async with bus.transport("late") as late:
        await late.subscribe(subscription(kind="params/latest"))
        m = await late.recv(timeout=1)
        assert m.retain and decode(m.payload).message == snap
        await late.publish(t, b"", retain=True)
    assert t not in bus.retained


async def test_last_will_on_abort_not_on_close() -> None:
    bus = InProcessBus()
    st = topic("dev1", "status")
    async with bus.transport("watch") as watch:
        await watch.subscribe(st)
        dev = bus.transport("dev1")
        dev.will = Publisher(dev, "dev1").will(st, Status("lost"))
        await dev.connect()
        await dev.close()
        with pytest.raises(TimeoutError):
            await watch.recv(timeout=0.05)
        await dev.connect()
        dev.abort()
        m = await watch.recv(timeout=1)
        assert decode(m.payload).message.state == "lost"
        assert bus.retained[st] == m.payload
        with pytest.raises(TransportError):
            await dev.publish(st, b"x")


async def test_overlapping_subscriptions_deliver_once_with_max_qos() -> None:
    bus = InProcessBus()
    async with bus.transport("rx") as rx, bus.transport("tx") as tx:
        await rx.subscribe("a/#", qos=0)
        await rx.subscribe("a/+", qos=1)
        await tx.publish("a/b", b"x", qos=1)
        assert (await rx.recv(timeout=1)).qos == 1
        with pytest.raises(TimeoutError):
            await rx.recv(timeout=0.05)


async def test_iteration_ends_on_close() -> None:
    bus = InProcessBus()
    rx = bus.transport("rx")
    await rx.connect()
    await rx.subscribe("#")
    async with bus.transport("tx") as tx:
        await tx.publish("x", b"1", qos=1)

    async def closer() -> None:
        await asyncio.sleep(0.01)
        await rx.close()

    task = asyncio.create_task(closer())
    got = [m.payload async for m in rx]
    await task
    assert got == [b"1"]


def _msg(qos: int, n: int) -> IncomingMessage:
    return IncomingMessage("t", bytes([n]), qos, False)


def test_inbox_drops_oldest_lossy_first_and_counts() -> None:
    stats = TransportStats()
    box = Inbox(3, stats)
    box.put(_msg(0, 1))
    box.put(_msg(1, 2))
    box.put(_msg(0, 3))
    assert box.put(_msg(1, 4))  # evicts lossy 1
    assert stats.dropped_in_lossy == 1
    assert box.put(_msg(0, 5))  # evicts lossy 3
    assert [box.get_nowait().payload for _ in range(3)] == [b"\x02", b"\x04", b"\x05"]


def test_inbox_full_of_reliable_refuses_and_counts() -> None:
    stats = TransportStats()
    box = Inbox(2, stats)
    box.put(_msg(1, 1))
    box.put(_msg(1, 2))
    assert not box.put(_msg(1, 3))
    assert not box.put(_msg(0, 4))
    assert stats.dropped_in_reliable == 1 and stats.dropped_in_lossy == 1
    assert [box.get_nowait().payload for _ in range(2)] == [b"\x01", b"\x02"]


async def test_outbox_policies_and_order() -> None:
    stats = TransportStats()
    box = Outbox(stats, lossy_capacity=2, reliable_capacity=2)

    def out(t: str, qos: int, n: int, state: bool = False) -> OutgoingMessage:
        return OutgoingMessage(t, bytes([n]), qos, state, state)

    box.put(out("m", 0, 1))
    box.put(out("m", 0, 2))
    box.put(out("m", 0, 3))  # drops 1
    box.put(out("s", 1, 4, True))
    box.put(out("l", 1, 5))
    box.put(out("s", 1, 6, True))  # replaces 4
    box.put(out("l", 1, 7))
    box.put(out("l", 1, 8))  # drops 5
    assert (stats.dropped_out_lossy, stats.coalesced_out, stats.dropped_out_reliable) == (1, 1, 1)
    sent = []
    while len(box):
        m = await box.get()
        sent.append(m.payload[0])
        box.done()
    assert sent == [2, 3, 6, 7, 8]
    await asyncio.wait_for(box.wait_idle(), 1)


async def test_outbox_requeue_keeps_reliable_drops_lossy() -> None:
    box = Outbox(TransportStats(), lossy_capacity=4, reliable_capacity=4)
    box.put(OutgoingMessage("a", b"1", 1, False, False))
    box.put(OutgoingMessage("b", b"2", 0, False, False))
    m = await box.get()
    box.requeue(m)
    box.done()
    m2 = await box.get()
    assert m2.payload == b"1"
    box.done()
    lossy = await box.get()
    box.requeue(lossy)
    box.done()
    assert len(box) == 0


def test_sequence_tracker() -> None:
    tr = SequenceTracker()
    assert tr.observe("a", "t", 0) == 0
    assert tr.observe("a", "t", 1) == 0
    assert tr.observe("a", "t", 4) == 2
    assert tr.observe("b", "t", 9) == 0
    assert tr.observe("a", "t", 4) == 0
    assert (tr.missed, tr.stale) == (2, 1)


def test_publisher_sequences_per_topic() -> None:
    pub = Publisher(InProcessBus().transport("x"), "dev1")
    seqs = [decode(pub.encode(t, Status("alive"))).seq for t in ("a", "b", "a", "a", "b")]
    assert seqs == [0, 0, 1, 2, 1]
