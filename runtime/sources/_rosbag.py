"""ROS 2 bags (``.mcap`` and ``.db3`` storage) of event-camera messages, read with
rosbags, without a ROS installation.

rosbags (pure Python, maintained) opens a bag directory (with ``metadata.yaml``)
or a single ``.mcap`` / ``.db3`` file, and deserialises CDR messages from the
definitions embedded in the bag or, when a bag has none, from the ``.msg``
definitions registered below (copied from the message packages, field for field):

* ``dvs_msgs/msg/EventArray`` (rpg_dvs_ros): a header, the sensor size and an
  array of ``Event {x, y, ts, polarity}``;
* ``event_camera_msgs/msg/EventPacket`` (ros-event-camera): the sensor size and
  the events as an encoded byte string. The ``evt3`` encoding (Prophesee's EVT
  3.0, what ``metavision_driver`` records) is decoded with faery: the packets of
  a topic, in order, are the sensor's EVT 3.0 stream. The ``mono`` encoding (what
  iniVation cameras publish through ``libcaer_driver``) is one 64-bit word per
  event: time in nanoseconds after the packet's ``time_base`` in bits 0-31, x in
  32-47, y in 48-62, polarity in bit 63 (the layout of event_camera_codecs' mono
  decoder), in the byte order ``is_bigendian`` names. The other encodings
  (``libcaer_cmp``, ``libcaer``) are refused with a hint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources._faery import read_evt
from delgrad.runtime.sources._recording import EventRecording

__all__ = [
    "EVENT_MSG_TYPES",
    "MSG_DEFINITIONS",
    "decode_event_array",
    "decode_evt3",
    "decode_mono",
    "event_typestore",
    "read_rosbag",
]

INSTALL_HINT = "pip install 'delgrad-runtime[sensors]' (or pip install rosbags)"

#: ROS 2 message definitions of the supported event messages (and their parts).
MSG_DEFINITIONS: dict[str, str] = {
    "dvs_msgs/msg/Event": "uint16 x\nuint16 y\nbuiltin_interfaces/Time ts\nbool polarity\n",
    "dvs_msgs/msg/EventArray": (
        "std_msgs/Header header\nuint32 height\nuint32 width\ndvs_msgs/Event[] events\n"
    ),
    "event_camera_msgs/msg/EventPacket": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\n"
        "string encoding\nbool is_bigendian\nuint8[] events\n"
    ),
}
#: Message types this reader decodes.
EVENT_MSG_TYPES = ("dvs_msgs/msg/EventArray", "event_camera_msgs/msg/EventPacket")


def event_typestore() -> Any:
    """A rosbags ROS 2 (Humble) typestore with the event messages registered.

    Raises:
        ConfigError: If rosbags is not installed.
    """
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    except ImportError as exc:
        raise ConfigError(f"reading ROS 2 bags needs rosbags: {INSTALL_HINT}") from exc
    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for name, text in MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def read_rosbag(
    path: str | os.PathLike[str],
    *,
    topic: str | None = None,
    sensor_size: tuple[int, int] | None = None,
) -> EventRecording:
    """Read the events of one topic of a ROS 2 bag.

    Args:
        path: A bag directory, or one ``.mcap`` / ``.db3`` file.
        topic: The event topic; default the only topic of a supported type.
        sensor_size: (width, height) when the messages give none (0 x 0).

    Returns:
        The events in time order: ``dvs_msgs`` event stamps (ns) and EVT 3.0
        sensor times, in microseconds.

    Raises:
        ConfigError: If rosbags is missing, the bag is unreadable, the topic is
            missing or ambiguous, or an EventPacket encoding is not supported.
    """
    store = event_typestore()
    from rosbags.highlevel import AnyReader, AnyReaderError

    bag = Path(path)
    if not bag.exists():
        raise ConfigError(f"{path}: no such bag")
    try:
        with AnyReader([bag], default_typestore=store) as reader:
            found = sorted({(c.topic, c.msgtype) for c in reader.connections})
            events = [(t, m) for t, m in found if m in EVENT_MSG_TYPES]
            if topic is None:
                if len(events) != 1:
                    raise ConfigError(
                        f"{path}: {len(events)} event topics ({', '.join(t for t, _ in events)}); "
                        f"choose one with --topic. Supported types: {', '.join(EVENT_MSG_TYPES)}; "
                        f"topics in the bag: {', '.join(f'{t} ({m})' for t, m in found)}"
                    )
                topic = events[0][0]
            msgtypes = {m for t, m in found if t == topic}
            if not msgtypes:
                raise ConfigError(
                    f"{path}: no topic {topic!r}; the bag has {[t for t, _ in found]}"
                )
            msgtype = msgtypes.pop()
            if msgtype not in EVENT_MSG_TYPES:
                raise ConfigError(
                    f"{path}: topic {topic} is {msgtype}, not one of {', '.join(EVENT_MSG_TYPES)}"
                )
            conns = [c for c in reader.connections if c.topic == topic]
            msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns)]
    except ConfigError:
        raise
    except (AnyReaderError, OSError, ValueError, KeyError, AssertionError) as exc:
        raise ConfigError(f"{path}: not a readable ROS 2 bag ({exc})") from exc
    if msgtype == "dvs_msgs/msg/EventArray":
        return _from_event_arrays(path, msgs, sensor_size)
    return _from_event_packets(path, msgs, sensor_size)


def _size(msgs: list[Any], sensor_size: tuple[int, int] | None) -> tuple[int, int] | None:
    for m in msgs:
        if int(m.width) > 0 and int(m.height) > 0:
            return int(m.width), int(m.height)
    return sensor_size


def decode_event_array(
    msg: Any, sensor_size: tuple[int, int] | None, *, where: object
) -> EventRecording:
    """The events of one ``dvs_msgs/msg/EventArray`` (stamps in microseconds).

    Raises:
        ConfigError: If an event lies outside the sensor.
    """
    return _from_event_arrays(where, [msg], sensor_size)


def decode_mono(msg: Any, size: tuple[int, int], *, where: object) -> EventRecording:
    """The events of one ``mono`` ``event_camera_msgs/msg/EventPacket``
    (``time_base`` + offset, in microseconds).

    Raises:
        ConfigError: If the payload is not whole 8-byte events or one lies outside
            the sensor.
    """
    return _from_mono_packets(where, [msg], size)


def _from_event_arrays(
    path: object, msgs: list[Any], sensor_size: tuple[int, int] | None
) -> EventRecording:
    events = [e for m in msgs for e in m.events]
    n = len(events)
    ns = np.fromiter((e.ts.sec * 1_000_000_000 + e.ts.nanosec for e in events), np.int64, n)
    x = np.fromiter((e.x for e in events), np.int64, n)
    y = np.fromiter((e.y for e in events), np.int64, n)
    p = np.fromiter((e.polarity for e in events), np.int8, n)
    size = _size(msgs, sensor_size)
    if size is None:
        size = (int(x.max()) + 1 if n else 1, int(y.max()) + 1 if n else 1)
    try:
        return EventRecording(ns / 1000.0, x, y, p, size[0], size[1])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _from_event_packets(
    path: str | os.PathLike[str], msgs: list[Any], sensor_size: tuple[int, int] | None
) -> EventRecording:
    encodings = sorted({str(m.encoding) for m in msgs})
    if encodings and encodings not in (["evt3"], ["mono"]):
        raise ConfigError(
            f"{path}: EventPacket encoding {', '.join(encodings)} is not supported (evt3 or "
            "mono, one per topic); convert the bag with event_camera_tools"
        )
    size = _size(msgs, sensor_size)
    if size is None:
        raise ConfigError(f"{path}: the EventPackets give no sensor size; pass sensor_size")
    if encodings == ["mono"]:
        return _from_mono_packets(path, msgs, size)
    payload = b"".join(bytes(np.asarray(m.events, dtype=np.uint8)) for m in msgs)
    with tempfile.TemporaryDirectory(prefix="delgrad-evt3-") as tmp:
        return decode_evt3(payload, size, Path(tmp) / "packets.raw", where=path)


def decode_evt3(
    payload: bytes, size: tuple[int, int], scratch: Path, *, where: object
) -> EventRecording:
    """Decode EVT 3.0 words (no file header) with faery, through the file ``scratch``
    (overwritten); times are the sensor's microseconds.

    Raises:
        ConfigError: If faery is missing or the words are not EVT 3.0.
    """
    header = f"% evt 3.0\n% format EVT3;width={size[0]};height={size[1]}\n"
    header += f"% geometry {size[0]}x{size[1]}\n"
    scratch.write_bytes(header.encode() + payload)
    try:
        return read_evt(scratch, sensor_size=size)
    except ConfigError as exc:
        raise ConfigError(f"{where}: EventPacket evt3 payload: {exc}") from None


def _from_mono_packets(path: object, msgs: list[Any], size: tuple[int, int]) -> EventRecording:
    parts: list[np.ndarray] = []
    for k, m in enumerate(msgs):
        body = bytes(np.asarray(m.events, dtype=np.uint8))
        if len(body) % 8:
            raise ConfigError(
                f"{path}: EventPacket {k} (mono) holds {len(body)} bytes, not a whole number "
                "of 8-byte events"
            )
        words = np.frombuffer(body, dtype=">u8" if m.is_bigendian else "<u8")
        ns = np.uint64(int(m.time_base)) + (words & np.uint64(0xFFFFFFFF))
        parts.append(
            np.stack(
                [
                    ns,
                    (words >> np.uint64(32)) & np.uint64(0xFFFF),
                    (words >> np.uint64(48)) & np.uint64(0x7FFF),
                    words >> np.uint64(63),
                ]
            )
        )
    cols = np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), np.uint64)
    try:
        return EventRecording(
            cols[0].astype(np.float64) / 1000.0,
            cols[1].astype(np.int64),
            cols[2].astype(np.int64),
            cols[3].astype(np.int8),
            size[0],
            size[1],
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: EventPacket mono payload: {exc}") from None
