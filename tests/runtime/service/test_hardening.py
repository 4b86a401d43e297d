"""Issue 10, the device you can leave alone: every case over the in-process bus.

Each test names the case of the issue it reproduces; each failed before the fix
(the hostile command, message or restart took the device down or falsified its
state) and passes after.
"""

from __future__ import annotations

import asyncio
import json
import time

import msgpack
import numpy as np
import pytest

from delgrad.protocols import (
    Command,
    InProcessBus,
    Reply,
    Status,
    decode,
    encode,
    topic,
)
from delgrad.runtime.service import Service, ServiceFailed
from delgrad.runtime.service._checkpoints import checkpoint_paths
from delgrad.runtime.service._limits import state_problem
from delgrad.runtime.service._outbox import EPOCH_SHIFT, next_boot_epoch, status_will
from delgrad.tools._run_app import build_online
from delgrad.tools._sensor import YinYangSource, stream_trials

from .test_service import DEVICE, Client, make_config, start_service, stop_service, stream


async def _command(client, name, cid, args=None, *, body_name=None, **publish):
    await client.publisher.publish(
        topic(DEVICE, "cmd", name=name), Command(body_name or name, cid, args or {}), **publish
    )


def _reply(client, cid):
    return next((r for r in client.of(Reply) if r.correlation_id == cid), None)


async def _answered(client, cid, timeout=60.0):
    await client.wait_for(lambda: _reply(client, cid) is not None, timeout=timeout)
    return _reply(client, cid)


# -- case 1: deaf forever -----------------------------------------------------------


async def test_case1_long_string_argument_is_refused_and_device_keeps_answering():
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, make_config())
        await _command(client, "mode", "long", {"mode": "x" * 1024})
        refused = await _answered(client, "long")
        assert not refused.ok and len(refused.error) <= 1024 and "mode" in refused.error
        await _command(client, "status", "after")
        assert (await _answered(client, "after")).ok
        await stream(client, 300)  # and it still processes
        await client.wait_for(lambda: service.counters["trials.processed"] >= 300, timeout=60)
        await stop_service(service, transport, task)


async def test_supervision_a_failing_task_restarts_and_the_device_keeps_answering(monkeypatch):
    bus = InProcessBus()
    config = make_config()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        calls = {"n": 0}
        original = service._commands.run_queued

        async def flaky():
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("injected")
            await original()

        monkeypatch.setattr(service._commands, "run_queued", flaky)
        await _command(client, "status", "s1")  # the first run fails: restarted
        await _command(client, "status", "s2")
        await _answered(client, "s2")
        assert service.counters["tasks.failed.receive"] == 1
        await stop_service(service, transport, task)


async def test_supervision_a_task_failing_for_good_ends_the_service_with_dead_status():
    bus = InProcessBus()
    config = make_config(supervision={"max_task_restarts": 2})
    async with Client(bus) as client:
        transport = bus.transport("service")
        await transport.__aenter__()
        service = Service(config, transport, build_online(config))

        async def broken():
            raise RuntimeError("driver on fire")

        service._heartbeat_loop = broken  # type: ignore[method-assign]
        started = time.monotonic()
        with pytest.raises(ServiceFailed, match="driver on fire"):
            await asyncio.wait_for(service.run(), 30)
        assert time.monotonic() - started < 10
        await transport.__aexit__(None, None, None)
        await client.wait_for(lambda: any(s.state == "dead" for s in client.of(Status)), timeout=60)
    dead = [s for s in client.of(Status) if s.state == "dead"][-1]
    assert "heartbeat" in dead.detail and "driver on fire" in dead.detail
    assert service.counters["tasks.failed.heartbeat"] == 3


# -- case 2: bricked by a learning rate -----------------------------------------------


async def test_case2_absurd_learning_rate_is_refused():
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, make_config())
        await _command(client, "lr", "huge", {"scale": 1e308})
        refused = await _answered(client, "huge")
        await stop_service(service, transport, task)
    assert not refused.ok and "scale" in refused.error
    assert service.online.lr_scale == 1.0


async def test_case2_a_step_that_overflows_is_rolled_back_and_learning_goes_on(tmp_path):
    bus = InProcessBus()
    config = make_config(tmp_path)
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        w_before = [w.copy() for w in service.online.learner.net.w]
        service.online.learner.optimizer._lr_scale = 1e308  # bypassing every check
        await stream(client, 500)
        await client.wait_for(lambda: service.online.rejected >= 3, timeout=60)
        # read between the learner's jobs: a later step may be mid-way (not yet rolled
        # back) while the event loop looks
        weights = await service._worker.call(
            lambda: [w.copy() for w in service.online.learner.net.w]
        )
        for w, w0 in zip(weights, w_before, strict=True):
            np.testing.assert_array_equal(w, w0)  # rolled back
        await _command(client, "lr", "back", {"scale": 1.0})  # through the command
        assert (await _answered(client, "back")).ok
        await stream_trials(  # new trial ids: the join refuses repeated ones
            client.publisher,
            DEVICE,
            YinYangSource("train", first_trial_id=10_000),
            rate=float("inf"),
            batch=100,
            count=500,
        )
        # the learner's own count (the counters take finished jobs at the next batch)
        await client.wait_for(lambda: service.online.steps >= 3, timeout=60)
        await stop_service(service, transport, task)
    assert service.counters["learning.steps"] >= 3
    assert state_problem(service.online.state_arrays()) is None
    assert service.counters["learning.rejected_steps"] >= 3
    # the checkpoint written at shutdown holds finite parameters and loads
    again = Service(config, bus.transport("again"), build_online(config))
    assert again.load_checkpoint()
    assert all(np.isfinite(w).all() for w in again.online.learner.net.w)


async def test_case2_invalid_state_is_never_checkpointed_and_a_bad_newest_falls_back(tmp_path):
    config = make_config(tmp_path, checkpoint={"keep": 3})
    bus = InProcessBus()
    service = Service(config, bus.transport("s"), build_online(config))
    good = service.save_checkpoint()
    service.online.learner.net.w[0][0, 0] = 1e300
    with pytest.raises(ValueError, match="refused"):
        service.save_checkpoint()
    service.online.learner.net.w[0][0, 0] = 0.5
    service.save_checkpoint()
    paths = checkpoint_paths(tmp_path, 3)
    assert paths[0] == good and paths[1].is_file()
    paths[0].write_bytes(b"torn")  # the newest is corrupt
    fresh = Service(config, bus.transport("t"), build_online(config))
    assert fresh.load_checkpoint()  # falls back to the older one, no hand needed
    assert fresh.counters["checkpoints.skipped"] == 1
    assert fresh.online.learner.net.w[0][0, 0] != 0.5  # it is the first checkpoint's


# -- case 3: reset double-counts ----------------------------------------------------------


async def test_case3_reset_never_adds_the_checkpoint_counters_again(tmp_path):
    bus = InProcessBus()
    config = make_config(tmp_path)
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await stream(client, 300)
        await client.wait_for(lambda: service.counters["trials.received"] >= 300, timeout=60)
        await _command(client, "checkpoint", "c")
        await _answered(client, "c")
        for i in range(3):
            await _command(client, "reset", f"r{i}")
            assert (await _answered(client, f"r{i}")).ok
        received = service.counters["trials.received"]
        await stop_service(service, transport, task)
    assert received == 300


# -- case 4: reset reuses sequence numbers -------------------------------------------------


def _record(client):
    """Keep every raw message the client receives: (topic, envelope)."""
    raw = []
    original = client.transport._inbox.put

    def keep(msg):
        raw.append((msg.topic, decode(msg.payload)))
        original(msg)

    client.transport._inbox.put = keep
    return raw


async def test_case4_duplicate_reset_never_reuses_or_lowers_sequence_numbers(tmp_path):
    bus = InProcessBus()
    config = make_config(tmp_path)
    async with Client(bus) as client:
        raw = _record(client)
        service, transport, task = await start_service(bus, config)
        await stream(client, 300)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 300, timeout=60)
        await _command(client, "checkpoint", "c")
        await _answered(client, "c")
        await asyncio.sleep(0.3)  # a metrics message or two
        # a QoS 1 duplicate: the same reset twice
        await _command(client, "reset", "dup")
        await _command(client, "reset", "dup")
        await client.wait_for(
            lambda: sum(r.correlation_id == "dup" for r in client.of(Reply)) == 2, timeout=60
        )
        await asyncio.sleep(0.5)
        await stop_service(service, transport, task)
    by_topic: dict[str, list[int]] = {}
    for t, env in raw:
        if env.sender == DEVICE:
            by_topic.setdefault(t, []).append(env.seq)
    for t, seqs in by_topic.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), t


async def test_case4_two_crashes_after_one_checkpoint_never_reuse_numbers(tmp_path):
    config = make_config(tmp_path)
    bus = InProcessBus()
    runs = []
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await stop_service(service, transport, task)  # the one checkpoint
        for _ in range(2):  # two crashes (no checkpoint written) after it
            raw = _record(client)
            service, transport, task = await start_service(bus, config)
            await _command(client, "status", "s")
            await client.wait_for(lambda r=raw: any(t.endswith("/reply") for t, _ in r), timeout=60)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            transport.abort()
            runs.append({(t, env.seq) for t, env in raw if env.sender == DEVICE})
    assert runs[0] and runs[1] and not runs[0] & runs[1]
    assert min(s for _, s in runs[1]) > max(s for _, s in runs[0])


def test_case4_boot_epoch_grows_at_every_start_and_the_will_closes_its_boot(tmp_path):
    now = 1_800_000_000.0
    first = next_boot_epoch(tmp_path, now_s=now)
    second = next_boot_epoch(tmp_path, now_s=now)  # same minute, same folder
    assert second == first + 1
    assert next_boot_epoch(None, now_s=now) == first  # the clock's epoch
    will = decode(status_will(DEVICE, second).payload)
    assert will.seq == ((second + 1) << EPOCH_SHIFT) - 1
    assert will.seq < ((second + 1) << EPOCH_SHIFT) and will.seq > (second << EPOCH_SHIFT)


# -- case 5: retained and stale commands ---------------------------------------------------


async def test_case5_retained_and_stale_commands_are_refused_never_run():
    bus = InProcessBus()
    async with Client(bus) as client:
        await _command(client, "pause", "retained", retain=True)
        service, transport, task = await start_service(bus, make_config())
        refused = await _answered(client, "retained")
        assert not refused.ok and "retained" in refused.error
        old = encode(
            Command("pause", "old", {}),
            seq=5,
            sender="tester",
            timestamp_ns=time.time_ns() - 3600 * 10**9,
        )
        await client.transport.publish(topic(DEVICE, "cmd", name="pause"), old)
        stale = await _answered(client, "old")
        await stop_service(service, transport, task)
    assert not stale.ok and "time stamp" in stale.error
    assert not service.paused
    assert service.counters["commands.refused.retained"] == 1
    assert service.counters["commands.refused.stale"] == 1


# -- case 7: names, undecodable commands, unknown arguments --------------------------------


async def test_case7_name_mismatch_undecodable_and_unknown_arguments_are_refused():
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, make_config())
        await _command(client, "pause", "mismatch", body_name="status")
        good = encode(Command("lr", "nan", {"scale": 0.5}), seq=0, sender="tester")
        packed = msgpack.unpackb(good)
        packed["body"]["args"]["scale"] = float("nan")
        await client.transport.publish(topic(DEVICE, "cmd", name="lr"), msgpack.packb(packed))
        await _command(client, "lr", "extra", {"scale": 0.5, "sneaky": 1})
        await _command(client, "pause", "args", {"hard": True})
        replies = [await _answered(client, cid) for cid in ("mismatch", "nan", "extra", "args")]
        await stop_service(service, transport, task)
    assert not any(r.ok for r in replies)
    assert "differs" in replies[0].error
    assert "undecodable" in replies[1].error
    assert "sneaky" in replies[2].error and "hard" in replies[3].error
    assert not service.paused and service.online.lr_scale == 1.0


async def test_duplicate_command_is_answered_again_not_run_twice():
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, make_config())
        await _command(client, "pause", "p")
        await _command(client, "pause", "p")
        await client.wait_for(
            lambda: sum(r.correlation_id == "p" for r in client.of(Reply)) == 2, timeout=60
        )
        await stop_service(service, transport, task)
    assert service.counters["commands.duplicate"] == 1
    assert service.counters["commands.executed"] == 1


# -- case 8 (service part): heartbeat ------------------------------------------------------


async def test_case8_alive_heartbeat_with_a_counter_on_its_period():
    bus = InProcessBus()
    config = make_config(publish={"heartbeat_period_s": 0.1})
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await client.wait_for(
            lambda: sum(s.state == "alive" for s in client.of(Status)) >= 3, timeout=60
        )
        await stop_service(service, transport, task)
    beats = [json.loads(s.detail)["heartbeat"] for s in client.of(Status) if s.state == "alive"]
    assert beats[:3] == [1, 2, 3]
    assert all(len(s.detail) <= 256 for s in client.of(Status))
    # the monitor judges silence by the device's own period, not an assumed 5 s
    periods = {
        json.loads(s.detail)["heartbeat_period_s"] for s in client.of(Status) if s.state != "dead"
    }
    assert periods == {0.1}


async def test_supervision_dead_status_goes_out_even_when_metrics_fail_for_good():
    bus = InProcessBus()
    config = make_config(supervision={"max_task_restarts": 1})
    async with Client(bus) as client:
        transport = bus.transport("service")
        await transport.__aenter__()
        service = Service(config, transport, build_online(config))

        async def broken(*args, **kwargs):
            raise RuntimeError("metrics on fire")

        service._metrics.loop = broken  # type: ignore[method-assign]
        service._metrics.publish = broken  # type: ignore[method-assign]
        with pytest.raises(ServiceFailed, match="metrics on fire"):
            await asyncio.wait_for(service.run(), 30)
        await transport.__aexit__(None, None, None)
        await client.wait_for(lambda: any(s.state == "dead" for s in client.of(Status)), timeout=60)
    assert "metrics" in [s for s in client.of(Status) if s.state == "dead"][-1].detail


def test_one_list_of_command_names_serves_service_cli_and_docs() -> None:
    from pathlib import Path

    from delgrad.protocols import COMMAND_NAMES
    from delgrad.runtime.service._command_args import ARG_SPECS

    assert list(COMMAND_NAMES) == sorted(ARG_SPECS)
    docs = (Path(__file__).parents[3] / "docs" / "runtime.md").read_text()
    section = docs[docs.index("## Commands") :]
    for name in COMMAND_NAMES:
        assert f"`{name}" in section, name
