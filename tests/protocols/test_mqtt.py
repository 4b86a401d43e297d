"""Integration over TCP: real Mosquitto and the embedded amqtt broker, on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from delgrad.protocols import (
    Labels,
    MqttTransport,
    Publisher,
    Status,
    TransportError,
    decode,
    subscription,
    topic,
)

from .conftest import free_port, sample_messages
from .test_inproc import TOPIC_OF

pytestmark = [pytest.mark.broker]


def _transport(port: int, name: str, **kw: object) -> MqttTransport:
    return MqttTransport("127.0.0.1", port, client_id=name, timeout_s=3.0, **kw)


def _topic_for(schema: str) -> str:
    if schema in ("command", "reply"):
        return topic("dev1", "cmd" if schema == "command" else "cmd/reply", name="set_lr")
    return topic("dev1", TOPIC_OF[schema])


async def test_every_message_type(broker) -> None:
    async with asyncio.timeout(30):
        async with _transport(broker.port, "rx") as rx, _transport(broker.port, "tx") as tx:
            want_v = "5" if type(broker).__name__ == "MosquittoServer" else "3.1.1"
            assert rx.protocol_version == want_v
            await rx.subscribe(subscription("dev1"), qos=1)
            pub = Publisher(tx, "dev1")
            samples = sample_messages()
            for schema, msg in samples.items():
                await pub.publish(_topic_for(schema), msg)
            await tx.flush(timeout=10)
            got = {}
            while len(got) < len(samples):
                m = await rx.recv(timeout=10)
                env = decode(m.payload)
                got[env.schema] = (m.topic, env.message)
            for schema, msg in samples.items():
                assert got[schema] == (_topic_for(schema), msg)
            assert tx.stats.published == len(samples)


async def test_retained_snapshot_reaches_late_subscriber(broker) -> None:
    snap = sample_messages()["params"]
    async with asyncio.timeout(30):
        async with _transport(broker.port, "tx") as tx:
            await Publisher(tx, "dev1").publish(topic("dev1", "params/latest"), snap)
            await tx.flush(timeout=10)
        async with _transport(broker.port, "late") as late:
            await late.subscribe(subscription(kind="params/latest"))
            m = await late.recv(timeout=10)
            assert m.retain
            assert decode(m.payload).message == snap


VICTIM = textwrap.dedent(
    """
    import asyncio, sys
    from delgrad.protocols import MqttTransport, Publisher, Status, topic

    async def main():
        t = MqttTransport("127.0.0.1", int(sys.argv[1]), client_id="victim", timeout_s=3.0)
        pub = Publisher(t, "victim")
        st = topic("victim", "status")
        t.will = pub.will(st, Status("lost", detail="connection lost"))
        await t.connect()
        await pub.publish(st, Status("birth"))
        await t.flush(timeout=10)
        print("ready", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_last_will_on_killed_client(broker, tmp_path: Path) -> None:
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    st = topic("victim", "status")
    async with asyncio.timeout(40):
        async with _transport(broker.port, "watch") as watch:
            await watch.subscribe(st)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), str(broker.port), stdout=asyncio.subprocess.PIPE
            )
            try:
                assert (await proc.stdout.readline()).strip() == b"ready"
                assert decode((await watch.recv(timeout=10)).payload).message.state == "birth"
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                will = decode((await watch.recv(timeout=10)).payload)
                assert will.message == Status("lost", detail="connection lost")
                assert will.sender == "victim"
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        async with _transport(broker.port, "late") as late:  # the will was retained
            await late.subscribe(st)
            m = await late.recv(timeout=10)
            assert m.retain and decode(m.payload).message.state == "lost"


async def test_graceful_close_sends_no_will(broker) -> None:
    st = topic("calm", "status")
    async with asyncio.timeout(30):
        async with _transport(broker.port, "watch") as watch:
            await watch.subscribe(st)
            dev = _transport(broker.port, "calm")
            dev.will = Publisher(dev, "calm").will(st, Status("lost"))
            async with dev:
                await Publisher(dev, "calm").publish(st, Status("dead"))
                await dev.flush(timeout=10)
            assert decode((await watch.recv(timeout=10)).payload).message.state == "dead"
            with pytest.raises(TimeoutError):
                await watch.recv(timeout=0.5)


async def test_reconnect_after_broker_restart(broker) -> None:
    lab = topic("dev1", "labels")
    async with asyncio.timeout(50):
        rx = _transport(broker.port, "rx", reconnect_min_s=0.05, reconnect_max_s=0.5)
        tx = _transport(broker.port, "tx", reconnect_min_s=0.05, reconnect_max_s=0.5)
        async with rx, tx:
            await rx.subscribe(lab, qos=1)
            await broker.stop()
            while rx.connected or tx.connected:
                await asyncio.sleep(0.02)
            await broker.start()
            await rx.wait_connected(timeout=15)
            await tx.wait_connected(timeout=15)
            assert rx.stats.reconnects >= 1 and tx.stats.reconnects >= 1
            pub = Publisher(tx, "dev1")
            n = 200
            for i in range(n):
                await pub.publish(lab, Labels([i], [i % 3]))
            await tx.flush(timeout=20)
            seen: set[int] = set()
            while len(seen) < n:
                env = decode((await rx.recv(timeout=10)).payload)
                seen.add(env.seq)
                assert env.message.trial_ids[0] == env.seq
            assert seen == set(range(n))
            assert rx.stats.dropped_in_reliable == 0


async def test_connect_failure_is_a_transport_error() -> None:
    t = MqttTransport("127.0.0.1", free_port(), timeout_s=0.5, reconnect_min_s=0.05)
    with pytest.raises(TransportError, match="cannot connect"):
        await t.connect()
    assert not t.connected
