"""Bounded queues with stated policies for the transports.

Incoming (:class:`Inbox`, one per transport, default capacity 10,000 messages and
64 MiB of payload):
    QoS 0 messages (events, predictions, metrics) are *lossy*; QoS >= 1 messages
    (labels, parameters, status, commands, replies) are *reliable*. When full, the
    oldest lossy message is dropped to make room (``dropped_in_lossy``). If the queue
    holds only reliable messages, a new lossy message is dropped, and a new reliable
    message is refused and counted in ``dropped_in_reliable`` — never silently: the
    counter is exposed and the requester of a command times out and retries.

Outgoing (:class:`Outbox`, used while the link is down or busy):
    state-like topics (``params/latest``, ``status``; see ``TopicPolicy.state_like``)
    keep only the newest message per topic (``coalesced_out``); other QoS >= 1 messages
    wait in FIFO order up to ``reliable_capacity`` (default 10,000), dropping the oldest
    when full (``dropped_out_reliable``); QoS 0 messages wait up to
    ``lossy_capacity`` (default 1,000), dropping the oldest when full
    (``dropped_out_lossy``). Messages leave in the order they were queued.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass

from delgrad.errors import ParameterError

#: Default payload bytes an inbox holds at most (a few maximum-size messages).
DEFAULT_INBOX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message received from the bus.

    Attributes:
        topic: Concrete topic it was published to.
        payload: Raw bytes (decode with :func:`delgrad.protocols.decode`).
        qos: Delivered QoS (0 or 1; 2 if a peer used it).
        retain: Whether it came from the broker's retained store.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class TransportStats:
    """Counters of a transport. Drops are counted, never logged one by one."""

    published: int = 0
    received: int = 0
    dropped_in_lossy: int = 0
    dropped_in_reliable: int = 0
    dropped_out_lossy: int = 0
    dropped_out_reliable: int = 0
    coalesced_out: int = 0
    reconnects: int = 0
    refused_oversize: int = 0
    #: Links ended because the broker stopped answering (an acknowledgement or a ping
    #: reply overdue) while the TCP connection stayed open: a frozen or stalled broker.
    stalls: int = 0
    #: Seconds without a broker link after the first connection, outages that ended.
    down_s: float = 0.0


class Inbox:
    """Bounded incoming queue (policy in the module docstring).

    Args:
        capacity: Most messages held, >= 1.
        stats: Counters to update.
        max_bytes: Most payload bytes held (a message is always taken into an empty
            inbox); beyond it the oldest lossy messages are dropped, then a new one is
            refused, counted as for ``capacity``.
    """

    def __init__(
        self, capacity: int, stats: TransportStats, *, max_bytes: int = DEFAULT_INBOX_BYTES
    ) -> None:
        if capacity < 1:
            raise ParameterError("inbox capacity must be >= 1")
        if max_bytes < 1:
            raise ParameterError("inbox max_bytes must be >= 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # payload bytes held
        self._stats = stats
        self._lossy: deque[tuple[int, IncomingMessage]] = deque()
        self._reliable: deque[tuple[int, IncomingMessage]] = deque()
        self._stamp = itertools.count()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._lossy) + len(self._reliable)

    def _full(self, size: int) -> bool:
        return len(self) >= self.capacity or (len(self) > 0 and self.bytes + size > self.max_bytes)

    def put(self, msg: IncomingMessage) -> bool:
        """Queue ``msg`` without blocking. Returns False if it was dropped."""
        size = len(msg.payload)
        while self._full(size):
            if self._lossy:
                self.bytes -= len(self._lossy.popleft()[1].payload)
                self._stats.dropped_in_lossy += 1
            elif msg.qos == 0:
                self._stats.dropped_in_lossy += 1
                return False
            else:
                self._stats.dropped_in_reliable += 1
                return False
        (self._lossy if msg.qos == 0 else self._reliable).append((next(self._stamp), msg))
        self.bytes += size
        self._stats.received += 1
        self._ready.set()
        return True

    def get_nowait(self) -> IncomingMessage | None:
        """Return the oldest message, or ``None`` when empty."""
        if self._lossy and (not self._reliable or self._lossy[0][0] < self._reliable[0][0]):
            msg = self._lossy.popleft()[1]
        elif self._reliable:
            msg = self._reliable.popleft()[1]
        else:
            return None
        self.bytes -= len(msg.payload)
        if not len(self):
            self._ready.clear()
        return msg

    def close(self) -> None:
        """Wake waiters; :meth:`get` then raises ``EOFError`` once empty."""
        self._closed = True
        self._ready.set()

    async def get(self, timeout: float | None = None) -> IncomingMessage:
        """Wait for the oldest message.

        Raises:
            TimeoutError: After ``timeout`` seconds without a message.
            EOFError: When closed and empty.
        """
        async with asyncio.timeout(timeout):
            while True:
                msg = self.get_nowait()
                if msg is not None:
                    return msg
                if self._closed:
                    raise EOFError("inbox closed")
                await self._ready.wait()


@dataclass(slots=True)
class OutgoingMessage:
    """A queued publication."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    state_like: bool
    stamp: int = 0


class Outbox:
    """Bounded outgoing queue (policy in the module docstring)."""

    def __init__(self, stats: TransportStats, *, lossy_capacity: int, reliable_capacity: int):
        if lossy_capacity < 1 or reliable_capacity < 1:
            raise ParameterError("outbox capacities must be >= 1")
        self.lossy_capacity = lossy_capacity
        self.reliable_capacity = reliable_capacity
        self._stats = stats
        self._lossy: deque[OutgoingMessage] = deque()
        self._reliable: deque[OutgoingMessage] = deque()
        self._state: dict[str, OutgoingMessage] = {}
        self._stamp = itertools.count(1)
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.inflight = 0

    def __len__(self) -> int:
        return len(self._lossy) + len(self._reliable) + len(self._state)

    def put(self, msg: OutgoingMessage) -> None:
        """Queue ``msg`` without blocking, applying the drop policy."""
        msg.stamp = next(self._stamp)
        if msg.state_like:
            if self._state.pop(msg.topic, None) is not None:
                self._stats.coalesced_out += 1
            self._state[msg.topic] = msg
        elif msg.qos == 0:
            if len(self._lossy) >= self.lossy_capacity:
                self._lossy.popleft()
                self._stats.dropped_out_lossy += 1
            self._lossy.append(msg)
        else:
            if len(self._reliable) >= self.reliable_capacity:
                self._reliable.popleft()
                self._stats.dropped_out_reliable += 1
            self._reliable.append(msg)
        self._ready.set()
        self._idle.clear()

    def requeue(self, msg: OutgoingMessage) -> None:
        """Put back a message whose sending failed, at its old place (QoS >= 1 only)."""
        if msg.state_like:
            if msg.topic not in self._state:  # a newer one supersedes it otherwise
                self._state = {msg.topic: msg, **self._state}
        elif msg.qos > 0:
            self._reliable.appendleft(msg)
        self._ready.set()
        self._idle.clear()

    def _pop(self) -> OutgoingMessage | None:
        best: OutgoingMessage | None = None
        for q in (self._lossy, self._reliable):
            if q and (best is None or q[0].stamp < best.stamp):
                best = q[0]
        st = min(self._state.values(), key=lambda m: m.stamp, default=None)
        if st is not None and (best is None or st.stamp < best.stamp):
            del self._state[st.topic]
            return st
        if best is None:
            return None
        (self._lossy if best.qos == 0 and not best.state_like else self._reliable).popleft()
        return best

    async def get(self) -> OutgoingMessage:
        """Wait for the next message to send; call :meth:`done` after sending it."""
        while True:
            msg = self._pop()
            if msg is not None:
                self.inflight += 1
                return msg
            self._ready.clear()
            if self.inflight == 0:
                self._idle.set()
            await self._ready.wait()

    def done(self) -> None:
        """Mark one message from :meth:`get` as finished (sent or requeued)."""
        self.inflight -= 1
        if self.inflight == 0 and not len(self):
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or in flight."""
        await self._idle.wait()
