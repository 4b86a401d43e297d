"""Your own sensor in a few lines: connect, publish events, publish labels.

:class:`SensorClient` wraps the pieces a sensor needs (a transport from a broker
URL, a :class:`~._transport.Publisher` with a fresh sender id, the device's
``events/in`` and ``labels`` topics) behind three calls. It lives in
``delgrad.protocols`` because a sensor process should load the wire and MQTT
only: no numba, no runtime (the protocols floor imports neither).

Example::

    async with SensorClient("mqtt://127.0.0.1:1883", device="demo") as sensor:
        await sensor.publish_events(channels, times_us)   # continuous, microseconds
        await sensor.publish_labels([window_id], [label])  # label of window k

With a continuous stream, the device cuts windows ``k`` of ``[ingest]
window_length`` (tau_s, times divided by ``us_per_tau``) every ``window_period``
from time 0; a window's trial id is ``k``. :meth:`SensorClient.window_of` gives
``k`` for a time in microseconds, with the same settings as the device's.
"""

from __future__ import annotations

import math
import uuid
from types import TracebackType
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from delgrad.errors import ConfigError, ParameterError

from ._messages import Labels, SensorEvents, SpikeBatch
from ._topics import TopicKind, is_valid_name, topic
from ._transport import Publisher, Transport
from ._url import transport_from_url

__all__ = ["SensorClient"]


class SensorClient:
    """A connected event source for one device.

    Args:
        broker: Broker URL (``mqtt://host[:port]`` or ``mqtts://``), or an
            unconnected :class:`Transport` (e.g. an in-process one in tests).
        device: The device id to feed.
        us_per_tau: Microseconds per tau_s (the device's ``[ingest] us_per_tau``),
            for :meth:`window_of`.
        window_length: Window length in tau_s (the device's ``[ingest] window_length``).
        window_period: Window period in tau_s (0: the length), as the device's.
        sender: Envelope sender id; default a fresh ``sensor-XXXXXXXX`` (a restarted
            sensor must not reuse the old run's sequence numbers).
        **options: Further :func:`transport_from_url` options.

    Raises:
        ConfigError: On a bad URL, device id or window setting.
    """

    def __init__(
        self,
        broker: str | Transport,
        *,
        device: str = "demo",
        us_per_tau: float = 6.0,
        window_length: float = 2.5,
        window_period: float = 0.0,
        sender: str | None = None,
        **options: Any,
    ) -> None:
        if not is_valid_name(device):
            raise ConfigError(f"device {device!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
        for name, value in (("us_per_tau", us_per_tau), ("window_length", window_length)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
        if not (math.isfinite(window_period) and window_period >= 0):
            raise ConfigError(f"window_period must be finite and >= 0, got {window_period!r}")
        self.device = device
        self.us_per_tau = float(us_per_tau)
        self.window_length = float(window_length)
        self.window_period = float(window_period or window_length)
        self.sender = sender or f"sensor-{uuid.uuid4().hex[:8]}"
        if isinstance(broker, str):
            self.transport: Transport = transport_from_url(broker, client_id=self.sender, **options)
        else:
            self.transport = broker
        self.publisher = Publisher(self.transport, self.sender)
        self._events_topic = topic(device, TopicKind.EVENTS_IN)
        self._labels_topic = topic(device, TopicKind.LABELS)

    async def connect(self) -> None:
        """Connect to the broker (raises ``TransportError`` if it cannot be reached)."""
        await self.transport.connect()

    async def close(self, *, flush_timeout_s: float = 10.0) -> None:
        """Send what is queued (waiting at most ``flush_timeout_s``), then disconnect."""
        try:
            await self.transport.flush(timeout=flush_timeout_s)
        finally:
            await self.transport.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish_events(
        self, channels: ArrayLike, times: ArrayLike, *, time_unit: str = "us"
    ) -> None:
        """Publish a chunk of a continuous stream (``sensor_events``).

        Args:
            channels: (n,) input channel per event (>= 0, below the network's inputs).
            times: (n,) event times, non-decreasing across calls, in ``time_unit``
                (``"us"``: microseconds since the stream's origin; float64 keeps
                whole microseconds exact).
            time_unit: ``"us"`` or ``"tau_s"``.

        Raises:
            ParameterError: On negative or non-integer channels (and what
                :class:`SensorEvents` refuses: lengths, non-finite times).
        """
        ch = np.asarray(channels)
        if ch.dtype.kind not in "iu" or (ch.size and int(ch.min()) < 0):
            raise ParameterError("channels must be integers >= 0")
        msg = SensorEvents(ch.astype(np.uint32), np.asarray(times, dtype=np.float64), time_unit)
        await self.publisher.publish(self._events_topic, msg)

    async def publish_trials(
        self,
        trial_ids: ArrayLike,
        offsets: ArrayLike,
        channels: ArrayLike,
        times: ArrayLike,
        *,
        time_unit: str = "tau_s",
    ) -> None:
        """Publish trials already cut by the sensor (``spikes``, CSR layout: the events
        of trial ``i`` are ``[offsets[i], offsets[i+1])``)."""
        msg = SpikeBatch(
            np.asarray(trial_ids, dtype=np.int64),
            np.asarray(offsets, dtype=np.int64),
            np.asarray(channels, dtype=np.int64),
            np.asarray(times, dtype=np.float64),
            time_unit,
        )
        await self.publisher.publish(self._events_topic, msg)

    async def publish_labels(self, trial_ids: ArrayLike, labels: ArrayLike) -> None:
        """Publish the class of trials (window ids of a continuous stream), QoS 1."""
        msg = Labels(np.asarray(trial_ids, dtype=np.int64), np.asarray(labels, dtype=np.int64))
        await self.publisher.publish(self._labels_topic, msg)

    def window_of(self, t_us: float) -> int:
        """Index of the last window starting at or before ``t_us`` (microseconds), by
        the device's rule ``start_k = k * window_period`` in tau_s."""
        return math.floor(t_us / self.us_per_tau / self.window_period)
