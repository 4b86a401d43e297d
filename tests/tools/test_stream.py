"""Continuous streaming of a recording: window labels, offsets, pacing, the client API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from delgrad.errors import ConfigError, ParameterError
from delgrad.protocols import (
    InProcessBus,
    Labels,
    MqttTransport,
    Publisher,
    SensorClient,
    SensorEvents,
    decode,
    subscription,
)
from delgrad.runtime.sources import EventRecording, LabelSpans, PixelMapping
from delgrad.tools._stream import plan_stream, stream_recording


def _recording() -> EventRecording:
    # Two 30 us "digits" (labels 4 and 2) on a 2 x 1 sensor, origin 100 us.
    t = np.array([101.0, 105.0, 129.0, 131.0, 150.0, 159.0])
    x = np.array([0, 1, 0, 1, 1, 0])
    spans = LabelSpans(np.array([100.0, 130.0]), np.array([130.0, 160.0]), np.array([4, 2]))
    zeros = np.zeros(6, np.int64)
    return EventRecording(t, x, zeros, zeros.astype(np.int8), 2, 1, spans)


def test_plan_labels_each_device_window_by_its_middle():
    mapping = PixelMapping(2, 1, us_per_tau=10.0)
    plan = plan_stream(_recording(), mapping, window_length=3.0)  # 30 us windows from 0
    np.testing.assert_array_equal(plan.t_us, [1.0, 5.0, 29.0, 31.0, 50.0, 59.0])
    np.testing.assert_array_equal(plan.window_ids, [0, 1])
    np.testing.assert_array_equal(plan.window_labels, [4, 2])
    np.testing.assert_array_equal(plan.window_end_us, [30.0, 60.0])
    assert plan.span_us == 60.0 and plan.n_channels == 2
    half = plan_stream(_recording(), mapping, window_length=3.0, window_period=1.5)
    # windows every 15 us: middles at 15, 30, 45, 60 (the last is past the spans)
    np.testing.assert_array_equal(half.window_labels, [4, 2, 2])
    with pytest.raises(ConfigError):
        plan_stream(_recording(), mapping, window_length=0.0)


async def _collect(bus: InProcessBus, device: str):
    sub = bus.transport("sub")
    await sub.connect()
    await sub.subscribe(subscription(device), qos=1)
    return sub


async def test_stream_sends_events_then_labels_and_continues_after_an_offset():
    bus = InProcessBus()
    sub = await _collect(bus, "dev")
    pub_t = bus.transport("sensor")
    await pub_t.connect()
    plan = plan_stream(_recording(), PixelMapping(2, 1, us_per_tau=10.0), window_length=3.0)
    stats = await stream_recording(
        Publisher(pub_t, "sensor"),
        "dev",
        plan,
        speed=float("inf"),
        chunk_us=30.0,
        passes=2,
        offset_us=60.0,
    )
    assert stats.passes == 2 and stats.end_us == 180.0 and stats.labels == 4
    msgs = []
    for _ in range(stats.event_messages + stats.label_messages):
        msgs.append(decode((await sub.recv()).payload).message)
    events = [m for m in msgs if isinstance(m, SensorEvents)]
    labels = [m for m in msgs if isinstance(m, Labels)]
    times = np.concatenate([m.times for m in events])
    np.testing.assert_array_equal(times[:6], [61.0, 65.0, 89.0, 91.0, 110.0, 119.0])
    np.testing.assert_array_equal(times[6:], times[:6] + 60.0)
    assert all(m.time_unit == "us" for m in events)
    ids = np.concatenate([m.trial_ids for m in labels])
    np.testing.assert_array_equal(ids, [2, 3, 4, 5])  # offset 60 us = 2 windows
    np.testing.assert_array_equal(np.concatenate([m.labels for m in labels]), [4, 2, 4, 2])
    # A window's label follows the events that pass its end.
    assert isinstance(msgs[0], SensorEvents) and isinstance(msgs[1], Labels)
    with pytest.raises(ConfigError, match="--offset-us must be a whole number of window periods"):
        await stream_recording(Publisher(pub_t, "s2"), "dev", plan, offset_us=7.0)


async def test_the_printed_offset_comes_back_in_for_any_us_per_tau():
    # three tau per 100 ms window at us_per_tau 33333.333333: a period of 99,999.999999 us,
    # which the sensor prints rounded to whole microseconds
    bus = InProcessBus()
    sub = await _collect(bus, "dev")
    pub_t = bus.transport("sensor")
    await pub_t.connect()
    rec = _recording()
    rec = EventRecording(
        rec.t_us * 1000.0, rec.x, rec.y, rec.p, 2, 1,
        LabelSpans(rec.labels.start_us * 1000.0, rec.labels.end_us * 1000.0, rec.labels.label),
    )  # fmt: skip
    plan = plan_stream(rec, PixelMapping(2, 1, us_per_tau=33333.333333), window_length=3.0)
    first = await stream_recording(Publisher(pub_t, "s"), "dev", plan, speed=float("inf"))
    printed = float(f"{first.end_us:.0f}")
    assert printed != first.end_us  # the value a user copies is not on the grid
    second = await stream_recording(
        Publisher(pub_t, "s"), "dev", plan, speed=float("inf"), offset_us=printed
    )
    labels = []
    for _ in range(2 * (first.event_messages + first.label_messages)):
        msg = decode((await sub.recv()).payload).message
        if isinstance(msg, Labels):
            labels.append(msg.trial_ids)
    n = len(plan.window_ids)
    ids = np.concatenate(labels)
    windows = round(first.end_us / plan.period_us)
    np.testing.assert_array_equal(ids, np.concatenate([plan.window_ids, plan.window_ids + windows]))
    assert second.end_us == pytest.approx(2 * first.end_us, abs=1e-6) and n >= 1
    with pytest.raises(ConfigError, match=r"e\.g\. 100000"):
        await stream_recording(Publisher(pub_t, "s"), "dev", plan, offset_us=printed + 10.0)


async def test_stream_is_paced_by_the_clock():
    bus = InProcessBus()
    pub_t = bus.transport("sensor")
    await pub_t.connect()
    plan = plan_stream(_recording(), PixelMapping(2, 1, us_per_tau=10.0), window_length=3.0)
    stats = await stream_recording(
        Publisher(pub_t, "sensor"), "dev", plan, speed=60e-6 / 0.2, chunk_us=30.0
    )
    # 60 us of recording at 0.2 s per 60 us
    assert 0.18 <= stats.elapsed_s < 1.0


async def test_sensor_client_publishes_events_and_labels():
    bus = InProcessBus()
    sub = await _collect(bus, "mine")
    async with SensorClient(bus.transport("c"), device="mine", us_per_tau=6.0) as sensor:
        await sensor.publish_events([0, 3], [10.0, 12.5])
        await sensor.publish_labels([0], [7])
        assert sensor.window_of(15.0) == 1  # 15 us = 2.5 tau_s = window 1 of 2.5 tau_s
    ev = decode((await sub.recv()).payload).message
    lab = decode((await sub.recv()).payload).message
    np.testing.assert_array_equal(ev.channels, [0, 3])
    assert ev.time_unit == "us" and lab.labels.tolist() == [7]
    with pytest.raises(ConfigError, match="device"):
        SensorClient(bus.transport("d"), device="no spaces")
    async with SensorClient(bus.transport("e"), device="mine") as sensor:
        with pytest.raises(ParameterError, match="channels"):
            await sensor.publish_events([-1], [1.0])


@pytest.mark.broker
async def test_an_unpaced_stream_loses_nothing_to_its_outgoing_queue(mosquitto) -> None:
    # 4,000 messages as fast as the host encodes them, through a transport whose
    # outgoing queue holds 200 QoS 0 messages: the broker's acknowledgements pace it
    n = 4000
    t = np.arange(n, dtype=np.float64) * 10.0 + 0.5  # one event per 10 us chunk
    spans = LabelSpans(np.array([0.0]), np.array([n * 10.0]), np.array([1]))
    zeros = np.zeros(n, np.int64)
    rec = EventRecording(t, zeros, zeros, zeros.astype(np.int8), 1, 1, spans)
    plan = plan_stream(rec, PixelMapping(1, 1, us_per_tau=1e6), window_length=1.0)
    async with asyncio.timeout(60):
        rx = MqttTransport("127.0.0.1", mosquitto.port, client_id="rx", inbox_capacity=10 * n)
        tx = MqttTransport("127.0.0.1", mosquitto.port, client_id="tx", outbox_lossy_capacity=200)
        async with rx, tx:
            await rx.subscribe(subscription("dev"), qos=1)
            stats = await stream_recording(
                Publisher(tx, "s"), "dev", plan, speed=float("inf"), chunk_us=10.0
            )
            await tx.flush(timeout=10)
            got = 0
            while got < stats.event_messages + stats.label_messages:
                await rx.recv(timeout=10)
                got += 1
    assert stats.event_messages == n and stats.events == n
    assert tx.stats.dropped_out_lossy == 0 and tx.stats.dropped_out_reliable == 0


async def test_a_stopped_stream_reports_where_it_really_stopped() -> None:
    # 100 windows of 30 us, one event each; stopped after the chunk that ends at 300 us
    n = 100
    t = np.arange(n, dtype=np.float64) * 30.0 + 1000.0 + 5.0  # recording clock from 1000 us
    spans = LabelSpans(np.array([1000.0]), np.array([1000.0 + 30.0 * n]), np.array([1]))
    zeros = np.zeros(n, np.int64)
    rec = EventRecording(t, zeros, zeros, zeros.astype(np.int8), 1, 1, spans)
    plan = plan_stream(rec, PixelMapping(1, 1, us_per_tau=10.0), window_length=3.0)
    bus = InProcessBus()
    pub_t = bus.transport("sensor")
    await pub_t.connect()
    stop = asyncio.Event()
    calls = [0.0]

    def clock() -> float:  # 1 s per call (always late: no waiting); stop after 10 chunks
        calls[0] += 1.0
        if calls[0] > 11:
            stop.set()
        return calls[0]

    stats = await stream_recording(
        Publisher(pub_t, "s"), "dev", plan, speed=1.0, chunk_us=30.0,
        offset_us=600.0, stop=stop, clock=clock,
    )  # fmt: skip
    assert stats.stopped and stats.passes == 0 and stats.events < n
    sent_us = stats.events * 30.0  # one event per 30 us chunk, every chunk sent whole
    assert stats.stopped_in_pass_us == sent_us
    assert stats.stopped_at_recording_us == 1000.0 + sent_us
    assert stats.end_us == 600.0 + sent_us  # the next whole window on the device
    line = stats.summary()
    assert f"--start-us {1000 + sent_us:.0f} --offset-us {600 + sent_us:.0f}" in line
    assert "ended at" not in line
