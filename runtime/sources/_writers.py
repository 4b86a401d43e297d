"""Writing recordings: AEDAT4 (faery) and ROS 2 bags (rosbags), the readers' mirrors.

Used by the ``delgrad digits events`` tool and by tests; the libraries are
imported inside the writers only.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources._faery import INSTALL_HINT as FAERY_HINT
from delgrad.runtime.sources._recording import EventRecording
from delgrad.runtime.sources._rosbag import event_typestore

__all__ = ["write_aedat4", "write_rosbag"]

_HEADER_KEYS = (b"% evt ", b"% format ", b"% geometry ", b"% t0 ", b"% date ", b"% end")


def _faery() -> Any:
    try:
        import faery  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(f"writing AEDAT4 or EVT needs faery: {FAERY_HINT}") from exc
    return faery


def _faery_events(rec: EventRecording) -> np.ndarray:
    faery = _faery()
    if len(rec) and (rec.t_us.min() < 0 or np.any(rec.t_us != np.floor(rec.t_us))):
        raise ConfigError("AEDAT4 and EVT store whole, non-negative microseconds")
    ev = np.zeros(len(rec), dtype=faery.EVENTS_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["on"] = rec.t_us.astype(np.uint64), rec.x, rec.y, rec.p > 0
    return ev


def write_aedat4(path: str | os.PathLike[str], rec: EventRecording) -> Path:
    """Write ``rec`` as an AEDAT4 file (one event stream, LZ4); returns the path.

    Raises:
        ConfigError: If faery is missing or the times are not whole microseconds >= 0.
    """
    faery = _faery()
    out = Path(path)
    stream = faery.events_stream_from_array(_faery_events(rec), dimensions=(rec.width, rec.height))
    stream.to_file(out, zero_t0=False)
    return out


def _evt3_payload(rec: EventRecording, rows: slice, tmp: Path) -> bytes:
    """EVT 3.0 bytes (no file header) of the events ``rows`` of ``rec``."""
    faery = _faery()
    ev = _faery_events(rec)[rows]
    raw = tmp / "chunk.raw"
    faery.events_stream_from_array(ev, dimensions=(rec.width, rec.height)).to_file(
        raw, version="evt3", zero_t0=False
    )
    data = raw.read_bytes()
    # The header is keyword lines ("% evt 3.0", "% format ...", ...); the binary
    # payload may itself start with the byte '%', so only known keywords are skipped.
    pos = 0
    while data.startswith(_HEADER_KEYS, pos):
        pos = data.index(b"\n", pos) + 1
    return data[pos:]


def write_rosbag(
    path: str | os.PathLike[str],
    rec: EventRecording,
    *,
    topic: str = "/event_camera/events",
    storage: Literal["mcap", "sqlite3"] = "mcap",
    message: Literal["evt3", "dvs"] = "evt3",
    packet_us: float = 10_000.0,
    frame_id: str = "camera",
) -> Path:
    """Write ``rec`` as a ROS 2 bag (a new directory), one message per ``packet_us``.

    Args:
        path: The bag directory to create (must not exist).
        rec: The events (times in microseconds since an arbitrary origin; the
            message stamps are those times as ROS time).
        topic: Topic of the events.
        storage: "mcap" or "sqlite3" (``.db3``).
        message: "evt3": ``event_camera_msgs/EventPacket`` with EVT 3.0 payloads
            (compact, what metavision_driver records); "dvs": ``dvs_msgs/EventArray``.
        packet_us: Time span of one message.
        frame_id: Header frame.

    Raises:
        ConfigError: If rosbags (or faery, for evt3) is missing or the bag exists.
    """
    store = event_typestore()
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if not packet_us > 0:
        raise ConfigError(f"packet_us must be > 0, got {packet_us!r}")
    out = Path(path)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    msgtype = (
        "event_camera_msgs/msg/EventPacket" if message == "evt3" else "dvs_msgs/msg/EventArray"
    )

    def stamp(t_us: float) -> Any:
        ns = round(t_us * 1000.0)
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    t0 = float(rec.t_us[0]) if len(rec) else 0.0
    bounds = np.searchsorted(
        rec.t_us, t0 + packet_us * np.arange(1, int((rec.duration_us // packet_us) + 2))
    )
    starts = np.concatenate([[0], bounds])
    try:
        with (
            Writer(out, version=9, storage_plugin=plugin) as writer,
            tempfile.TemporaryDirectory(prefix="delgrad-bag-") as tmp,
        ):
            conn = writer.add_connection(topic, msgtype, typestore=store)
            for seq, (a, b) in enumerate(itertools.pairwise(starts)):
                if b <= a:
                    continue
                t_first = float(rec.t_us[a])
                header = Header(stamp=stamp(t_first), frame_id=frame_id)
                if message == "evt3":
                    body = np.frombuffer(_evt3_payload(rec, slice(a, b), Path(tmp)), np.uint8)
                    msg = store.types[msgtype](
                        header=header,
                        height=rec.height,
                        width=rec.width,
                        seq=seq,
                        time_base=0,
                        encoding="evt3",
                        is_bigendian=False,
                        events=body,
                    )
                else:
                    Event = store.types["dvs_msgs/msg/Event"]
                    events = [
                        Event(
                            x=int(rec.x[i]),
                            y=int(rec.y[i]),
                            ts=stamp(float(rec.t_us[i])),
                            polarity=bool(rec.p[i]),
                        )
                        for i in range(a, b)
                    ]
                    msg = store.types[msgtype](
                        header=header, height=rec.height, width=rec.width, events=events
                    )
                ns = round(float(rec.t_us[b - 1]) * 1000.0)
                writer.write(conn, ns, store.serialize_cdr(msg, msgtype))
    except WriterError as exc:
        raise ConfigError(f"{out}: cannot write the bag ({exc})") from exc
    return out
