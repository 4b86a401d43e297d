"""Every event-file format, written by its own library (or byte by byte from the
format's spec) and decoded exactly into the one layout."""

from __future__ import annotations

import logging
import struct
import sys

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.runtime.sources import (
    EventRecording,
    LabelSpans,
    PixelMapping,
    event_typestore,
    read_events,
    read_label_file,
    write_label_file,
)

# t (us), x, y, p: unsorted on purpose (readers sort stably by time), ties included.
T = np.array([5_000, 100, 130, 130, 2_000_000, 7], dtype=np.int64)
X = np.array([7, 3, 5, 0, 15, 2], dtype=np.int64)
Y = np.array([1, 4, 6, 7, 0, 3], dtype=np.int64)
P = np.array([1, 1, 0, 1, 0, 0], dtype=np.int64)
W, H = 16, 8
ORDER = np.argsort(T, kind="stable")


def _check(rec: EventRecording, *, width: int = W, height: int = H) -> None:
    assert (rec.width, rec.height) == (width, height)
    np.testing.assert_array_equal(rec.t_us, T[ORDER].astype(np.float64))
    np.testing.assert_array_equal(rec.x, X[ORDER])
    np.testing.assert_array_equal(rec.y, Y[ORDER])
    np.testing.assert_array_equal(rec.p, P[ORDER])
    assert rec.t_us.dtype == np.float64 and rec.p.dtype == np.int8


def _tonic(fields: str = "xytp") -> np.ndarray:
    # tonic's own dtype convention: one int field per letter, t in microseconds.
    dtype = np.dtype([(f, np.int64) for f in fields])
    arr = np.zeros(T.size, dtype=dtype)
    for f, v in zip("txyp", (T, X, Y, P), strict=True):
        if f in fields:
            arr[f] = v
    return arr


# ------------------------------------------------------------------ numpy / csv


def test_tonic_structured_npy(tmp_path):
    np.save(tmp_path / "ev.npy", _tonic())
    _check(read_events(tmp_path / "ev.npy", sensor_size=(W, H)))


def test_tonic_npy_sensor_size_from_data_and_signed_polarity(tmp_path):
    arr = _tonic()
    arr["p"] = np.where(P > 0, 1, -1)  # some tonic datasets store OFF as -1
    np.save(tmp_path / "ev.npy", arr)
    rec = read_events(tmp_path / "ev.npy")
    assert (rec.width, rec.height) == (16, 8)
    np.testing.assert_array_equal(rec.p, P[ORDER])


def test_tonic_audio_layout_t_x_p(tmp_path):
    np.save(tmp_path / "cochlea.npy", _tonic("txp"))
    rec = read_events(tmp_path / "cochlea.npy")
    assert (rec.width, rec.height) == (16, 1)
    np.testing.assert_array_equal(rec.x, X[ORDER])
    np.testing.assert_array_equal(rec.y, np.zeros(T.size))


def test_tonic_npz_structured_and_separate_fields(tmp_path):
    np.savez(tmp_path / "a.npz", events=_tonic())
    _check(read_events(tmp_path / "a.npz", sensor_size=(W, H)))
    np.savez(tmp_path / "b.npz", t=T, x=X, y=Y, p=P)
    _check(read_events(tmp_path / "b.npz", sensor_size=(W, H)))


def test_csv_with_header_in_any_column_order(tmp_path):
    rows = "\n".join(f"{x},{y},{p},{t}" for t, x, y, p in zip(T, X, Y, P, strict=True))
    (tmp_path / "ev.csv").write_text("x,y,polarity,t\n" + rows + "\n")
    _check(read_events(tmp_path / "ev.csv", sensor_size=(W, H)))


def test_nir_padded_trials_laid_end_to_end_with_labels(tmp_path):
    channels = np.array([[2, 0, -1], [1, -1, -1]])
    times = np.array([[0.5, 1.25, np.inf], [0.75, np.inf, np.inf]])
    np.savez(tmp_path / "t.npz", idx=channels, time=times, labels=np.array([4, 7]))
    rec = read_events(tmp_path / "t.npz", trial_period_us=100.0, us_per_tau=6.0)
    np.testing.assert_array_equal(rec.x, [2, 0, 1])
    np.testing.assert_array_equal(rec.t_us, [3.0, 7.5, 104.5])
    assert rec.labels is not None
    np.testing.assert_array_equal(rec.labels.start_us, [0.0, 100.0])
    np.testing.assert_array_equal(rec.labels.label, [4, 7])


def test_csr_trials_in_us(tmp_path):
    np.savez(
        tmp_path / "c.npz",
        offsets=np.array([0, 1, 3]),
        channels=np.array([5, 1, 2]),
        times=np.array([10.0, 20.0, 5.0]),
        time_unit=np.array("us"),
    )
    rec = read_events(tmp_path / "c.npz", trial_period_us=50.0)
    np.testing.assert_array_equal(rec.t_us, [10.0, 55.0, 70.0])
    np.testing.assert_array_equal(rec.x, [5, 2, 1])
    assert rec.labels is None and rec.width == 6


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("a.npy", None, "no such file"),
        ("b.npy", np.arange(4), "structured array"),
        ("c.npz", {"q": np.arange(3)}, "holds no event layout"),
        ("d.npz", {"events": np.zeros(2, [("t", "i8"), ("x", "i8")])}, "needs fields"),
        ("e.txt", b"", "unknown event file type"),
        ("f.csv", b"1,2,3\n", "name the columns"),
    ],
)
def test_malformed_numpy_files_raise_config_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        read_events(path)


def test_pickled_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"t": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="not a readable"):
        read_events(tmp_path / "o.npy")


# ------------------------------------------------------------- AEDAT4 and EVT


def test_aedat4_written_by_dv_processing(tmp_path):
    dv = pytest.importorskip("dv_processing")
    store = dv.EventStore()
    for i in ORDER:  # the camera writes in time order
        store.push_back(int(T[i]), int(X[i]), int(Y[i]), bool(P[i]))
    writer = dv.io.MonoCameraWriter(
        str(tmp_path / "dv.aedat4"), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer", (W, H))
    )
    writer.writeEvents(store)
    del writer  # closes the file
    _check(read_events(tmp_path / "dv.aedat4"))


def _faery_events() -> np.ndarray:
    faery = pytest.importorskip("faery")
    ev = np.zeros(T.size, dtype=faery.EVENTS_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["on"] = T[ORDER], X[ORDER], Y[ORDER], P[ORDER] > 0
    return ev


@pytest.mark.parametrize(
    ("suffix", "version"), [(".aedat4", None), (".raw", "evt2"), (".raw", "evt3")]
)
def test_files_written_by_faery(tmp_path, suffix, version):
    import faery

    path = tmp_path / f"f{suffix}"
    stream = faery.events_stream_from_array(_faery_events(), dimensions=(W, H))
    stream.to_file(path, version=version, zero_t0=False)
    _check(read_events(path))


def test_evt2_written_byte_by_byte_from_the_spec(tmp_path):
    # EVT 2.0: little-endian 32-bit words, type in bits 31..28 (0 CD_OFF, 1 CD_ON,
    # 8 EV_TIME_HIGH = t >> 6); a CD word holds t & 63 in 27..22, x in 21..11, y in 10..0.
    words, high = [], None
    for i in ORDER:
        t, x, y, p = (int(v) for v in (T[i], X[i], Y[i], P[i]))
        if t >> 6 != high:
            high = t >> 6
            words.append((0x8 << 28) | high)
        words.append((p << 28) | ((t & 63) << 22) | (x << 11) | y)
    header = f"% evt 2.0\n% format EVT2;width={W};height={H}\n% end\n".encode()
    (tmp_path / "hand.raw").write_bytes(header + struct.pack(f"<{len(words)}I", *words))
    _check(read_events(tmp_path / "hand.raw"))


def test_raw_without_evt_header_is_refused(tmp_path):
    (tmp_path / "x.raw").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="no Prophesee EVT header"):
        read_events(tmp_path / "x.raw")


def test_truncated_aedat4_is_a_config_error(tmp_path):
    (tmp_path / "bad.aedat4").write_bytes(b"#!AER-DAT4.0\r\n garbage")
    with pytest.raises(ConfigError, match="not a readable AEDAT4"):
        read_events(tmp_path / "bad.aedat4")


def test_missing_library_names_the_install_command(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", _tonic())
    (tmp_path / "x.aedat4").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "faery", None)
    monkeypatch.setitem(sys.modules, "rosbags.typesys", None)
    with pytest.raises(ConfigError, match=r"needs faery: pip install 'delgrad-runtime\[sensors\]'"):
        read_events(tmp_path / "x.aedat4")
    (tmp_path / "x.mcap").write_bytes(b"")
    with pytest.raises(ConfigError, match="needs rosbags"):
        read_events(tmp_path / "x.mcap")
    read_events(tmp_path / "x.npy")  # numpy formats need neither


# ------------------------------------------------------------------ ROS 2 bags


def _write_bag(path, storage: str, messages: list[tuple[str, str, object, int]]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = event_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, msgtype, msg, stamp_ns in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], stamp_ns, store.serialize_cdr(msg, msgtype))


def _dvs_messages(topic: str = "/dvs/events") -> list[tuple[str, str, object, int]]:
    store = event_typestore()
    Event = store.types["dvs_msgs/msg/Event"]
    Array = store.types["dvs_msgs/msg/EventArray"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    base_ns = 1_700_000_000 * 10**9  # absolute stamps, as a driver writes them
    out = []
    for chunk in np.array_split(ORDER, 3):
        events = []
        for i in chunk:
            ns = base_ns + int(T[i]) * 1000
            stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
            events.append(Event(x=int(X[i]), y=int(Y[i]), ts=stamp, polarity=bool(P[i])))
        msg = Array(
            header=Header(stamp=Time(sec=0, nanosec=0), frame_id="cam"),
            height=H,
            width=W,
            events=events,
        )
        out.append((topic, "dvs_msgs/msg/EventArray", msg, base_ns + int(T[chunk[-1]]) * 1000))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ros2_bag_of_dvs_event_arrays(tmp_path, storage):
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    _write_bag(bag, storage, _dvs_messages())
    suffix = ".mcap" if storage == "mcap" else ".db3"
    for path in (bag, bag / f"bag{suffix}"):  # the directory, or the storage file alone
        rec = read_events(path)
        shifted = EventRecording(rec.t_us - 1_700_000_000 * 1e6, rec.x, rec.y, rec.p, W, H)
        _check(shifted)


def test_ros2_bag_of_evt3_event_packets(tmp_path):
    faery = pytest.importorskip("faery")
    pytest.importorskip("rosbags")
    raw = tmp_path / "stream.raw"
    faery.events_stream_from_array(_faery_events(), dimensions=(W, H)).to_file(
        raw, version="evt3", zero_t0=False
    )
    data = raw.read_bytes()
    lines = data.split(b"\n")
    n_header = next(i for i, line in enumerate(lines) if not line.startswith(b"%"))
    payload = data[len(b"\n".join(lines[:n_header])) + 1 :]
    store = event_typestore()
    Packet = store.types["event_camera_msgs/msg/EventPacket"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    cut = [0, 6, 14, len(payload)]  # EVT 3.0 words are 16-bit: packets split at even bytes
    msgs = []
    for k in range(3):
        body = np.frombuffer(payload[cut[k] : cut[k + 1]], dtype=np.uint8)
        msg = Packet(
            header=Header(stamp=Time(sec=k, nanosec=0), frame_id="cam"),
            height=H,
            width=W,
            seq=k,
            time_base=0,
            encoding="evt3",
            is_bigendian=False,
            events=body,
        )
        msgs.append(("/event_camera/events", "event_camera_msgs/msg/EventPacket", msg, k))
    _write_bag(tmp_path / "bag", "mcap", [*msgs, *_dvs_messages("/other")])
    with pytest.raises(ConfigError, match="2 event topics"):
        read_events(tmp_path / "bag")
    _check(read_events(tmp_path / "bag", topic="/event_camera/events"))


def _mono_words(t_ns: np.ndarray, base_ns: int, order: str) -> np.ndarray:
    # event_camera_codecs' mono layout: ns after time_base | x << 32 | y << 48 | p << 63
    words = (
        (t_ns - base_ns).astype(np.uint64)
        | (X[ORDER].astype(np.uint64) << np.uint64(32))
        | (Y[ORDER].astype(np.uint64) << np.uint64(48))
        | (P[ORDER].astype(np.uint64) << np.uint64(63))
    )
    return np.frombuffer(words.astype(order).tobytes(), dtype=np.uint8)


def _packet(encoding: str, events: np.ndarray, *, seq: int = 0, time_base: int = 0, big=False):
    """An event_camera_msgs/EventPacket of the bag typestore."""
    store = event_typestore()
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    return store.types["event_camera_msgs/msg/EventPacket"](
        header=Header(stamp=Time(sec=seq, nanosec=0), frame_id="cam"),
        height=H, width=W, seq=seq, time_base=time_base, encoding=encoding,
        is_bigendian=big, events=events,
    )  # fmt: skip


def test_ros2_bag_of_mono_event_packets(tmp_path):
    pytest.importorskip("rosbags")
    t_ns = T[ORDER] * 1000
    words = _mono_words(t_ns, 0, "<u8")
    msgs = []
    for k, (a, b, big) in enumerate([(0, 2, False), (2, 6, True)]):  # one packet big-endian
        base = int(t_ns[a])  # each packet's own time base (ns)
        body = _mono_words(t_ns, base, ">u8" if big else "<u8")[8 * a : 8 * b]
        msg = _packet("mono", body, seq=k, time_base=base, big=big)
        msgs.append(("/dvs/events", "event_camera_msgs/msg/EventPacket", msg, k))
    _write_bag(tmp_path / "bag", "mcap", msgs)
    _check(read_events(tmp_path / "bag"))
    cut = _packet("mono", words[:12])
    _write_bag(tmp_path / "cut", "mcap", [("/ev", "event_camera_msgs/msg/EventPacket", cut, 0)])
    with pytest.raises(ConfigError, match="EventPacket 0 \\(mono\\) holds 12 bytes"):
        read_events(tmp_path / "cut")


def test_ros2_bag_unsupported_encoding_and_missing_topic(tmp_path):
    pytest.importorskip("rosbags")
    msg = _packet("libcaer_cmp", np.zeros(8, np.uint8))
    _write_bag(tmp_path / "bag", "mcap", [("/ev", "event_camera_msgs/msg/EventPacket", msg, 0)])
    with pytest.raises(ConfigError, match="encoding libcaer_cmp is not supported"):
        read_events(tmp_path / "bag")
    with pytest.raises(ConfigError, match="no topic '/nope'"):
        read_events(tmp_path / "bag", topic="/nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no ROS 2 bag"):
        read_events(tmp_path / "empty")


# ------------------------------------------------------------- labels, mapping


def test_label_side_file_is_found_beside_the_recording(tmp_path):
    np.save(tmp_path / "ev.npy", _tonic())
    spans = LabelSpans(np.array([0.0, 1000.0]), np.array([1000.0, 3e6]), np.array([3, 9]))
    write_label_file(tmp_path / "ev.npy.labels.csv", spans)
    rec = read_events(tmp_path / "ev.npy")
    assert rec.labels is not None
    np.testing.assert_array_equal(rec.labels.label, [3, 9])
    np.testing.assert_array_equal(rec.labels.at([0.0, 999.5, 1000.0, 3e6, -1.0]), [3, 3, 9, -1, -1])
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="header start_us,end_us,label"):
        read_label_file(tmp_path / "bad.csv")


def test_label_files_in_the_index_layout_and_any_column_order(tmp_path):
    (tmp_path / "a.csv").write_text("index,start_us,end_us,label\n0,0,100,3\n1,100,250,5\n")
    (tmp_path / "b.csv").write_text("label,end_us,start_us\n3,100,0\n\n5,250,100\n")
    for name in ("a.csv", "b.csv"):
        spans = read_label_file(tmp_path / name)
        np.testing.assert_array_equal(spans.label, [3, 5])
        np.testing.assert_array_equal(spans.end_us, [100.0, 250.0])


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        # the same span twice with two classes: the conflict, with both lines
        ("0,100,3\n100,200,4\n0,100,5\n", r"lines 2 and 4: spans conflict \(0-100 us label 3"),
        ("0,100,3\n50,200,4\n", r"lines 2 and 3: spans overlap"),
        ("0,1000,3\n200,300,4\n", r"lines 2 and 3: spans overlap"),  # one inside another
        ("0,100,3\n0,100,3\n", r"lines 2 and 3: spans repeat"),
        ("0,100,3\n100,200\n", r"line 3: 2 fields, the header has 3"),
        ("0,100,3\n100,200,x\n", r"line 3: label rows must be numbers"),
        ("0,100,3\n100,200,1.5\n", r"line 3: labels must be integers"),
    ],
)
def test_label_files_refuse_overlaps_and_conflicts_with_line_numbers(tmp_path, rows, match):
    (tmp_path / "l.csv").write_text("start_us,end_us,label\n" + rows)
    with pytest.raises(ConfigError, match=match):
        read_label_file(tmp_path / "l.csv")


def test_label_file_gaps_are_logged_once_and_kept(tmp_path, caplog):
    (tmp_path / "l.csv").write_text("start_us,end_us,label\n0,100,3\n150,200,4\n700,800,5\n")
    with caplog.at_level(logging.WARNING):
        spans = read_label_file(tmp_path / "l.csv")
    assert len(spans) == 3 and caplog.text.count("gaps between label spans") == 1
    assert "2 gaps" in caplog.text and "largest 500 us before line 4" in caplog.text
    np.testing.assert_array_equal(spans.at([120.0, 160.0]), [-1, 4])
    (tmp_path / "x.csv").write_text("start_us,end_us,label,extra\n")
    with pytest.raises(ConfigError, match="got start_us,end_us,label,extra"):
        read_label_file(tmp_path / "x.csv")


def test_a_part_of_a_recording_by_time_or_by_samples():
    t = np.arange(0.0, 1000.0, 10.0)  # 100 events, one every 10 us
    zeros = np.zeros(t.size, np.int64)
    spans = LabelSpans(
        np.array([0.0, 300.0, 600.0]), np.array([300.0, 600.0, 1000.0]), np.arange(3)
    )
    rec = EventRecording(t, zeros, zeros, zeros.astype(np.int8), 1, 1, spans)
    part = rec.between(250.0, 700.0)
    np.testing.assert_array_equal(part.t_us, np.arange(250.0, 700.0, 10.0))
    assert part.labels is not None and list(part.labels.label) == [1]  # spans inside only
    tail = rec.samples(1, 3)  # the second and third sample, as they lie on the clock
    np.testing.assert_array_equal(tail.t_us, np.arange(300.0, 1000.0, 10.0))
    assert tail.labels is not None and list(tail.labels.label) == [1, 2]
    with pytest.raises(ConfigError, match="not within the recording's 0:3"):
        rec.samples(2, 4)
    with pytest.raises(
        ConfigError, match=r"no event in 2000 .. 3000 us \(the recording has events in 0 .. 990"
    ):
        rec.between(2000.0, 3000.0)
    with pytest.raises(ConfigError, match="needs labels"):
        rec.with_labels(None).samples(0, 1)


def test_recording_validates_its_arrays():
    with pytest.raises(ConfigError, match="outside the 4 x 4 sensor"):
        EventRecording(np.zeros(1), np.array([4]), np.array([0]), np.array([1]), 4, 4)
    with pytest.raises(ConfigError, match="differ in length"):
        EventRecording(np.zeros(2), np.array([0]), np.array([0]), np.array([1]), 4, 4)
    with pytest.raises(ConfigError, match="finite"):
        EventRecording(np.array([np.nan]), np.array([0]), np.array([0]), np.array([1]), 4, 4)


def test_pixel_mapping_roi_pooling_and_polarity():
    rec = EventRecording(T, X, Y, P, W, H)
    merged = PixelMapping(W, H, roi=(2, 0, 12, 8), pool=(4, 4), polarity="merge")
    assert merged.grid == (3, 2) and merged.n_channels == 6
    m = merged.map(rec)
    # In time order: (2,3) (3,4) (5,6) (0,7: outside) (7,1) (15,0: outside).
    np.testing.assert_array_equal(m.channels, [0, 3, 3, 1])
    np.testing.assert_array_equal(m.t_us, [7.0, 100.0, 130.0, 5000.0])
    assert m.dropped == 2
    split = PixelMapping(W, H, pool=(8, 8), polarity="split")
    assert split.n_channels == 4
    np.testing.assert_array_equal(split.map(rec).channels, [0, 1, 0, 1, 1, 2])
    on = PixelMapping(W, H, pool=(16, 8), polarity="on")
    assert on.n_channels == 1 and on.map(rec).dropped == 3
    np.testing.assert_array_equal(merged.to_tau(np.array([6.0, 12.0]), t0_us=6.0), [0.0, 1.0])
    with pytest.raises(ConfigError, match="does not fit"):
        PixelMapping(W, H, roi=(10, 0, 8, 8))
    with pytest.raises(ConfigError, match="polarity"):
        PixelMapping(W, H, polarity="both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mapping is for a 8 x 8"):
        PixelMapping(8, 8).map(rec)
