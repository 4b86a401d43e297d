"""Faults over a real Mosquitto with processes: broker restart, SIGKILL and restart from a
checkpoint, bad input on every input topic, bad commands, clean shutdown on signals."""

from __future__ import annotations

import asyncio
import signal
import time

import numpy as np
import pytest

from delgrad.protocols import (
    Labels,
    Metrics,
    SpikeBatch,
    Status,
    decode,
    encode,
    topic,
)
from delgrad.tools import Mosquitto

from ._e2e_helpers import (  # noqa: F401  (fixtures)
    Processes,
    RuntimeProcess,
    Subscriber,
    processes_fixture,
    read_checkpoint_state,
    run_sensor,
    start_sensor,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

START_TIMEOUT_S = 180.0
#: A steady background stream: slow enough for any machine, fast enough to learn.
STREAM = ("--rate", 4000, "--batch", 200, "--duration", 300)


async def _started(sub: Subscriber, rt: RuntimeProcess, births: int = 1) -> None:
    async def check() -> None:
        while sub.statuses().count("birth") < births:
            rt.assert_running()
            await asyncio.sleep(0.1)

    await asyncio.wait_for(check(), START_TIMEOUT_S)


def _metrics_after(sub: Subscriber, t: float) -> list[Metrics]:
    return [r.message for r in sub.received(Metrics) if r.at_s > t]


async def test_broker_killed_and_restarted_runtime_reconnects_and_keeps_learning(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    device = "f-broker"
    rt = RuntimeProcess(processes, mosquitto.url, device, publish={"snapshot_every": 5})
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        start_sensor(processes, mosquitto.url, device, *STREAM)
        before = await sub.wait_metric("learning.steps", 20, timeout=120)
        seq_before = max(e.seq for e in sub.param_events)

        mosquitto.kill()
        await asyncio.sleep(2.0)  # the runtime keeps running without its broker
        rt.assert_running()
        mosquitto.start()
        restarted = time.monotonic()

        # the runtime reconnected (counted) and its metrics flow again, learning on
        await sub.wait_for(
            lambda: any(
                m.values.get("transport.reconnects", 0) >= 1
                and m.values["learning.steps"] > before["learning.steps"] + 20
                for m in _metrics_after(sub, restarted)
            ),
            timeout=120,
            what="metrics after the reconnect with more learning steps",
        )
        # parameter updates after the restart continue above the ones before it, and
        # the replica is (re-)synced with them
        await sub.wait_for(
            lambda: not sub.replica.needs_resync and (sub.replica.seq or 0) > seq_before + 5,
            timeout=60,
            what="the replica in sync after the broker restart",
        )
        rt.assert_running()
        # the restarted broker (no persistence) lost its retained messages; the
        # runtime announces itself again, so a late subscriber finds status and snapshot
        async with Subscriber(mosquitto.port, device) as late:
            await late.wait_for(
                lambda: bool(late.of(Status)) and late.replica.seq is not None,
                30,
                "retained status and snapshot after the broker restart",
            )
            assert late.received(Status)[0].message.state == "alive"
        after = sub.last_metrics()
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()

    assert after["param_seq"] > before["param_seq"]
    assert after["trials.processed"] > before["trials.processed"]
    live = [e.seq for e in sub.param_events if not e.retain]
    assert live == sorted(live), "parameter sequence numbers went backwards"


async def test_sigkill_then_restart_resumes_from_checkpoint(
    mosquitto: Mosquitto, processes: Processes, tmp_path
) -> None:
    device = "f-kill"
    ckpt = tmp_path / "ckpt"
    rt = RuntimeProcess(
        processes,
        mosquitto.url,
        device,
        checkpoint={"dir": str(ckpt), "period_s": 1.0},
        publish={"snapshot_every": 10},
    )
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        start_sensor(processes, mosquitto.url, device, *STREAM)
        await sub.wait_metric("learning.steps", 30, timeout=120)
        await sub.wait_metric("checkpoints.written", 1, timeout=30)

        rt.signal(signal.SIGKILL)
        assert await rt.wait_exit(30) == -signal.SIGKILL
        killed = time.monotonic()
        state = read_checkpoint_state(ckpt)  # what the restart must resume from
        assert state["steps"] > 0
        # the broker publishes the last will
        await sub.wait_for(lambda: "lost" in sub.statuses(), 30, "the lost status (will)")
        seq_before = max(e.seq for e in sub.param_events)  # all that was published
        assert seq_before >= state["param_seq"]

        rt.start()
        await _started(sub, rt, births=2)
        first = await _first_metrics_after(sub, killed)
        await sub.wait_for(
            lambda: sub.last_metrics().get("learning.steps", 0) > state["steps"] + 20,
            timeout=120,
            what="learning after the restart",
        )
        await sub.wait_for(
            lambda: not sub.replica.needs_resync and (sub.replica.seq or 0) > seq_before,
            timeout=60,
            what="the replica re-synced above the old sequence numbers",
        )
        m = sub.last_metrics()
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()

    # resumed from the checkpoint, not from 0
    assert first.step >= state["steps"] and first.values["learning.steps"] >= state["steps"]
    assert first.values["restarts"] == 1
    assert m["param_seq"] > seq_before
    # statuses: birth, lost (the will), birth again, dead
    states = sub.statuses()
    assert states == ["birth", "lost", "birth", "dead"], states
    # update numbers seen live never go backwards; the first one after the restart
    # is a full snapshot, so the replica re-synced without a refused delta
    live = [e for e in sub.param_events if not e.retain]
    seqs = [e.seq for e in live]
    assert seqs == sorted(seqs), "parameter sequence numbers went backwards"
    restart_at = next(i for i, e in enumerate(live) if e.seq > seq_before)
    assert live[restart_at].kind == "snapshot" and live[restart_at].applied
    assert all(e.applied for e in live[restart_at:])


async def _first_metrics_after(sub: Subscriber, t: float) -> Metrics:
    await sub.wait_for(lambda: bool(_metrics_after(sub, t)), 120, "metrics after the restart")
    return _metrics_after(sub, t)[0]


def _patched(payload: bytes, old: bytes, new: bytes) -> bytes:
    assert payload.count(old) >= 1, (old, payload[:80])
    return payload.replace(old, new, 1)


def _bad_payloads(kind: str) -> dict[str, bytes]:
    """Malformed, oversized, wrong-version and wrong-dtype messages for a topic kind."""
    spikes = encode(
        SpikeBatch.from_trials([900_000_000], [([0, 1, 2, 3], [0.5, 0.7, 0.9, 1.1])]),
        seq=0,
        sender="evil",
    )
    labels = encode(Labels(np.array([900_000_000]), np.array([1])), seq=0, sender="evil")
    valid = labels if kind == "labels" else spikes
    bad = {
        "garbage": b"\xc1\xc1 not msgpack",
        "truncated": valid[: len(valid) // 2],
        "oversized": b"\x00" * (17 << 20),
        "wrong_version": _patched(valid, b"\xa5major\x01", b"\xa5major\x02"),
        # trial ids must be <i8; <u8 is a wire dtype, but not for this field
        "wrong_dtype": _patched(valid, b"\xa3<i8", b"\xa3<u8"),
        # big-endian floats are never allowed on the wire
        "forbidden_dtype": _patched(spikes, b"\xa3<f4", b"\xa3>f4"),
    }
    for name, payload in bad.items():
        if name != "oversized":
            with pytest.raises(Exception):  # noqa: B017  (any ProtocolError)
                decode(payload)
    return bad


async def test_bad_messages_on_every_input_topic_are_counted_and_dropped(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    device = "f-bad"
    rt = RuntimeProcess(processes, mosquitto.url, device)
    targets = {
        "events/in": topic(device, "events/in"),
        "labels": topic(device, "labels"),
        "cmd": topic(device, "cmd", name="pause"),
    }
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        start_sensor(processes, mosquitto.url, device, *STREAM)
        before = await sub.wait_metric("learning.steps", 10, timeout=120)
        sent = 0
        for kind, target in targets.items():
            for name, payload in _bad_payloads(kind).items():
                await sub.transport.publish(target, payload, qos=1)
                # the runtime announces its maximum packet size (MQTT 5): the broker
                # never sends it an oversized message (issue 10, case 6)
                sent += name != "oversized"
        # a well-formed message of the wrong schema for its topic is counted too
        await sub.publisher.publish(targets["events/in"], Status("alive", 1.0, "not events"))
        sent += 1
        await sub.transport.flush(timeout=30)

        def bad_count(values: dict[str, float]) -> float:
            return sum(v for k, v in values.items() if k.startswith(("malformed.", "dropped.bad")))

        await sub.wait_for(
            lambda: bad_count(sub.last_metrics()) >= sent,
            timeout=60,
            what=f"{sent} bad messages counted",
        )
        counted = sub.last_metrics()
        # learning goes on afterwards, and the bad "pause" command did not pause
        await sub.wait_metric("learning.steps", counted["learning.steps"] + 10, timeout=60)
        rt.assert_running()
        m = sub.last_metrics()
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()

    assert bad_count(before) == 0
    assert bad_count(counted) == sent
    kinds = {k for k, v in counted.items() if k.startswith("malformed.") and v}
    assert {
        "malformed.VersionError",
        "malformed.ArrayError",
        "malformed.wrong_schema_for_topic",
    } <= kinds, kinds
    assert counted.get("malformed.SizeLimitError", 0) == 0  # refused by the broker
    assert counted["malformed.VersionError"] == 3
    assert counted["malformed.ArrayError"] == 6
    assert m["paused"] == 0 and m["learning.steps"] > counted["learning.steps"]
    assert m.get("join.orphan_labels", 0) == 0  # no bad label got through


async def test_commands_reply_with_errors_for_unknown_names_and_bad_arguments(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    device = "f-cmd"
    rt = RuntimeProcess(processes, mosquitto.url, device)
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        unknown = await sub.command("frobnicate", {"x": 1})
        bad_lr = await sub.command("lr", {"scale": -1.0})
        bad_mode = await sub.command("mode", {"mode": "sideways"})
        good = await sub.command("status")
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()

    assert not unknown.ok and "unknown command" in unknown.error and unknown.result == {}
    assert not bad_lr.ok and "scale" in bad_lr.error
    assert not bad_mode.ok and "mode" in bad_mode.error
    assert good.ok and good.error == "" and good.result["mode"] == "train"
    assert set(good.result) >= {"mode", "paused", "param_seq", "steps"}
    # each reply went to cmd/NAME/reply of the command's name
    for name, reply in (("frobnicate", unknown), ("lr", bad_lr), ("status", good)):
        where = [r.topic for r in sub.messages if r.message is reply]
        assert where == [topic(device, "cmd/reply", name=name)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_stops_cleanly_with_dead_status_and_checkpoint(
    mosquitto: Mosquitto, processes: Processes, tmp_path, sig: int
) -> None:
    device = f"f-{signal.Signals(sig).name.lower()}"
    ckpt = tmp_path / "ckpt"
    rt = RuntimeProcess(
        processes, mosquitto.url, device, checkpoint={"dir": str(ckpt), "period_s": 3600.0}
    )
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        await run_sensor(
            processes, mosquitto.url, device, "--rate", 5000, "--batch", 500, "--count", 6000,
            timeout=60,
        )  # fmt: skip
        await sub.wait_metric("learning.steps", 30, timeout=60)
        assert not (ckpt / "service_checkpoint.npz").exists()  # period: 1 hour
        rt.signal(sig)
        code = await rt.wait_exit(60)
        await sub.wait_for(lambda: "dead" in sub.statuses(), 10, "the dead status")
        final = sub.last_metrics()

    assert code == 0, rt.output()
    state = read_checkpoint_state(ckpt)
    assert state["steps"] == final["learning.steps"] >= 30
    assert final["checkpoints.written"] == 1
    # the dead status is retained: a late subscriber gets it
    async with Subscriber(mosquitto.port, device) as late:
        await late.wait_for(lambda: bool(late.of(Status)), 10, "the retained status")
        retained = late.received(Status)
    assert retained[0].retain and retained[0].message.state == "dead"
    assert "Traceback" not in rt.output()
