"""An in-process message bus with MQTT semantics, for tests and embedding.

Routing follows MQTT: ``+``/``#`` wildcards, retained messages (an empty retained
payload clears the topic), delivered QoS = min(published, subscribed), one delivery
per client even when several of its filters match, last will on :meth:`abort`.
Delivery is synchronous into each subscriber's bounded :class:`~._queues.Inbox`.
"""

from __future__ import annotations

import asyncio

from delgrad.errors import TransportError

from ._queues import Inbox, IncomingMessage, TransportStats
from ._topics import topic_matches, validate_pattern, validate_publish_topic
from ._transport import DEFAULT_INBOX, Transport, Will, resolve_delivery


class InProcessBus:
    """The shared broker-like router for :class:`InProcessTransport` clients."""

    def __init__(self) -> None:
        self._clients: dict[str, InProcessTransport] = {}
        self._retained: dict[str, tuple[bytes, int]] = {}

    @property
    def retained(self) -> dict[str, bytes]:
        """Copy of the retained store: topic -> payload."""
        return {t: p for t, (p, _) in self._retained.items()}

    def transport(
        self, client_id: str, *, will: Will | None = None, inbox_capacity: int = DEFAULT_INBOX
    ) -> InProcessTransport:
        """Create a client transport attached to this bus (not yet connected)."""
        return InProcessTransport(self, client_id, will=will, inbox_capacity=inbox_capacity)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self._retained[topic] = (payload, qos)
            else:
                self._retained.pop(topic, None)
        for client in list(self._clients.values()):
            sub_qos = client._match(topic)
            if sub_qos is not None:
                client._inbox.put(IncomingMessage(topic, payload, min(qos, sub_qos), False))


class InProcessTransport(Transport):
    """A :class:`Transport` on an :class:`InProcessBus`.

    Args:
        bus: The bus to attach to.
        client_id: Unique among connected clients of the bus; reconnecting with the same
            id replaces the old connection (its will is not sent).
        will: Last will, published by :meth:`abort`.
        inbox_capacity: Incoming queue size (messages).
    """

    def __init__(
        self,
        bus: InProcessBus,
        client_id: str,
        *,
        will: Will | None = None,
        inbox_capacity: int = DEFAULT_INBOX,
    ) -> None:
        self.bus = bus
        self.client_id = client_id
        self.will = will
        self.stats = TransportStats()
        self._inbox = Inbox(inbox_capacity, self.stats)
        self._subs: dict[str, int] = {}
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def _match(self, topic: str) -> int | None:
        best = None
        for pattern, qos in self._subs.items():
            if topic_matches(pattern, topic) and (best is None or qos > best):
                best = qos
        return best

    async def connect(self) -> None:
        old = self.bus._clients.get(self.client_id)
        if old is not None and old is not self:
            old._connected = False
        self.bus._clients[self.client_id] = self
        self._connected = True
        self._inbox._closed = False

    async def close(self) -> None:
        self._disconnect()

    def abort(self) -> None:
        """Die ungracefully: the bus publishes the last will, then the link is gone."""
        was = self._connected
        self._disconnect()
        if was and self.will is not None:
            w = self.will
            self.bus._route(w.topic, w.payload, w.qos, w.retain)

    def _disconnect(self) -> None:
        if self.bus._clients.get(self.client_id) is self:
            del self.bus._clients[self.client_id]
        self._connected = False
        self._inbox.close()

    def _need_connection(self) -> None:
        if not self._connected:
            raise TransportError(f"in-process client {self.client_id!r} is not connected")

    async def publish(
        self, topic: str, payload: bytes, *, qos: int | None = None, retain: bool | None = None
    ) -> None:
        self._need_connection()
        validate_publish_topic(topic)
        q, r, _ = resolve_delivery(topic, qos, retain)
        self.bus._route(topic, bytes(payload), q, r)
        self.stats.published += 1

    async def subscribe(self, pattern: str, qos: int = 1) -> None:
        self._need_connection()
        validate_pattern(pattern)
        self._subs[pattern] = qos
        for t, (payload, rq) in sorted(self.bus._retained.items()):
            if topic_matches(pattern, t):
                self._inbox.put(IncomingMessage(t, payload, min(qos, rq), True))

    async def unsubscribe(self, pattern: str) -> None:
        self._subs.pop(pattern, None)

    async def recv(self, *, timeout: float | None = None) -> IncomingMessage:
        try:
            return await self._inbox.get(timeout)
        except EOFError:
            raise TransportError("transport closed") from None

    async def flush(self, *, timeout: float | None = None) -> None:
        await asyncio.sleep(0)  # delivery is synchronous: nothing is ever pending
