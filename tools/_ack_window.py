"""Backpressure for unpaced streams (``delgrad sensor --speed inf`` or ``--rate inf``).

A paced stream is slower than the link, so its messages go at QoS 0 and the
transport's outgoing queue only holds what a broker outage leaves. An unpaced one is
as fast as the host can encode, faster than any link: its messages would overflow that
queue (2,397 messages of a recording sent unpaced lost 797). So they go at QoS 1, and
after every ``size`` of them the stream waits until the broker has acknowledged them
all: a bounded window of unacknowledged messages, and nothing dropped by the sender.
"""

from __future__ import annotations

from delgrad.protocols import Message, Publisher

#: Messages an unpaced stream sends before it waits for their acknowledgements.
DEFAULT_WINDOW = 64


class AckWindow:
    """Publish through ``publisher``; if ``unpaced``, at QoS 1 in windows of ``size``.

    Args:
        publisher: The stream's publisher (its transport is flushed).
        unpaced: Whether the stream is unpaced (otherwise messages go as usual).
        size: Messages sent before waiting for their acknowledgements (>= 1).
    """

    def __init__(self, publisher: Publisher, *, unpaced: bool, size: int = DEFAULT_WINDOW):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.publisher = publisher
        self.unpaced = unpaced
        self.size = size
        self._unacknowledged = 0

    async def publish(self, topic: str, msg: Message) -> None:
        """Publish ``msg``; an unpaced stream waits here once its window is full."""
        if not self.unpaced:
            await self.publisher.publish(topic, msg)
            return
        await self.publisher.publish(topic, msg, qos=1)
        self._unacknowledged += 1
        if self._unacknowledged >= self.size:
            await self.publisher.transport.flush()
            self._unacknowledged = 0
