"""The transport interface, the last-will description and a sequencing publisher."""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from delgrad.errors import ParameterError, TransportError

from ._codec import MAX_SEQ, Message, encode
from ._queues import IncomingMessage, TransportStats
from ._topics import policy_for, validate_name

#: Default inbox capacity (messages).
DEFAULT_INBOX = 10_000


@dataclass(frozen=True)
class Will:
    """A last-will message the broker publishes if the client dies without DISCONNECT.

    Attributes:
        topic: Concrete topic, usually ``delgrad/v1/{device}/status``.
        payload: Encoded message, usually a ``Status(state="lost")``.
        qos: QoS of the will.
        retain: Whether the broker retains the will (true for status).
    """

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Transport(abc.ABC):
    """A connection to the message bus.

    Use as ``async with transport: ...`` (connects on enter, closes on exit).
    Received messages come from :meth:`recv` or ``async for msg in transport``;
    queues are bounded (see :mod:`delgrad.protocols._queues` for the policies) and
    :attr:`stats` counts drops.
    """

    stats: TransportStats

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the link to the bus is up now."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect (and, for network transports, keep reconnecting until closed).

        Raises:
            TransportError: If the first connection cannot be made.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect gracefully (no last will) and stop receiving."""

    @abc.abstractmethod
    async def publish(
        self, topic: str, payload: bytes, *, qos: int | None = None, retain: bool | None = None
    ) -> None:
        """Queue a message for publication; returns without waiting for delivery.

        Args:
            topic: Concrete topic (no wildcards).
            payload: Encoded message bytes.
            qos: 0 or 1; default from the topic's policy (see ``POLICIES``).
            retain: Retain flag; default from the topic's policy.
        """

    @abc.abstractmethod
    async def subscribe(self, pattern: str, qos: int = 1) -> None:
        """Subscribe to an MQTT filter (``+``/``#`` wildcards); kept across reconnects."""

    @abc.abstractmethod
    async def unsubscribe(self, pattern: str) -> None:
        """Remove a subscription made with :meth:`subscribe`."""

    @abc.abstractmethod
    async def recv(self, *, timeout: float | None = None) -> IncomingMessage:
        """Return the next received message.

        Raises:
            TimeoutError: After ``timeout`` seconds without a message.
            TransportError: When the transport is closed and nothing is left.
        """

    @abc.abstractmethod
    async def flush(self, *, timeout: float | None = None) -> None:
        """Wait until every queued publication has been handed to the bus.

        Raises:
            TimeoutError: After ``timeout`` seconds.
        """

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

    def __aiter__(self) -> AsyncIterator[IncomingMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[IncomingMessage]:
        while True:
            try:
                yield await self.recv()
            except TransportError:
                return


def resolve_delivery(topic: str, qos: int | None, retain: bool | None) -> tuple[int, bool, bool]:
    pol = policy_for(topic)
    q = pol.qos if qos is None else qos
    if q not in (0, 1, 2):
        raise ParameterError("qos must be 0, 1 or 2")
    return q, pol.retain if retain is None else bool(retain), pol.state_like


class Publisher:
    """Encodes messages with a sequence number per topic and publishes them.

    Args:
        transport: Where to publish.
        sender: This device's id (the envelope's ``sender``).
        first_seq: The first sequence number of every topic (e.g. a boot epoch in the
            high bits, so numbers never repeat across restarts).
    """

    def __init__(self, transport: Transport, sender: str, *, first_seq: int = 0) -> None:
        if type(first_seq) is not int or not 0 <= first_seq <= MAX_SEQ:
            raise ParameterError("first_seq must be an int in 0 .. 2**64-1")
        self.transport = transport
        self.sender = validate_name(sender, what="sender")
        self.first_seq = first_seq
        self._seq: dict[str, int] = {}

    def next_seq(self, topic: str) -> int:
        """Return and consume the next sequence number of ``topic`` (``first_seq``, +1, ...)."""
        s = self._seq.get(topic, self.first_seq)
        self._seq[topic] = (s + 1) & MAX_SEQ
        return s

    def sequences(self) -> dict[str, int]:
        """The next sequence number of every topic published so far (for checkpoints)."""
        return dict(self._seq)

    def restore_sequences(self, sequences: dict[str, int]) -> None:
        """Continue numbering from ``sequences`` (topic -> next number), e.g. after a restart."""
        for topic_str, value in sequences.items():
            self._seq[topic_str] = int(value) & MAX_SEQ

    def encode(self, topic: str, msg: Message, *, timestamp_ns: int | None = None) -> bytes:
        """Encode ``msg`` for ``topic`` with the topic's next sequence number."""
        return encode(msg, seq=self.next_seq(topic), sender=self.sender, timestamp_ns=timestamp_ns)

    async def publish(
        self, topic: str, msg: Message, *, qos: int | None = None, retain: bool | None = None
    ) -> None:
        """Encode and publish ``msg`` (QoS and retain default to the topic's policy)."""
        await self.transport.publish(topic, self.encode(topic, msg), qos=qos, retain=retain)

    def will(self, topic: str, msg: Message) -> Will:
        """Build a last will for ``topic`` (sequence number taken now, time stamped now)."""
        qos, retain, _ = resolve_delivery(topic, None, None)
        return Will(topic, self.encode(topic, msg, timestamp_ns=time.time_ns()), qos, retain)


class SequenceTracker:
    """Receiver-side gap detection per (sender, topic).

    :meth:`observe` returns how many messages were missed before this one (0 when in
    order); duplicates and reordering (seq not above the last one) count as ``stale``.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self.missed = 0
        self.stale = 0

    def observe(self, sender: str, topic: str, seq: int) -> int:
        """Record a message; return the number of sequence numbers skipped before it."""
        key = (sender, topic)
        last = self._last.get(key)
        if last is not None and seq <= last:
            self.stale += 1
            return 0
        self._last[key] = seq
        gap = 0 if last is None else seq - last - 1
        self.missed += gap
        return gap
