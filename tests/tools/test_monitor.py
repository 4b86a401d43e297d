"""The monitor's state, its asyncio loop with re-sync, recordings and ``delgrad plot``."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from delgrad.protocols import (
    DeltaEncoder,
    IncomingMessage,
    InProcessBus,
    Metrics,
    NeuronParams,
    Publisher,
    Status,
    decode,
    encode,
    parameters_checksum,
    topic,
)
from delgrad.tools._cli import main
from delgrad.tools._cmd_monitor import _Recorder
from delgrad.tools._monitor import MonitorState, metric_order, monitor, render

SIZES = (4, 5, 3)
KINDS = ("synaptic", "none")


def _network(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"w": rng.normal(0, 1, (4, 5)), "d": rng.uniform(0.1, 1.0, (4, 5))},
        {"w": rng.normal(0, 1, (5, 3))},
    ]


def _moved(layers, seed):
    rng = np.random.default_rng(seed)
    return [{k: v + rng.normal(0, 0.05, v.shape) for k, v in lay.items()} for lay in layers]


class Feed:
    """Encodes messages like a device and feeds them to a MonitorState."""

    def __init__(self, state: MonitorState, device: str = "dev1") -> None:
        self.state, self.device, self.now = state, device, 1000.0
        self.seq: dict[str, int] = {}

    def __call__(self, kind: str, msg, *, retain: bool = False):
        t = topic(self.device, kind)
        s = self.seq.get(t, 0)
        self.seq[t] = s + 1
        self.now += 1.0
        payload = encode(msg, seq=s, sender=self.device)
        return self.state.feed(IncomingMessage(t, payload, 1, retain), self.now)


def test_state_from_a_stream_with_a_malformed_message_and_a_gap() -> None:
    state = MonitorState(resync_interval_s=0.0)
    feed = Feed(state)
    enc = DeltaEncoder(_network(), seq=10, encoding="float32")
    snap = lambda: enc.snapshot(  # noqa: E731
        layer_sizes=SIZES, neuron=NeuronParams(), delay_kinds=KINDS
    )
    rec = feed("status", Status("birth", 0.5, "starting"), retain=True)
    assert rec == {
        "time_s": 1001.0,
        "device": "dev1",
        "kind": "status",
        "state": "birth",
        "uptime_s": 0.5,
        "detail": "starting",
    }
    assert feed("params/latest", snap(), retain=True) is None
    cur = _network()
    for i in range(2):
        cur = _moved(cur, i)
        feed("params/delta", enc.delta(cur))
    view = state.devices["dev1"]
    assert view.params_seq == 12 and not view.replica.needs_resync
    rec = feed("metrics", Metrics(40, {"loss": 0.5, "accuracy": 0.75, "device": 3.0}))
    assert rec == {
        "time_s": 1005.0,
        "device": "dev1",
        "kind": "metrics",
        "step": 40,
        "accuracy": 0.75,
        "value.device": 3.0,  # a metric named like a record key does not clobber it
        "loss": 0.5,
    }
    # A malformed payload is counted, never raised.
    t = topic("dev1", "metrics")
    assert state.feed(IncomingMessage(t, b"\x93garbage", 0, False), 1006.0) is None
    assert state.malformed == 1 and "metrics" in state.last_error
    # Lose delta 13: delta 14 does not apply and the monitor asks for a re-sync.
    cur = _moved(cur, 2)
    enc.delta(cur)
    cur = _moved(cur, 3)
    feed("params/delta", enc.delta(cur))
    assert view.replica.needs_resync and view.params_seq == 12
    assert state.take_resync_requests() == ["dev1"] and state.take_resync_requests() == []
    assert view.resyncs == 1
    # The retained snapshot (now at 14) brings it back in step.
    feed("params/latest", snap(), retain=True)
    assert view.params_seq == 14 and not view.replica.needs_resync
    assert parameters_checksum(view.replica.layers()) == parameters_checksum(enc.view())
    stats = view.layer_stats()
    want = enc.view()
    assert [s.delay_kind for s in stats] == list(KINDS)
    assert stats[0].w_mean == pytest.approx(float(want[0]["w"].astype(np.float64).mean()))
    assert stats[0].w_std == pytest.approx(float(want[0]["w"].astype(np.float64).std()))
    assert stats[0].d_min == pytest.approx(float(want[0]["d"].min()))
    assert stats[0].d_max == pytest.approx(float(want[0]["d"].max()))
    assert stats[1].d_mean is None  # no delays in layer 1
    assert (view.state, view.step, view.metrics["accuracy"]) == ("birth", 40, 0.75)
    assert state.received == 8 and view.messages == 7
    # Sequence gaps of the non-retained topics are counted (the lost delta 13).
    assert state.sequence.missed == 0  # delta 13 was never encoded for the bus
    feed.seq[topic("dev1", "metrics")] += 2
    feed("metrics", Metrics(41, {"loss": 0.4}))
    assert state.sequence.missed == 2


def test_foreign_topics_and_device_limit() -> None:
    state = MonitorState(max_devices=1)
    payload = encode(Metrics(1, {"x": 1.0}), seq=0, sender="a")
    assert state.feed(IncomingMessage("other/topic", payload, 0, False), 1.0) is None
    assert state.foreign == 1
    # A message type that does not belong on its topic is ignored, not stored.
    assert state.feed(IncomingMessage(topic("a", "status"), payload, 0, False), 1.0) is None
    assert state.foreign == 2 and state.devices["a"].state is None
    assert state.feed(IncomingMessage(topic("b", "metrics"), payload, 0, False), 1.0) is None
    assert state.ignored_devices == 1 and list(state.devices) == ["a"]


def test_metric_order_and_render() -> None:
    names = ["zeta", "queue_depth", "loss", "prequential_accuracy", "samples_per_s", "drops"]
    assert sorted(names, key=metric_order) == [
        "prequential_accuracy",
        "loss",
        "samples_per_s",
        "drops",
        "queue_depth",
        "zeta",
    ]
    from rich.console import Console

    state = MonitorState()
    feed = Feed(state)
    feed("status", Status("alive", 3.0))
    feed("metrics", Metrics(7, {"loss": 0.25, "accuracy": 0.9, "join.expired": 3.0}))
    enc = DeltaEncoder(_network())
    feed("params/latest", enc.snapshot(layer_sizes=SIZES, neuron=NeuronParams(), delay_kinds=KINDS))
    console = Console(width=160, record=True, color_system=None)
    console.print(render(state, feed.now + 2))
    text = console.export_text()
    assert "dev1" in text and "alive" in text and "90.0" in text and "synaptic" in text
    assert text.index("acc %") < text.index("loss") and "join.expired" not in text
    console = Console(width=160, record=True, color_system=None)
    console.print(render(state, feed.now + 2, extra=("join.expired",)))
    assert "join.expired" in console.export_text()
    line = state.quiet_line(feed("metrics", Metrics(8, {"loss": 0.2, "accuracy": 1.0})))
    assert line.endswith("dev1 step=8 accuracy=100.0% loss=0.2")


async def test_monitor_loop_records_and_follows_parameters(tmp_path) -> None:
    bus = InProcessBus()
    enc = DeltaEncoder(_network(), seq=0, encoding="int8")

    def snapshot():
        return enc.snapshot(layer_sizes=SIZES, neuron=NeuronParams(), delay_kinds=KINDS)

    stop = asyncio.Event()
    records = []
    path = tmp_path / "rec.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        recorder = _Recorder(fh)

        def on_update(state: MonitorState, record) -> None:
            if record is not None:
                records.append(record)
                recorder.write(record)
            view = state.devices.get("dev1")
            if view is not None and view.params_seq == 5 and view.step == 99:
                stop.set()

        async with bus.transport("dev") as dev, bus.transport("mon") as mon:
            pub = Publisher(dev, "dev1")
            await pub.publish(topic("dev1", "status"), Status("alive", 1.0))
            await pub.publish(topic("dev1", "params/latest"), snapshot())  # retained
            state = MonitorState()
            task = asyncio.create_task(
                monitor(mon, "+", on_update=on_update, stop=stop, state=state, clock=lambda: 5.0)
            )
            await asyncio.sleep(0.05)  # let it subscribe
            assert state.devices["dev1"].params_seq == 0
            cur = _network()
            for i in range(5):
                cur = _moved(cur, i)
                delta = enc.delta(cur)
                if i != 2:  # delta 2 -> 3 is lost; the next snapshot brings it back
                    await pub.publish(topic("dev1", "params/delta"), delta)
                await pub.publish(topic("dev1", "params/latest"), snapshot())
                await pub.publish(topic("dev1", "metrics"), Metrics(i, {"loss": 1.0 / (i + 1)}))
            await pub.publish(topic("dev1", "metrics"), Metrics(99, {"loss": 0.1}))
            await dev.publish(topic("dev1", "metrics"), b"not msgpack")
            state = await asyncio.wait_for(task, 10)
    view = state.devices["dev1"]
    assert view.params_seq == 5 and view.replica.stats.applied == 4
    assert parameters_checksum(view.replica.layers()) == parameters_checksum(enc.view())
    lines = path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == records
    assert records[0] == {
        "time_s": 5.0,
        "device": "dev1",
        "kind": "status",
        "state": "alive",
        "uptime_s": 1.0,
        "detail": "",
    }
    assert [r["step"] for r in records[1:]] == [0, 1, 2, 3, 4, 99]
    assert records[-1]["loss"] == 0.1


async def _until(cond, what: str) -> None:
    async with asyncio.timeout(10):  # a deadline against hangs, not a timing assertion
        while not cond():
            await asyncio.sleep(0.005)


async def test_monitor_loop_resyncs_from_the_retained_snapshot() -> None:
    bus = InProcessBus()
    enc = DeltaEncoder(_network(), seq=0, encoding="float32")

    def snapshot():
        return enc.snapshot(layer_sizes=SIZES, neuron=NeuronParams(), delay_kinds=KINDS)

    retained_seen = []
    state = MonitorState(resync_interval_s=0.0)
    orig_feed = state.feed

    def spy(msg, now_s):
        if msg.retain:
            retained_seen.append(decode(msg.payload).message.seq)
        return orig_feed(msg, now_s)

    state.feed = spy  # type: ignore[method-assign]
    stop = asyncio.Event()
    latest = topic("dev1", "params/latest")
    # A tiny inbox: a burst of reliable messages overflows it and some are lost.
    async with bus.transport("dev") as dev, bus.transport("mon", inbox_capacity=2) as mon:
        pub = Publisher(dev, "dev1")
        await pub.publish(latest, snapshot())
        task = asyncio.create_task(monitor(mon, "dev1", stop=stop, state=state))
        await _until(lambda: "dev1" in state.devices, "the retained snapshot")
        view = state.devices["dev1"]
        cur = _network()
        for i in range(3):  # no await yields in between: the monitor cannot keep up
            cur = _moved(cur, i)
            await pub.publish(topic("dev1", "params/delta"), enc.delta(cur))
            await pub.publish(latest, snapshot())  # retained: the store keeps seq 3
        assert mon.stats.dropped_in_reliable == 4
        snap3 = snapshot()
        await _until(lambda: view.params_seq == 1, "delta 1")
        cur = _moved(cur, 3)
        await pub.publish(topic("dev1", "params/delta"), enc.delta(cur))  # 3 -> 4: a gap
        await _until(lambda: view.params_seq == 3, "the re-sync")
        assert view.resyncs == 1 and retained_seen == [0, 3]
        assert parameters_checksum(view.replica.layers()) == snap3.checksum
        stop.set()
        await asyncio.wait_for(task, 10)
    assert view.replica.stats.gaps == 1 and view.replica.stats.snapshots == 3  # 0, 1 and 3
    assert latest in mon._subs  # the device's own filter is kept (re-subscribed)


async def test_monitor_ends_after_duration_and_on_close() -> None:
    bus = InProcessBus()
    async with bus.transport("mon") as mon:
        state = await monitor(mon, "dev1", duration_s=0.05, poll_s=0.01)
        assert state.received == 0
    ticks = []
    async with bus.transport("mon2") as mon2:
        task = asyncio.create_task(monitor(mon2, on_update=lambda s, r: ticks.append(r)))
        await asyncio.sleep(0.05)
    await asyncio.wait_for(task, 5)  # the closed transport ends the loop
    assert set(ticks) <= {None}


# ---- delgrad plot and argument errors ------------------------------------------------


def test_plot_writes_a_png(tmp_path, capsys) -> None:
    rec = tmp_path / "rec.jsonl"
    rows = [{"time_s": 10.0, "device": "d", "kind": "status", "state": "alive"}]
    rows += [
        {"time_s": 10.0 + i, "device": "d", "kind": "metrics", "step": i, "loss": 1 / (i + 1)}
        for i in range(5)
    ]
    rec.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"time_s": 20, "dev')
    assert main(["plot", str(rec)]) == 0
    png = tmp_path / "rec.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cut-off" in capsys.readouterr().err
    out = tmp_path / "x.png"
    assert main(["plot", str(rec), "--out", str(out), "--device", "d"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"time_s": 1}\nnot json\n{"time_s": 2}\n', ":2: not valid JSON"),
        ('{"time_s": 1}\n[1, 2]\n', ":2: expected a JSON object"),
        ('{"time_s": 1}\n\n{"loss": 2}\n', ":3: needs a finite numeric time_s"),
    ],
)
def test_plot_malformed_recording(tmp_path, capsys, content, match) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_text(content)
    assert main(["plot", str(rec)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_plot_missing_file(tmp_path, capsys) -> None:
    assert main(["plot", str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--broker", "ftp://h"], "scheme"),
        (["--broker", "mqtt://h:99999"], "port"),
        (["bad/device"], "device"),
        (["--duration", "0"], "--duration"),
    ],
)
def test_monitor_bad_arguments_exit_2(argv, match, capsys) -> None:
    assert main(["monitor", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_monitor_record_file_that_cannot_be_opened(tmp_path, capsys) -> None:
    assert main(["monitor", "--record", str(tmp_path / "no" / "dir.jsonl")]) == 2
    assert "--record" in capsys.readouterr().err


def test_decode_of_recorded_status_roundtrip() -> None:
    # The status record fields are exactly the message's (nothing invented).
    payload = encode(Status("lost", 2.0, "gone"), seq=0, sender="x")
    rec = MonitorState().feed(IncomingMessage(topic("x", "status"), payload, 1, True), 7.0)
    assert rec is not None and decode(payload).message == Status(
        rec["state"], rec["uptime_s"], rec["detail"]
    )


def test_active_health_warnings_show_beside_the_status() -> None:
    from rich.console import Console

    state = MonitorState()
    feed = Feed(state)
    feed("status", Status("alive", 3.0))
    values = {"accuracy": 0.9, "health.storage": 1.0, "health.no_steps": 0.0}
    feed("metrics", Metrics(7, {**values, "health.warnings": 1.0}))
    assert state.devices["dev1"].warnings == ["storage"]
    console = Console(width=80, record=True, color_system=None)
    console.print(render(state, feed.now + 1))
    assert "alive storage" in console.export_text()
    feed("metrics", Metrics(8, {**values, "health.storage": 0.0, "health.warnings": 0.0}))
    console = Console(width=80, record=True, color_system=None)
    console.print(render(state, feed.now + 1))
    text = console.export_text()
    assert "storage" not in text and "alive" in text


def test_a_retained_alarm_is_shown_recorded_and_cleared() -> None:
    from delgrad.protocols import Alarm

    state = MonitorState()
    feed = Feed(state)
    feed("status", Status("alive", 3.0))
    record = feed("alarm", Alarm("degraded", True, 0.8, 0.93, "sliding accuracy fell"))
    assert record is not None and record["kind"] == "alarm" and record["active"] is True
    assert state.devices["dev1"].warnings == ["degraded"] and state.foreign == 0
    assert "ALARM degraded: sliding accuracy fell" in state.quiet_line(record)
    feed("alarm", Alarm("degraded", False, 0.92, 0.93, "recovered"))
    assert state.devices["dev1"].warnings == []
