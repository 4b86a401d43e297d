"""Recorded event streams in: one reader per file format, one in-memory layout.

Every reader returns an :class:`EventRecording` (x, y, polarity, t in
microseconds; or channel as x for sources that already are input channels)
with optional :class:`LabelSpans`; :class:`PixelMapping` turns pixels into
input channels and microseconds into units of tau_s. Vendor libraries (faery,
rosbags) are imported inside their reader only; a missing one raises
:class:`~delgrad.errors.ConfigError` with the install command.

| suffix | format | library |
|---|---|---|
| ``.npy`` / ``.npz`` | tonic-style structured arrays, NIR padded / CSR trials | numpy |
| ``.csv`` | header t, x, y, p | numpy |
| ``.aedat4`` | iniVation AEDAT4 | faery |
| ``.raw`` | Prophesee EVT 2.0 / 3.0 | faery |
| ``.mcap`` / ``.db3`` / bag dir | ROS 2 bags: dvs_msgs/EventArray, | rosbags |
|  | event_camera_msgs/EventPacket (evt3, mono) | |

Live ROS 2 messages as the ROS 2 <-> MQTT bridge (mqtt_client) sends them:
:class:`BridgeDecoder`, with the bag reader's decoders.

A world that shifts (:class:`Shift`, ``delgrad sensor --shift``): pure transforms of
a stream's events and trials from a point on.
"""

from delgrad.runtime.sources._arrays import read_csv, read_npy, read_npz
from delgrad.runtime.sources._faery import read_aedat4, read_evt
from delgrad.runtime.sources._mapping import MappedEvents, PixelMapping
from delgrad.runtime.sources._read import SOURCE_FORMATS, read_events
from delgrad.runtime.sources._recording import (
    EventRecording,
    LabelSpans,
    read_label_file,
    write_label_file,
)
from delgrad.runtime.sources._ros_bridge import (
    LABEL_MSG_TYPES,
    STAMP_BYTES,
    TYPE_TOPIC_PREFIX,
    BridgeDecoder,
    BridgeRefusal,
)
from delgrad.runtime.sources._rosbag import (
    EVENT_MSG_TYPES,
    MSG_DEFINITIONS,
    event_typestore,
    read_rosbag,
)
from delgrad.runtime.sources._shift import (
    MAX_NOISE_EVENTS,
    MAX_NOISE_PER_TRIAL,
    ShiftRandom,
    TrialArrays,
    TrialLayout,
    choose_trials,
    cut_windows,
    expected_noise,
    shift_events,
    shift_trials,
)
from delgrad.runtime.sources._shift_spec import SHIFT_KEYS, Shift, parse_shift
from delgrad.runtime.sources._simulate import SaccadeSensor
from delgrad.runtime.sources._writers import write_aedat4, write_rosbag

__all__ = [
    "EVENT_MSG_TYPES",
    "LABEL_MSG_TYPES",
    "MAX_NOISE_EVENTS",
    "MAX_NOISE_PER_TRIAL",
    "MSG_DEFINITIONS",
    "SHIFT_KEYS",
    "SOURCE_FORMATS",
    "STAMP_BYTES",
    "TYPE_TOPIC_PREFIX",
    "BridgeDecoder",
    "BridgeRefusal",
    "EventRecording",
    "LabelSpans",
    "MappedEvents",
    "PixelMapping",
    "SaccadeSensor",
    "Shift",
    "ShiftRandom",
    "TrialArrays",
    "TrialLayout",
    "choose_trials",
    "cut_windows",
    "event_typestore",
    "expected_noise",
    "parse_shift",
    "read_aedat4",
    "read_csv",
    "read_events",
    "read_evt",
    "read_label_file",
    "read_npy",
    "read_npz",
    "read_rosbag",
    "shift_events",
    "shift_trials",
    "write_aedat4",
    "write_label_file",
    "write_rosbag",
]
