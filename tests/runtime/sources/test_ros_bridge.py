"""ROS 2 messages as the mqtt_client bridge frames them decode to exactly the events
of the same messages written to and read from a bag; what cannot be taken is
refused with a counted reason, never a traceback.

The framing is built here by hand with rosbags' serializer, as mqtt_client 2.5's
``MqttClient::ros2mqtt`` builds it: the message's CDR bytes, after the CDR bytes of
a ``builtin_interfaces/msg/Time`` when ``inject_timestamp`` is on; the type as a CDR
``mqtt_client_interfaces/msg/RosMsgType`` on ``mqtt_client/ros_msg_type/<topic>``.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from delgrad.runtime.sources import (
    BridgeDecoder,
    BridgeRefusal,
    EventRecording,
    read_rosbag,
)
from delgrad.runtime.sources._writers import _evt3_payload

pytest.importorskip("rosbags")
pytest.importorskip("faery")

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from delgrad.runtime.sources import event_typestore

TOPIC = "ros/events"
W, H = 64, 48
RMT = "mqtt_client_interfaces/msg/RosMsgType"


def _store():
    store = event_typestore()
    # the bridge's type message, field for field as mqtt_client_interfaces declares it
    store.register(
        get_types_from_msg("string md5\nstring name\nstring definition\nbool stamped\n", RMT)
    )
    return store


STORE = _store()
Time = STORE.types["builtin_interfaces/msg/Time"]
Header = STORE.types["std_msgs/msg/Header"]


def type_payload(name: str, stamped: bool) -> bytes:
    msg = STORE.types[RMT](md5="", name=name, definition="", stamped=stamped)
    return bytes(STORE.serialize_cdr(msg, RMT))


def framed(msg, name: str, stamped: bool, sent_ns: int = 1_700_000_000_123_456_789) -> bytes:
    body = bytes(STORE.serialize_cdr(msg, name))
    if not stamped:
        return body
    stamp = Time(sec=sent_ns // 1_000_000_000, nanosec=sent_ns % 1_000_000_000)
    return bytes(STORE.serialize_cdr(stamp, "builtin_interfaces/msg/Time")) + body


def _recording(n: int = 3000, seed: int = 0) -> EventRecording:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000, 2_000_000, n)).astype(np.float64)
    return EventRecording(
        t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n), W, H
    )


def _packet(k: int, encoding: str, body: bytes, *, time_base: int = 0, big: bool = False):
    return STORE.types["event_camera_msgs/msg/EventPacket"](
        header=Header(stamp=Time(sec=k, nanosec=0), frame_id="cam"),
        height=H,
        width=W,
        seq=k,
        time_base=time_base,
        encoding=encoding,
        is_bigendian=big,
        events=np.frombuffer(body, np.uint8),
    )


def evt3_messages(tmp_path) -> list:
    """One EVT 3.0 stream cut at odd places (mid-vector, mid-word): the packets are
    slices of one word stream, as metavision_driver sends them. It uses vector
    events, which faery's encoder does not write."""
    rng = np.random.default_rng(3)
    words: list[int] = []
    for block in range(1, 200):
        words.append(0x8000 | block)  # time high
        for low in np.sort(rng.integers(0, 4096, 5)):
            words += [0x6000 | int(low), int(rng.integers(0, H))]  # time low, y
            if rng.random() < 0.5:
                words.append(0x2000 | int(rng.integers(0, W)) | int(rng.integers(0, 2)) << 11)
            else:  # vector base x, then 12- and 8-pixel vectors
                words.append(0x3000 | int(rng.integers(0, 20)) | int(rng.integers(0, 2)) << 11)
                for _ in range(int(rng.integers(1, 4))):
                    if rng.random() < 0.5:
                        words.append(0x4000 | int(rng.integers(1, 4096)))
                    else:
                        words.append(0x5000 | int(rng.integers(1, 256)))
    data = np.array(words, "<u2").tobytes()
    data += _evt3_payload(_recording(500, seed=4), slice(0, 500), tmp_path)  # faery-written
    cuts = [0, *sorted(rng.choice(np.arange(1, len(data)), 30, replace=False).tolist()), len(data)]
    return [_packet(k, "evt3", data[a:b]) for k, (a, b) in enumerate(itertools.pairwise(cuts))]


def mono_messages(big: bool) -> list:
    rec = _recording()
    base = 1_700_000_000_000_000_000
    msgs = []
    for k, rows in enumerate(np.array_split(np.arange(len(rec)), 7)):
        ns = (rec.t_us[rows] * 1000).astype(np.uint64)
        t0 = int(ns[0])
        words = (
            (ns - np.uint64(t0))
            | rec.x[rows].astype(np.uint64) << np.uint64(32)
            | rec.y[rows].astype(np.uint64) << np.uint64(48)
            | rec.p[rows].astype(np.uint64) << np.uint64(63)
        )
        body = words.astype(">u8" if big else "<u8").tobytes()
        msgs.append(_packet(k, "mono", body, time_base=base + t0, big=big))
    return msgs


def dvs_messages() -> list:
    rec = _recording(800)
    Event = STORE.types["dvs_msgs/msg/Event"]
    msgs = []
    for k, rows in enumerate(np.array_split(np.arange(len(rec)), 5)):
        events = []
        for i in rows:
            ns = 1_700_000_000_000_000_000 + int(rec.t_us[i]) * 1000 + 7
            events.append(
                Event(
                    x=int(rec.x[i]),
                    y=int(rec.y[i]),
                    ts=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
                    polarity=bool(rec.p[i]),
                )
            )
        msgs.append(
            STORE.types["dvs_msgs/msg/EventArray"](
                header=Header(stamp=Time(sec=k, nanosec=0), frame_id="cam"),
                height=H,
                width=W,
                events=events,
            )
        )
    return msgs


def bag_events(tmp_path, name: str, msgs: list) -> EventRecording:
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/events", name, typestore=STORE)
        for k, msg in enumerate(msgs):
            writer.write(conn, 1_000 + k, STORE.serialize_cdr(msg, name))
    return read_rosbag(bag)


def bridged_events(name: str, msgs: list, stamped: bool) -> EventRecording:
    decoder = BridgeDecoder()
    try:
        decoder.on_type(TOPIC, type_payload(name, stamped))
        parts = [decoder.events(TOPIC, framed(m, name, stamped)) for m in msgs]
    finally:
        decoder.close()
    return EventRecording(
        np.concatenate([p.t_us for p in parts]),
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.p for p in parts]),
        parts[0].width,
        parts[0].height,
    )


CASES = {
    "evt3": ("event_camera_msgs/msg/EventPacket", evt3_messages),
    "mono-little": ("event_camera_msgs/msg/EventPacket", lambda _: mono_messages(False)),
    "mono-big": ("event_camera_msgs/msg/EventPacket", lambda _: mono_messages(True)),
    "dvs": ("dvs_msgs/msg/EventArray", lambda _: dvs_messages()),
}


@pytest.mark.parametrize("stamped", [False, True], ids=["plain", "inject_timestamp"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bridged_messages_decode_to_the_events_of_the_same_messages_in_a_bag(
    tmp_path, case, stamped
):
    name, make = CASES[case]
    msgs = make(tmp_path)
    bag = bag_events(tmp_path, name, msgs)
    live = bridged_events(name, msgs, stamped)
    assert len(bag) >= 800
    assert (live.width, live.height) == (bag.width, bag.height) == (W, H)
    np.testing.assert_array_equal(live.t_us, bag.t_us)
    np.testing.assert_array_equal(live.x, bag.x)
    np.testing.assert_array_equal(live.y, bag.y)
    np.testing.assert_array_equal(live.p, bag.p)


def _refusal(decoder: BridgeDecoder, topic: str, payload: bytes) -> str:
    with pytest.raises(BridgeRefusal) as info:
        decoder.events(topic, payload)
    assert "\n" not in str(info.value)
    return info.value.reason


@pytest.mark.parametrize("stamped", [False, True])
def test_truncated_cdr_is_refused_at_every_cut(stamped):
    name = "event_camera_msgs/msg/EventPacket"
    msg = mono_messages(False)[0]
    payload = framed(msg, name, stamped)
    decoder = BridgeDecoder()
    decoder.on_type(TOPIC, type_payload(name, stamped))
    reasons = {_refusal(decoder, TOPIC, payload[:cut]) for cut in range(0, len(payload), 7)}
    assert reasons == {"undecodable"}
    # a stamped stream read as unstamped (or the other way) does not decode either
    decoder.on_type(TOPIC, type_payload(name, not stamped))
    assert _refusal(decoder, TOPIC, payload) == "undecodable"
    decoder.close()


def test_unknown_encoding_wrong_type_and_no_type_are_refused_by_reason():
    decoder = BridgeDecoder()
    name = "event_camera_msgs/msg/EventPacket"
    assert _refusal(decoder, TOPIC, framed(mono_messages(False)[0], name, False)) == "no_type"
    decoder.on_type(TOPIC, type_payload(name, False))
    for encoding in ("libcaer_cmp", "trigger", "x"):
        packet = _packet(0, encoding, b"\0" * 16)
        assert _refusal(decoder, TOPIC, framed(packet, name, False)) == "encoding"
    decoder.on_type(TOPIC, type_payload("sensor_msgs/msg/Image", False))
    assert _refusal(decoder, TOPIC, framed(mono_messages(False)[0], name, False)) == "wrong_type"
    with pytest.raises(BridgeRefusal) as info:
        decoder.on_type(TOPIC, b"\x00\x01\x00\x00\xff")
    assert info.value.reason == "undecodable"
    decoder.close()


def test_labels_as_int32_messages_with_and_without_stamp_and_as_primitive_text():
    decoder = BridgeDecoder()
    assert decoder.label("ros/label", b"7") == 7
    assert decoder.label("ros/label", b"-1") == -1
    with pytest.raises(BridgeRefusal) as info:
        decoder.label("ros/label", b"seven")
    assert info.value.reason == "bad_label"
    Int32 = STORE.types["std_msgs/msg/Int32"]
    for stamped in (False, True):
        decoder.on_type("ros/label", type_payload("std_msgs/msg/Int32", stamped))
        assert decoder.label("ros/label", framed(Int32(data=4), "std_msgs/msg/Int32", stamped)) == 4
    decoder.on_type("ros/label", type_payload("std_msgs/msg/String", False))
    with pytest.raises(BridgeRefusal) as info:
        decoder.label("ros/label", b"\x00\x01\x00\x00")
    assert info.value.reason == "wrong_type"
    decoder.close()


def test_the_relay_counts_each_refusal_logs_it_once_and_goes_on(caplog):
    from delgrad.protocols import Labels, SensorEvents
    from delgrad.tools._ros_relay import RosRelay, RosTopics, WindowClock

    name = "event_camera_msgs/msg/EventPacket"
    good = [framed(m, name, True) for m in mono_messages(False)]
    relay = RosRelay(
        "dev",
        RosTopics(),
        BridgeDecoder(),
        mapping={"pool": (8, 8)},
        us_per_tau=1000.0,
        window=WindowClock(100_000.0, 100_000.0),
    )
    prefix = "mqtt_client/ros_msg_type/"
    caplog.set_level(logging.WARNING, logger="delgrad.ros")
    assert relay.handle(TOPIC, good[0]) == []  # no type yet
    relay.handle(prefix + TOPIC, type_payload(name, True))
    relay.handle("ros/label", b"3")
    sent = []
    for payload in good:
        for bad in (payload[:-5], framed(_packet(0, "libcaer_cmp", b"\0" * 8), name, True)):
            assert relay.handle(TOPIC, bad) == []
        sent += relay.handle(TOPIC, payload)
    events = [m for _, m in sent if isinstance(m, SensorEvents)]
    labels = [m for _, m in sent if isinstance(m, Labels)]
    assert sum(m.channels.size for m in events) == 3000
    assert relay.counts["refused.undecodable"] == 7
    assert relay.counts["refused.encoding"] == 7
    assert relay.counts["refused.no_type"] == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings
    assert any("EventPacket encoding 'libcaer_cmp' is not supported" in w for w in warnings)
    # every window the stream has passed is labelled 3; first event at 1 ms -> 0 us
    ids = np.concatenate([m.trial_ids for m in labels])
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    assert set(np.concatenate([m.labels for m in labels]).tolist()) == {3}
    assert ids.size == int((events[-1].times[-1] - 100_000) // 100_000) + 1
    relay._decoder.close()
