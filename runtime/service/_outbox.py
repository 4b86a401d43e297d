"""Outbox: every message the service sends, encoded, counted and handed to the transport.

One place for the envelope sequence numbers of the device (restored from a
checkpoint so they continue upwards), for the ``published.*`` counters and the
published-bytes rate, and for the policy on a failed publish: counted in
``dropped.publish_failed``, never raised into the loop that published.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from delgrad.protocols import Message, Publisher, Transport, TransportError, topic
from delgrad.runtime.service._stats import Counters, RateMeter


class Outbox:
    """Publishes the messages of one device.

    Args:
        transport: the connected message bus.
        device: device id (the topic prefix and the envelopes' sender).
        counters: the service's counters.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        transport: Transport,
        device: str,
        counters: Counters,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._device = device
        self._publisher = Publisher(transport, device)
        self._counters = counters
        self._clock = clock
        self.bytes_rate = RateMeter(5.0)  # bytes published per second

    async def publish(self, kind: str, msg: Message, *, name: str | None = None) -> None:
        """Publish ``msg`` on the device's topic ``kind`` (``name``: a command's name)."""
        topic_str = topic(self._device, kind, name=name)
        payload = self._publisher.encode(topic_str, msg, timestamp_ns=time.time_ns())
        self.bytes_rate.add(self._clock(), len(payload))
        self._counters.inc("published.messages")
        self._counters.inc("published.bytes", len(payload))
        try:
            await self._transport.publish(topic_str, payload)
        except TransportError:
            self._counters.inc("dropped.publish_failed")

    def sequences(self) -> dict[str, int]:
        """The next envelope sequence number per topic (for a checkpoint)."""
        return self._publisher.sequences()

    def restore_sequences(self, sequences: Mapping[str, int]) -> None:
        """Continue each topic's envelope numbers from ``sequences`` (from a checkpoint)."""
        self._publisher.restore_sequences(dict(sequences))
