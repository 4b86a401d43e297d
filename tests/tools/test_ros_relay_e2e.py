"""A ROS 2 robot through its MQTT bridge, end to end: bridge-framed messages (as
mqtt_client sends them, built with rosbags) -> Mosquitto -> ``delgrad ros`` ->
``delgrad run``, and the device's predictions and accuracy back on the bridge's
primitive topics. Broken messages on the way are counted and logged once; the
relay keeps going."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest

from delgrad.protocols import Metrics, MqttTransport

from ._e2e_helpers import (  # noqa: F401  (fixtures)
    DELGRAD,
    RuntimeProcess,
    Subscriber,
    processes_fixture,
    wait_for,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]
pytest.importorskip("rosbags")
pytest.importorskip("faery")

from tests.runtime.sources.test_ros_bridge import (  # noqa: E402
    _packet,
    framed,
    mono_messages,
    type_payload,
)

US_PER_TAU = 6_000.0  # 3 tau_s windows of 18 ms
MAPPING = ["--roi", "0,0,32,32", "--pool", "4", "--polarity", "split"]  # 128 channels
PACKET = "event_camera_msgs/msg/EventPacket"


async def test_a_bridged_event_camera_feeds_a_device_and_hears_its_predictions(
    mosquitto, processes
):
    device = "robot"
    rt = RuntimeProcess(
        processes,
        mosquitto.url,
        device,
        model={"recipe": "digits_events_H100_W"},
        ingest={"us_per_tau": US_PER_TAU, "window_length": 3.0, "idle_flush_s": 0.5},
        learning={"step_every": 10},
    )
    robot = MqttTransport("127.0.0.1", mosquitto.port, client_id=f"bridge-{uuid.uuid4().hex[:6]}")
    await robot.connect()
    await robot.subscribe("ros/prediction", qos=0)
    await robot.subscribe("ros/accuracy", qos=0)
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await wait_for(lambda: sub.of(Metrics), 60, "the service's first metrics")
        relay, log = processes.spawn(
            [*DELGRAD, "ros", "--broker", mosquitto.url, "--device", device, *MAPPING,
             "--window-length", "3", "--us-per-tau", str(US_PER_TAU), "--duration", "25"],
            "ros",
        )  # fmt: skip
        await wait_for(lambda: "relaying" in log.read_text(), 30, "the relay's start line")
        # what mqtt_client sends: the type (retained) and the stamped payloads
        await robot.publish(
            "mqtt_client/ros_msg_type/ros/events", type_payload(PACKET, True), qos=1, retain=True
        )
        await robot.publish("ros/label", b"5", qos=1)
        sent = 0
        for k, msg in enumerate(mono_messages(False)):
            payload = framed(msg, PACKET, True)
            await robot.publish("ros/events", payload, qos=1)
            sent += msg.events.size // 8
            # the broken ones in between: truncated CDR, an unknown encoding
            await robot.publish("ros/events", payload[: 40 + k], qos=1)
            await robot.publish(
                "ros/events", framed(_packet(k, "libcaer_cmp", b"\0" * 8), PACKET, True), qos=1
            )
            await asyncio.sleep(0.05)
        # a wrong message type announced on the label topic, then a label in it
        await robot.publish(
            "mqtt_client/ros_msg_type/ros/label", type_payload(PACKET, False), qos=1
        )
        await robot.publish("ros/label", b"\x00\x01\x00\x00\x05\x00\x00\x00", qos=1)

        def received() -> float:
            m = sub.of(Metrics)
            return m[-1].values.get("events.received", 0.0) if m else 0.0

        # the 128-channel mapping keeps the events inside the 32 x 32 region of interest
        rec_x = np.concatenate(
            [np.frombuffer(m.events.tobytes(), "<u8") >> np.uint64(32) & np.uint64(0xFFFF)
             for m in mono_messages(False)]
        )  # fmt: skip
        rec_y = np.concatenate(
            [np.frombuffer(m.events.tobytes(), "<u8") >> np.uint64(48) & np.uint64(0x7FFF)
             for m in mono_messages(False)]
        )  # fmt: skip
        inside = int(np.count_nonzero((rec_x < 32) & (rec_y < 32)))
        await wait_for(lambda: received() > 0, 30, "events at the device")
        heard: dict[str, list[bytes]] = {"ros/prediction": [], "ros/accuracy": []}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            len(heard["ros/prediction"]) >= 50 and heard["ros/accuracy"]
        ):
            try:
                incoming = await robot.recv(timeout=0.5)
            except TimeoutError:
                continue
            heard.setdefault(incoming.topic, []).append(incoming.payload)
        # the metrics come every period: wait for the one that counts the last events
        await wait_for(lambda: received() >= inside, 30, "every event counted at the device")
        rt.assert_running()
        assert relay.poll() is None, log.read_text()
    relay.send_signal(2)
    relay.wait(15)
    await robot.close()
    out = log.read_text()
    assert relay.returncode == 0, out
    assert "Traceback" not in out
    assert received() == inside
    assert f"({sent} events, {inside} sent)" in out, out
    for line in (
        "ros/events: 28 bytes are not a CDR",  # the first truncated one, after its stamp
        "EventPacket encoding 'libcaer_cmp' is not supported (evt3 or mono;",
        "ros/label: the bridge says event_camera_msgs/msg/EventPacket, this topic takes "
        "std_msgs/msg/Int32 (or another std_msgs integer)",
    ):
        assert out.count(line) == 1, (line, out)
    assert "refused: encoding 7, undecodable 7, wrong_type 1" in out, out
    predictions = heard["ros/prediction"]
    assert len(predictions) >= 50
    assert all(p.decode().lstrip("-").isdigit() for p in predictions)
    assert heard["ros/accuracy"] and all(b"." in a for a in heard["ros/accuracy"])
    assert 0.0 <= float(heard["ros/accuracy"][-1]) <= 1.0
