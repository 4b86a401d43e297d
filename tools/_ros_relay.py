"""The relay between a ROS 2 robot's MQTT bridge (mqtt_client) and a device.

In: the bridge's event topic (``dvs_msgs/msg/EventArray`` or
``event_camera_msgs/msg/EventPacket``, ROS-message form) and label topic
(``std_msgs/msg/Int32``, ROS-message or primitive form), decoded by
:class:`~delgrad.runtime.sources.BridgeDecoder`. Events are mapped to channels
(``--roi``/``--pool``/``--polarity``, as for recordings) and sent as
``sensor_events`` in microseconds since the first event (plus ``offset_us``); a
label holds from the newest event seen when it came until the next label, and
each device window gets the label under its middle once the stream has passed
its end (the rule of recordings' label spans). A negative label: no label.

Out: each prediction's class as text on the prediction topic and the device's
``accuracy`` metric as text on the accuracy topic: the bridge's primitive form,
which a ROS node sees as std_msgs/Int32 and std_msgs/Float64.

A message the relay cannot take is counted under ``refused.<reason>`` and the
first of each reason is logged as one warning line; the relay goes on.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from delgrad.errors import ConfigError, DelgradError, ProtocolError
from delgrad.protocols import (
    Labels,
    Message,
    Metrics,
    Predictions,
    SensorEvents,
    TopicKind,
    decode,
    topic,
)
from delgrad.runtime.sources import (
    TYPE_TOPIC_PREFIX,
    BridgeDecoder,
    BridgeRefusal,
    EventRecording,
    PixelMapping,
)

log = logging.getLogger("delgrad.ros")

__all__ = ["MAX_LABEL_SPANS", "RosRelay", "RosTopics", "WindowClock"]

#: Most events in one SensorEvents message (the codec accepts 2**22 elements).
MAX_EVENTS_PER_MESSAGE = 1 << 20
#: Label changes kept for windows not yet passed (older ones are dropped first).
MAX_LABEL_SPANS = 4096


@dataclass(frozen=True)
class RosTopics:
    """MQTT topics of the bridge (``mqtt_topic`` of its ros2mqtt / mqtt2ros entries)."""

    events: str = "ros/events"
    labels: str = "ros/label"
    prediction: str = "ros/prediction"
    accuracy: str = "ros/accuracy"

    def subscriptions(self) -> list[str]:
        """What the relay listens to on the bridge's side."""
        return [
            self.events,
            TYPE_TOPIC_PREFIX + self.events,
            self.labels,
            TYPE_TOPIC_PREFIX + self.labels,
        ]


@dataclass(frozen=True)
class WindowClock:
    """The device's windows on the wire's clock: window ``k`` is ``[k * period_us,
    k * period_us + length_us)`` (``[ingest] window_length``/``window_period`` times
    ``us_per_tau``)."""

    length_us: float
    period_us: float

    def passed(self, now_us: float) -> int:
        """Windows whose end lies at or before ``now_us`` (ids below the result)."""
        return max(0, math.floor((now_us - self.length_us) / self.period_us) + 1)

    def middle(self, k: np.ndarray) -> np.ndarray:
        """Middles of windows ``k`` (us)."""
        return k * self.period_us + self.length_us / 2


class RosRelay:
    """Turns bridged ROS messages into device messages and device messages into the
    bridge's primitive form. Pure (no I/O): :meth:`handle` returns what to publish.

    Args:
        device: the device id.
        topics: the bridge's MQTT topics.
        decoder: decodes the bridge's payloads.
        mapping: (roi, pool, polarity) of :class:`PixelMapping`; the sensor size
            comes from the first event message.
        us_per_tau: the device's ``[ingest] us_per_tau``.
        window: the device's windows (for the labels).
        offset_us: the time of the first event on the wire.
    """

    def __init__(
        self,
        device: str,
        topics: RosTopics,
        decoder: BridgeDecoder,
        *,
        mapping: dict[str, object],
        us_per_tau: float,
        window: WindowClock,
        offset_us: float = 0.0,
    ) -> None:
        self.device = device
        self.topics = topics
        self.counts: Counter[str] = Counter()
        self._decoder = decoder
        self._mapping_options = mapping
        self._us_per_tau = us_per_tau
        self._mapping: PixelMapping | None = None
        self._window = window
        self._offset_us = offset_us
        self._origin_us: float | None = None
        self._now_us = -math.inf  # newest event time sent (wire clock)
        self._next_window = 0  # the first window whose label is not yet sent
        self._spans: list[tuple[float, int]] = []  # (from us on the wire, label)
        self._pred_topic = topic(device, TopicKind.PREDICTIONS)
        self._metrics_topic = topic(device, TopicKind.METRICS)

    def device_subscriptions(self) -> list[str]:
        """What the relay listens to on the device's side."""
        return [self._pred_topic, self._metrics_topic]

    def refuse(self, reason: str, text: str) -> None:
        """Count a refused message; log the first of its reason."""
        key = f"refused.{reason}"
        self.counts[key] += 1
        if self.counts[key] == 1:
            log.warning("%s; counted in %s, logged once", text, key)

    def handle(self, topic_str: str, payload: bytes) -> list[tuple[str, Message | bytes]]:
        """What to publish for one received message: (topic, device message) or
        (topic, primitive text bytes)."""
        t = self.topics
        try:
            if topic_str.startswith(TYPE_TOPIC_PREFIX):
                data_topic = topic_str[len(TYPE_TOPIC_PREFIX) :]
                name = self._decoder.on_type(data_topic, payload)
                if self.counts[f"type.{data_topic}.{name}"] == 0:
                    log.info("bridge topic %s carries %s", data_topic, name)
                self.counts[f"type.{data_topic}.{name}"] += 1
                return []
            if topic_str == t.events:
                return self._events(self._decoder.events(topic_str, payload))
            if topic_str == t.labels:
                return self._label(self._decoder.label(topic_str, payload))
            if topic_str in (self._pred_topic, self._metrics_topic):
                return self._from_device(topic_str, payload)
        except BridgeRefusal as exc:
            self.refuse(exc.reason, str(exc))
            return []
        self.refuse("topic", f"{topic_str}: not a topic of this relay")
        return []

    def _events(self, rec: EventRecording) -> list[tuple[str, Message | bytes]]:
        self.counts["ros.event_messages"] += 1
        if self._mapping is None:
            try:
                self._mapping = PixelMapping(
                    rec.width,
                    rec.height,
                    us_per_tau=self._us_per_tau,
                    **self._mapping_options,  # type: ignore[arg-type]
                )
            except ConfigError as exc:
                raise BridgeRefusal("mapping", f"{self.topics.events}: {exc}") from None
            log.info(
                "sensor %d x %d -> %d input channels",
                rec.width,
                rec.height,
                self._mapping.n_channels,
            )
        try:
            mapped = self._mapping.map(rec)
        except ConfigError as exc:
            raise BridgeRefusal("bad_events", f"{self.topics.events}: {exc}") from None
        self.counts["ros.events"] += len(rec)
        if mapped.dropped:
            self.counts["ros.events.outside_mapping"] += mapped.dropped
        if not len(rec):
            return []
        if self._origin_us is None:
            self._origin_us = math.floor(float(rec.t_us[0]))
        t_wire = mapped.t_us - self._origin_us + self._offset_us
        out: list[tuple[str, Message | bytes]] = []
        events_topic = topic(self.device, TopicKind.EVENTS_IN)
        for a in range(0, len(t_wire), MAX_EVENTS_PER_MESSAGE):
            b = a + MAX_EVENTS_PER_MESSAGE
            out.append((events_topic, SensorEvents(mapped.channels[a:b], t_wire[a:b], "us")))
        self.counts["sent.events"] += len(t_wire)
        self._now_us = max(self._now_us, float(rec.t_us[-1]) - self._origin_us + self._offset_us)
        return out + self._due_labels()

    def _label(self, label: int) -> list[tuple[str, Message | bytes]]:
        self.counts["ros.labels"] += 1
        self._spans.append((self._now_us, label))
        del self._spans[:-MAX_LABEL_SPANS]
        return []

    def _due_labels(self) -> list[tuple[str, Message | bytes]]:
        """Labels of the windows the stream has passed since the last call."""
        end = self._window.passed(self._now_us)
        if self._origin_us is not None and self._next_window == 0:
            # windows before the first event hold nothing
            self._next_window = max(0, math.floor(self._offset_us / self._window.period_us))
        ids = np.arange(self._next_window, end, dtype=np.int64)
        self._next_window = max(self._next_window, end)
        if not ids.size or not self._spans:
            return []
        starts = np.array([s for s, _ in self._spans])
        classes = np.array([c for _, c in self._spans], dtype=np.int64)
        at = np.searchsorted(starts, self._window.middle(ids), side="right") - 1
        labels = np.where(at >= 0, classes[np.maximum(at, 0)], -1)
        keep = labels >= 0
        # spans that no window still to come can fall in are no longer needed
        live = max(0, int(at.max()) if at.size else 0)
        del self._spans[:live]
        if not keep.any():
            return []
        self.counts["sent.labels"] += int(keep.sum())
        return [(topic(self.device, TopicKind.LABELS), Labels(ids[keep], labels[keep]))]

    def _from_device(self, topic_str: str, payload: bytes) -> list[tuple[str, Message | bytes]]:
        try:
            msg = decode(payload).message
        except (ProtocolError, DelgradError) as exc:
            raise BridgeRefusal("device_message", f"{topic_str}: {exc}") from None
        if isinstance(msg, Predictions):
            self.counts["sent.predictions"] += len(msg.predicted)
            return [(self.topics.prediction, str(int(c)).encode()) for c in msg.predicted]
        if isinstance(msg, Metrics) and "accuracy" in msg.values:
            self.counts["sent.accuracy"] += 1
            # always with a decimal point: the bridge's primitive probe would take
            # "1" for an Int32 and re-type the ROS topic
            return [(self.topics.accuracy, f"{msg.values['accuracy']:.6f}".encode())]
        return []

    def summary(self) -> str:
        """One line for humans: what came, what went, what was refused."""
        c = self.counts
        refused = {
            k[len("refused.") :]: v for k, v in sorted(c.items()) if k.startswith("refused.")
        }
        text = (
            f"{c['ros.event_messages']} event messages ({c['ros.events']} events, "
            f"{c['sent.events']} sent), {c['ros.labels']} labels ({c['sent.labels']} windows "
            f"labelled), {c['sent.predictions']} predictions and {c['sent.accuracy']} "
            "accuracies sent to ROS"
        )
        if refused:
            text += "; refused: " + ", ".join(f"{k} {v}" for k, v in refused.items())
        return text
