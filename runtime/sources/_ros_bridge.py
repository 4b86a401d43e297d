"""ROS 2 messages as the standard ROS 2 <-> MQTT bridge (ika-rwth-aachen
``mqtt_client``) puts them on MQTT, decoded without ROS.

The bridge's framing (mqtt_client 2.5, ``MqttClient::ros2mqtt``):

* a topic bridged as a ROS message sends the message's CDR serialisation (with
  its 4-byte encapsulation header) on its MQTT topic; with ``inject_timestamp``
  the payload starts with the CDR serialisation of the send time, a
  ``builtin_interfaces/msg/Time`` (12 bytes), followed by the message;
* with every message it also sends, retained, an
  ``mqtt_client_interfaces/msg/RosMsgType`` (CDR: md5, name, definition,
  stamped) on ``mqtt_client/ros_msg_type/`` + the MQTT topic: the type name, and
  whether the payloads carry the time stamp;
* a topic bridged with ``primitive: true`` sends the value as plain text (a
  ``std_msgs`` String's characters, or a number), with no type topic.

:class:`BridgeDecoder` keeps what the type topics said and decodes the data
topics: event messages into :class:`EventRecording` (the bag reader's decoders:
the same pixels and times as the same messages read from a bag), label messages
into a class index. Anything it cannot take raises :class:`BridgeRefusal`,
whose ``reason`` is the counter name.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources._recording import EventRecording
from delgrad.runtime.sources._rosbag import (
    EVENT_MSG_TYPES,
    decode_event_array,
    decode_evt3,
    decode_mono,
    event_typestore,
)

__all__ = [
    "LABEL_MSG_TYPES",
    "ROS_MSG_TYPE",
    "ROS_MSG_TYPE_DEFINITION",
    "STAMP_BYTES",
    "TYPE_TOPIC_PREFIX",
    "BridgeDecoder",
    "BridgeRefusal",
]

#: The bridge's MQTT topic prefix of the type messages (``kRosMsgTypeMqttTopicPrefix``).
TYPE_TOPIC_PREFIX = "mqtt_client/ros_msg_type/"
#: The type message, as mqtt_client_interfaces/msg/RosMsgType.msg declares it.
ROS_MSG_TYPE = "mqtt_client_interfaces/msg/RosMsgType"
ROS_MSG_TYPE_DEFINITION = "string md5\nstring name\nstring definition\nbool stamped\n"
#: Bytes of an injected time stamp: a CDR ``builtin_interfaces/msg/Time`` (4-byte
#: encapsulation header, int32 sec, uint32 nanosec).
STAMP_BYTES = 12
#: Label message types (ROS-message form); the documented one is std_msgs/msg/Int32.
LABEL_MSG_TYPES = tuple(
    f"std_msgs/msg/{t}" for t in ("Int32", "Int8", "Int16", "Int64", "UInt8", "UInt16", "UInt32")
)
_ENCODINGS = ("evt3", "mono")


class BridgeRefusal(ConfigError):
    """A bridged message that is not taken; ``reason`` names its counter
    (``no_type``, ``undecodable``, ``wrong_type``, ``encoding``, ``bad_events``,
    ``bad_label``)."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass
class _Evt3State:
    """Where faery's EVT 3.0 decoder stands at the end of a packet (faery 0.7,
    ``src/evt/decoder.rs``): time ``t_us`` (it never goes back), 24-bit wraps,
    the accepted time-high and time-low fields, x, y and polarity. Packets are
    slices of one word stream; the next is decoded after words that restore this
    state, so the events are those of decoding all packets at once (as the bag
    reader does)."""

    started: bool = False
    t_us: float = 0.0
    wraps: int = 0
    msb: int = 0
    lsb: int = 0
    x: int = 0
    y: int = 0
    on: int = 0
    carry: bytes = b""

    def prelude(self) -> list[int]:
        """Words that take a fresh decoder to this state (emitting no event)."""
        if not self.started:
            return []
        # faery takes a time-high step up of at most 4093 (a larger one is a glitch)
        words = [0x8000 | 2000] if self.msb >= 4094 else []
        words += [0x8000 | self.msb, 0x6000 | self.lsb, 0x0000 | self.y]
        return [*words, 0x3000 | self.on << 11 | self.x]  # vector base: x and polarity


_TIME_HIGH, _TIME_LOW = 0x8, 0x6
#: A last word that makes faery emit its current time, x, y and polarity: an
#: 8-pixel vector with only its first pixel set.
_PROBE = 0x5001


class BridgeDecoder:
    """Decodes the bridge's payloads of one device's ROS topics (see the module doc).

    Args:
        sensor_size: (width, height) for event messages that give none (0 x 0).

    Raises:
        ConfigError: If rosbags is not installed.
    """

    def __init__(self, sensor_size: tuple[int, int] | None = None) -> None:
        from rosbags.typesys import get_types_from_msg

        self._store = event_typestore()
        self._store.register(get_types_from_msg(ROS_MSG_TYPE_DEFINITION, ROS_MSG_TYPE))
        self._sensor_size = sensor_size
        self._types: dict[str, tuple[str, bool]] = {}
        self._evt3: dict[str, _Evt3State] = {}
        self._scratch = tempfile.TemporaryDirectory(prefix="delgrad-ros-")

    def close(self) -> None:
        """Remove the scratch folder of the EVT 3.0 decoder."""
        self._scratch.cleanup()

    def type_of(self, topic: str) -> tuple[str, bool] | None:
        """(ROS type name, stamped) the bridge announced for the data ``topic``."""
        return self._types.get(topic)

    def on_type(self, topic: str, payload: bytes) -> str:
        """Take the type message of the data ``topic``; returns the type name.

        Raises:
            BridgeRefusal: ``undecodable`` if it is not a RosMsgType.
        """
        msg = self._deserialize(payload, ROS_MSG_TYPE, topic=TYPE_TOPIC_PREFIX + topic)
        name = str(msg.name)
        if self._types.get(topic, (name,))[0] != name:
            self._evt3.pop(topic, None)  # another publisher's stream starts afresh
        self._types[topic] = (name, bool(msg.stamped))
        return name

    def _deserialize(self, data: bytes, msgtype: str, *, topic: str) -> Any:
        from rosbags.serde import SerdeError

        try:
            return self._store.deserialize_cdr(data, msgtype)
        except (SerdeError, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise BridgeRefusal(
                "undecodable",
                f"{topic}: {len(data)} bytes are not a CDR {msgtype} ({exc})",
            ) from None

    def _message(self, topic: str, payload: bytes, allowed: tuple[str, ...]) -> tuple[str, Any]:
        known = self._types.get(topic)
        if known is None:
            raise BridgeRefusal(
                "no_type",
                f"{topic}: no type message on {TYPE_TOPIC_PREFIX}{topic} yet (bridge the ROS "
                "topic as a ROS message, not primitive; the bridge sends the type retained)",
            )
        name, stamped = known
        if name not in allowed:
            wanted = (
                "std_msgs/msg/Int32 (or another std_msgs integer)"
                if allowed == LABEL_MSG_TYPES
                else " or ".join(allowed)
            )
            raise BridgeRefusal(
                "wrong_type", f"{topic}: the bridge says {name}, this topic takes {wanted}"
            )
        if stamped:
            if len(payload) < STAMP_BYTES:
                raise BridgeRefusal(
                    "undecodable", f"{topic}: {len(payload)} bytes, shorter than the time stamp"
                )
            self._deserialize(payload[:STAMP_BYTES], "builtin_interfaces/msg/Time", topic=topic)
            payload = payload[STAMP_BYTES:]
        return name, self._deserialize(payload, name, topic=topic)

    def events(self, topic: str, payload: bytes) -> EventRecording:
        """The events of one bridged event message (times in microseconds as the bag
        reader gives them: dvs_msgs stamps, EVT 3.0 sensor time, mono time_base + offset).

        Raises:
            BridgeRefusal: See the class doc.
        """
        name, msg = self._message(topic, payload, EVENT_MSG_TYPES)
        size = self._size(topic, msg)
        try:
            if name == "dvs_msgs/msg/EventArray":
                return decode_event_array(msg, size, where=topic)
            if size is None:
                raise BridgeRefusal(
                    "bad_events", f"{topic}: the EventPacket gives no sensor size; pass it"
                )
            encoding = str(msg.encoding)
            if encoding == "mono":
                return decode_mono(msg, size, where=topic)
            if encoding == "evt3":
                return self._evt3_events(topic, bytes(np.asarray(msg.events, np.uint8)), size)
        except BridgeRefusal:
            raise
        except ConfigError as exc:
            raise BridgeRefusal("bad_events", str(exc)) from None
        raise BridgeRefusal(
            "encoding",
            f"{topic}: EventPacket encoding {encoding!r} is not supported "
            f"({' or '.join(_ENCODINGS)}; see docs/sensors.md, 'From a ROS 2 robot')",
        )

    def _size(self, topic: str, msg: Any) -> tuple[int, int] | None:
        if int(msg.width) > 0 and int(msg.height) > 0:
            return int(msg.width), int(msg.height)
        return self._sensor_size

    def _evt3_events(self, topic: str, body: bytes, size: tuple[int, int]) -> EventRecording:
        state = self._evt3.setdefault(topic, _Evt3State())
        body = state.carry + body
        cut = len(body) - len(body) % 2
        state.carry = body[cut:]
        words = np.frombuffer(body[:cut], dtype="<u2")
        prelude = np.array(state.prelude(), dtype="<u2")
        rec = decode_evt3(
            prelude.tobytes() + words.tobytes() + np.array([_PROBE], "<u2").tobytes(),
            size,
            Path(self._scratch.name) / "packet.raw",
            where=topic,
        )
        # the decoder started this packet without the wraps before it and at the
        # time fields' value; its true time is the later of that and where it was
        t = np.maximum(rec.t_us + float(state.wraps << 24), state.t_us)
        _advance(state, words, rec, float(t[-1]))
        n = len(rec) - 1  # without the probe
        return EventRecording(t[:n], rec.x[:n], rec.y[:n], rec.p[:n], rec.width, rec.height)

    def label(self, topic: str, payload: bytes) -> int:
        """The class index of one bridged label: a std_msgs integer message (ROS-message
        form, see :data:`LABEL_MSG_TYPES`) or, with no type message, primitive text (a
        whole number). Negative: no label from here on.

        Raises:
            BridgeRefusal: See the class doc.
        """
        if topic not in self._types:
            text = payload.decode("utf-8", "replace").strip()
            try:
                return int(text)
            except ValueError:
                raise BridgeRefusal(
                    "bad_label", f"{topic}: {text[:40]!r} is not a whole number (a class index)"
                ) from None
        _, msg = self._message(topic, payload, LABEL_MSG_TYPES)
        return int(msg.data)


def _advance(state: _Evt3State, words: np.ndarray, rec: EventRecording, t_us: float) -> None:
    """Move ``state`` past ``words``: x, y, polarity and time from the probe event
    (the last of ``rec``, at ``t_us``), the time fields by faery's rules."""
    state.started = True
    state.t_us, state.x, state.y, state.on = t_us, int(rec.x[-1]), int(rec.y[-1]), int(rec.p[-1])
    kinds = words >> 12
    reset = -1  # the last time-high word that changed the time-high field
    for i in np.flatnonzero(kinds == _TIME_HIGH).tolist():
        msb = int(words[i]) & 0xFFF
        if msb > state.msb and msb - state.msb < 4094:
            state.msb, reset = msb, i
        elif msb < state.msb and state.msb - msb > 4094:
            state.msb, reset = msb, i
            state.wraps += 1
    lows = np.flatnonzero(kinds == _TIME_LOW)
    if lows.size and lows[-1] > reset:
        state.lsb = int(words[lows[-1]]) & 0xFFF
    elif reset >= 0:
        state.lsb = 0
