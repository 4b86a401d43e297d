"""The simulated saccade sensor and the writers (AEDAT4, ROS 2 bags) read back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError, ParameterError
from delgrad.runtime.sources import EventRecording, read_events
from delgrad.runtime.sources._simulate import SaccadeSensor
from delgrad.runtime.sources._writers import write_aedat4, write_rosbag


def _fields_equal(a: EventRecording, b: EventRecording) -> None:
    assert (a.width, a.height) == (b.width, b.height)
    for k in ("t_us", "x", "y", "p"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_dark_image_makes_no_events_and_a_dot_makes_on_then_off():
    sensor = SaccadeSensor(upsample=2, margin=2, saccade_px=2.0, saccade_us=1000.0, steps=4)
    assert len(sensor.events(np.zeros((3, 3)))) == 0
    img = np.zeros((3, 3))
    img[1, 1] = 1.0
    rec = sensor.events(img, t0_us=500.0)
    assert (rec.width, rec.height) == (10, 10)
    assert len(rec) > 0 and 500.0 <= rec.t_us.min() and rec.t_us.max() < 500.0 + 3000.0
    assert set(np.unique(rec.p)) == {0, 1}
    # Every pixel returns to where it started: its ON and OFF steps cancel up to one
    # contrast step of slack at either end.
    net = np.zeros((10, 10))
    np.add.at(net, (rec.y, rec.x), np.where(rec.p == 1, 1, -1))
    assert np.abs(net).max() <= 1
    again = sensor.events(img, t0_us=500.0)
    _fields_equal(rec, again)  # deterministic


def test_record_lays_images_end_to_end_with_label_spans():
    sensor = SaccadeSensor(upsample=2, saccade_us=1000.0, steps=4)
    imgs = np.random.default_rng(0).uniform(0, 1, (3, 4, 4))
    rec = sensor.record(imgs, np.array([7, 1, 3]))
    assert rec.labels is not None
    np.testing.assert_array_equal(rec.labels.start_us, [0.0, 3000.0, 6000.0])
    np.testing.assert_array_equal(
        rec.labels.at(rec.t_us), np.array([7, 1, 3])[(rec.t_us // 3000).astype(int)]
    )
    with pytest.raises(ParameterError, match="saccade_px"):
        SaccadeSensor(margin=1, saccade_px=2.0)


@pytest.fixture
def digits_events() -> EventRecording:
    pytest.importorskip("sklearn")
    from delgrad.runtime._digits import digits_split

    features, labels = digits_split("test")
    return SaccadeSensor(saccade_us=20_000.0).record(features[:4].reshape(-1, 8, 8), labels[:4])


def test_aedat4_round_trip(tmp_path, digits_events):
    pytest.importorskip("faery")
    _fields_equal(read_events(write_aedat4(tmp_path / "d.aedat4", digits_events)), digits_events)


@pytest.mark.parametrize(
    ("storage", "message"), [("mcap", "dvs"), ("sqlite3", "dvs"), ("mcap", "evt3")]
)
def test_rosbag_round_trip(tmp_path, digits_events, storage, message):
    pytest.importorskip("rosbags")
    pytest.importorskip("faery")
    bag = write_rosbag(
        tmp_path / "bag", digits_events, storage=storage, message=message, packet_us=7_000.0
    )
    _fields_equal(read_events(bag), digits_events)
    with pytest.raises(ConfigError, match="cannot write the bag"):
        write_rosbag(bag, digits_events)  # exists already


@pytest.mark.xfail(
    strict=True,
    reason="faery 0.7.1: an EVT 3.0 round trip gets times past the 24-bit wrap (16.78 s) "
    "wrong (encoder or decoder, not isolated); EVT 2.0 is exact",
)
def test_evt3_across_the_24_bit_time_wrap(tmp_path):
    faery = pytest.importorskip("faery")
    t = np.array([16_770_000, 16_777_500], dtype=np.uint64)  # 2**24 = 16,777,216 us
    ev = np.zeros(2, dtype=faery.EVENTS_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["on"] = t, [1, 2], [3, 4], [True, False]
    faery.events_stream_from_array(ev, dimensions=(8, 8)).to_file(
        tmp_path / "w.raw", version="evt3", zero_t0=False
    )
    np.testing.assert_array_equal(read_events(tmp_path / "w.raw").t_us, t.astype(np.float64))
