"""MQTT transport over aiomqtt 2.x (the only module that imports aiomqtt, lazily).

Speaks MQTT 5 where the broker does (adding a content type to every message and a
message expiry to metrics) and plain MQTT 3.1.1 otherwise; everything the protocol
needs is inside the envelope, so both carry the same information.

A supervisor task connects, resubscribes every filter, then runs a reader (broker ->
:class:`~._queues.Inbox`) and a writer (:class:`~._queues.Outbox` -> broker). When the
link fails it reconnects with exponential backoff (``reconnect_min_s`` doubling up to
``reconnect_max_s``, with +-25 % jitter) until :meth:`MqttTransport.close`. A QoS >= 1
message whose publication did not complete is put back in the outbox and sent again
after reconnecting (at-least-once; the receiver may see a duplicate sequence number).

A broker that keeps the TCP connection but stops answering (frozen, overloaded,
a half-open link) is noticed, the link dropped and reconnected:

* within ``timeout_s`` (5 s) of the first QoS >= 1 publication it does not acknowledge;
* within ``2 * keepalive_s + 1`` s (21 s by default) on a link that publishes nothing
  (paho pings after ``keepalive_s`` of silence and gives up after another one).

Each outage is one warning line when it starts and one info line when it ends; its
length adds to ``stats.down_s`` (:attr:`MqttTransport.outage_s` while it lasts) and a
link ended by an unanswered broker counts in ``stats.stalls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any

from delgrad.errors import ParameterError, TransportError

from ._codec import MAX_MESSAGE_BYTES
from ._queues import Inbox, IncomingMessage, Outbox, OutgoingMessage, TransportStats
from ._topics import policy_for, validate_pattern, validate_publish_topic
from ._transport import DEFAULT_INBOX, Transport, Will, resolve_delivery

if TYPE_CHECKING:
    import aiomqtt

log = logging.getLogger(__name__)

#: Default MQTT keep-alive (s): a silent link to a stalled broker ends within 2x + 1 s.
DEFAULT_KEEPALIVE_S = 10
#: paho's reason for a link it closed because the broker did not answer its ping.
_MQTT_ERR_KEEPALIVE = 16

#: MQTT 5 content type of every payload.
CONTENT_TYPE = "application/vnd.delgrad.v1+msgpack"
#: Default largest packet accepted: the codec's message limit plus room for the topic.
DEFAULT_MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 64 * 1024
#: The largest packet MQTT can describe (remaining length of 4 bytes).
MQTT_MAX_PACKET_BYTES = 268_435_455
PROTOCOLS = ("auto", "5", "3.1.1")


class MqttTransport(Transport):
    """A :class:`Transport` to an MQTT broker.

    Args:
        host: Broker host name or address.
        port: Broker TCP port (1883 plain, usually 8883 with TLS).
        client_id: MQTT client id; a random ``delgrad-<hex>`` when ``None``.
        username: User name, or ``None`` for anonymous access.
        password: Password for ``username``.
        tls: TLS context (e.g. ``ssl.create_default_context(cafile=...)``), or ``None``
            for plain TCP.
        protocol: ``"5"``, ``"3.1.1"`` or ``"auto"`` (try 5, fall back to 3.1.1 if the
            broker refuses the protocol version).
        will: Last will, registered with the broker on every connect.
        keepalive_s: MQTT keep-alive interval in seconds (a broker that stops answering
            is noticed within ``2 * keepalive_s + 1`` s on a link that publishes nothing).
        timeout_s: Timeout of connect, subscribe and publish acknowledgements in seconds.
        reconnect_min_s: First reconnect delay in seconds.
        reconnect_max_s: Largest reconnect delay in seconds.
        inbox_capacity: Incoming queue size (messages).
        outbox_lossy_capacity: Outgoing QoS 0 queue size (messages).
        outbox_reliable_capacity: Outgoing QoS >= 1 queue size (messages).
        max_packet_bytes: Largest MQTT packet accepted from the broker. Announced in
            the MQTT 5 CONNECT (Maximum Packet Size: the broker never sends larger
            ones); under either version, a larger incoming packet is refused as soon
            as its length is known, before its payload is read (the link is then
            reconnected; counted in ``stats.refused_oversize``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        protocol: str = "auto",
        will: Will | None = None,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        timeout_s: float = 5.0,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        inbox_capacity: int = DEFAULT_INBOX,
        outbox_lossy_capacity: int = 1_000,
        outbox_reliable_capacity: int = 10_000,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
    ) -> None:
        if not 1024 <= max_packet_bytes <= MQTT_MAX_PACKET_BYTES:
            raise ParameterError(f"max_packet_bytes must be in 1024 .. {MQTT_MAX_PACKET_BYTES}")
        if protocol not in PROTOCOLS:
            raise ParameterError(f"protocol must be one of {PROTOCOLS}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ParameterError("need 0 < reconnect_min_s <= reconnect_max_s")
        self.host = host
        self.port = int(port)
        self.client_id = client_id or f"delgrad-{uuid.uuid4().hex[:12]}"
        self.username = username
        self.password = password
        self.tls = tls
        self.protocol = protocol
        self.will = will
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.max_packet_bytes = int(max_packet_bytes)
        self.stats = TransportStats()
        self._inbox = Inbox(inbox_capacity, self.stats)
        self._outbox = Outbox(
            self.stats,
            lossy_capacity=outbox_lossy_capacity,
            reliable_capacity=outbox_reliable_capacity,
        )
        self._subs: dict[str, int] = {}
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._closing = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None  # the first connection's outcome
        self._latest_client: aiomqtt.Client | None = None
        self._v5: bool | None = {"5": True, "3.1.1": False}.get(protocol)
        self.last_error: BaseException | None = None
        self._down_since: float | None = None  # monotonic start of the current outage

    # ---- state -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def outage_s(self) -> float:
        """Seconds since the link to the broker was lost (0 while it is up, and before
        the first connection)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def protocol_version(self) -> str | None:
        """``"5"`` or ``"3.1.1"`` once known (after the first connection)."""
        return None if self._v5 is None else ("5" if self._v5 else "3.1.1")

    async def wait_connected(self, *, timeout: float | None = None) -> None:
        """Wait until the link is up (and every subscription is renewed)."""
        async with asyncio.timeout(timeout):
            await self._up.wait()

    # ---- life cycle ----------------------------------------------------------------

    async def connect(self) -> None:
        if self._supervisor is not None:
            raise TransportError("already connected; MqttTransport is not reusable")
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first = first
        self._supervisor = asyncio.create_task(self._supervise(first), name="mqtt-supervisor")
        await asyncio.wait(
            {first, self._supervisor},
            timeout=self.timeout_s * 3,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if first.done() and first.exception() is None:
            return
        error = first.exception() if first.done() else None
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()  # it may wait for a CONNACK that never comes
        await self.close()
        paho = getattr(self._latest_client, "_client", None)
        if paho is not None:  # the socket of the abandoned attempt
            with contextlib.suppress(Exception):
                paho._sock_close()
        if isinstance(error, TransportError):
            raise error
        hint = ""
        if self.tls is None:  # a TLS listener answers a plain CONNECT with silence or a reset
            hint = f" (if {self.port} is a TLS port, use mqtts://{self.host}:{self.port})"
        raise TransportError(
            f"cannot connect to {self.host}:{self.port}: {self.last_error}{hint}"
        ) from self.last_error

    async def close(self) -> None:
        self._closing.set()
        task = self._supervisor
        if task is not None and not task.done():
            await asyncio.wait({task})
        if task is not None and not task.cancelled() and task.exception() is not None:
            self.last_error = task.exception()
        self._inbox.close()

    # ---- interface -----------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes, *, qos: int | None = None, retain: bool | None = None
    ) -> None:
        if self._closing.is_set():
            raise TransportError("transport closed")
        validate_publish_topic(topic)
        q, r, state_like = resolve_delivery(topic, qos, retain)
        self._outbox.put(OutgoingMessage(topic, bytes(payload), q, r, state_like and q > 0))

    async def subscribe(self, pattern: str, qos: int = 1) -> None:
        validate_pattern(pattern)
        self._subs[pattern] = qos
        client = self._client
        if client is not None and self.connected:
            from aiomqtt import MqttError

            try:
                await self._subscribe(client, pattern, qos)
            except MqttError as exc:  # renewed on the next reconnect
                self.last_error = exc

    async def unsubscribe(self, pattern: str) -> None:
        self._subs.pop(pattern, None)
        client = self._client
        if client is not None and self.connected:
            from aiomqtt import MqttError

            try:
                await client.unsubscribe(pattern, timeout=self.timeout_s)
            except MqttError as exc:
                self.last_error = exc

    async def recv(self, *, timeout: float | None = None) -> IncomingMessage:
        try:
            return await self._inbox.get(timeout)
        except EOFError:
            raise TransportError("transport closed") from None

    async def flush(self, *, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._outbox.wait_idle()

    # ---- internals -----------------------------------------------------------------

    def _make_client(self, v5: bool, *, probe: bool = False) -> aiomqtt.Client:
        import aiomqtt

        will = None
        if self.will is not None:
            w = self.will
            will = aiomqtt.Will(
                w.topic, w.payload, w.qos, w.retain, self._props(w.topic, v5, will=True)
            )
        connect_props = None
        if v5 and not probe:  # a 3.1.1-only broker may stall on CONNECT properties
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_props.MaximumPacketSize = self.max_packet_bytes
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            tls_context=self.tls,
            # the context checks the host name itself unless insecure (paho's own check
            # would refuse the unverified certificate of an insecure context)
            tls_insecure=None if self.tls is None else not self.tls.check_hostname,
            properties=connect_props,
            # No Nagle: paho writes each packet with one send, and a message written
            # while the previous one is unacknowledged would otherwise wait for the
            # peer's delayed ACK (~40 ms), capping a client at some 25-50 messages/s.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        self._guard_socket(client)
        _guard_write_registration(client)
        _consume_disconnected(client)
        self._latest_client = client
        return client

    def _guard_socket(self, client: aiomqtt.Client) -> None:
        """Wrap paho's socket I/O for what paho does not do itself.

        * Packet size: paho reads a packet's remaining length, then the whole packet
          into memory; MQTT 3.1.1 has no way to announce a limit. The first read of a
          packet's body passes through here once its length is known: a longer packet
          ends the link (paho treats the OSError as a lost connection; we reconnect)
          with at most a few bytes of it read.
        * TLS refusal: under TLS 1.3 the broker checks our certificate after the
          handshake. Its alert usually arrives as an ``SSLError`` on a read, but it
          can be lost to the TCP reset that follows, leaving an EOF, a reset, or an
          error on sending CONNECT. paho reports any of these as a lost link, and the
          first ``connect()`` would wait for its CONNACK timeout and retry. Before the
          first CONNACK of a TLS link they fail ``connect()`` at once instead.
        * A failed TLS handshake closes its socket (paho's own wrapper leaves it open).
        """
        paho = getattr(client, "_client", None)
        recv = getattr(paho, "_sock_recv", None)
        send = getattr(paho, "_sock_send", None)
        if paho is None or recv is None or send is None:
            return
        limit, stats = self.max_packet_bytes, self.stats

        def guarded_recv(bufsize: int) -> bytes:
            packet = paho._in_packet
            if packet["have_remaining"] and packet["remaining_length"] > limit:
                stats.refused_oversize += 1
                raise OSError(
                    f"incoming packet of {packet['remaining_length']} bytes exceeds "
                    f"max_packet_bytes {limit}"
                )
            try:
                data: bytes = recv(bufsize)
            except ssl.SSLError as exc:  # e.g. the broker rejected our certificate
                self._tls_failed(exc)
                raise
            except ConnectionError as exc:
                self._tls_refused(exc)
                raise
            if not data:
                self._tls_refused(ssl.SSLEOFError(_CLOSED_AFTER_HANDSHAKE))
            return data

        def guarded_send(buf: bytes | bytearray) -> int:
            try:
                sent: int = send(buf)
            except (ssl.SSLError, ConnectionError) as exc:
                self._tls_refused(exc)
                raise
            return sent

        paho._sock_recv = guarded_recv
        paho._sock_send = guarded_send

        def wrap(tcp_sock: socket.socket) -> ssl.SSLSocket:
            context: ssl.SSLContext = paho._ssl_context
            tls_sock = context.wrap_socket(
                tcp_sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            try:
                tls_sock.settimeout(paho._connect_timeout)
                tls_sock.do_handshake()
            except BaseException:
                tls_sock.close()
                raise
            return tls_sock

        if self.tls is not None:
            paho._ssl_wrap_socket = wrap

    async def _subscribe(self, client: aiomqtt.Client, pattern: str, qos: int) -> None:
        """Subscribe; command filters under MQTT 5 with *Retain As Published*, so a
        command published with the retain flag arrives with it even live, and the
        receiver can refuse it (docs/protocol.md, section 5)."""
        if self._v5 and "/cmd/" in pattern and not pattern.endswith("/reply"):
            from paho.mqtt.subscribeoptions import SubscribeOptions

            options = SubscribeOptions(qos=qos, retainAsPublished=True)
            await client.subscribe(pattern, options=options, timeout=self.timeout_s)
        else:
            await client.subscribe(pattern, qos=qos, timeout=self.timeout_s)

    @staticmethod
    def _props(topic: str, v5: bool, *, will: bool = False) -> Any:
        if not v5:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.WILLMESSAGE if will else PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = CONTENT_TYPE
        expiry = policy_for(topic).expiry_s
        if expiry is not None:
            props.MessageExpiryInterval = expiry
        return props

    def _tls_refused(self, exc: BaseException) -> None:
        """A lost link before the first CONNACK of a TLS link: the broker refused us."""
        first = self._first
        if self.tls is not None and first is not None and not first.done():
            self._tls_failed(exc)

    def _tls_failed(self, exc: BaseException) -> None:
        """A TLS error on the link: before the first connection, fail connect() now."""
        self.last_error = exc
        first = self._first
        if first is not None and not first.done():
            first.set_exception(self._tls_error(exc))

    def _tls_error(self, exc: BaseException) -> TransportError:
        return TransportError(
            f"TLS handshake with {self.host}:{self.port} failed: {exc} "
            "(check the broker's certificate against tls_ca_file / ?ca=, "
            "the host name, and the client certificate and key; if the port is not a TLS "
            "port, use mqtt://)"
        )

    def _first_connect_error(self, exc: BaseException) -> TransportError | None:
        """The error that ends a first connect at once (retrying cannot help), or None."""
        root = _os_error(exc)
        where = f"cannot connect to {self.host}:{self.port}"
        if isinstance(root, ConnectionRefusedError):
            return TransportError(
                f"{where}: connection refused (no broker listens there: start it, or check "
                "the host and port)"
            )
        if isinstance(root, socket.gaierror):
            return TransportError(f"{where}: unknown host ({root.strerror or root})")
        if self.tls is None and isinstance(root, ConnectionResetError):
            return TransportError(
                f"{where}: the broker reset the connection at once; if {self.port} is a TLS "
                f"port, use mqtts://{self.host}:{self.port}"
            )
        return None

    async def _supervise(self, first: asyncio.Future[None]) -> None:
        from aiomqtt import MqttError
        from aiomqtt.exceptions import MqttConnectError

        delay = self.reconnect_min_s
        ever_up = False
        while not self._closing.is_set():
            try:
                if self._v5 is None:
                    await self._probe_version()
                v5 = bool(self._v5)
                client = self._make_client(v5)
                async with client:
                    _consume_disconnected(client)  # aiomqtt made a new future on connecting
                    self._v5 = v5
                    self._client = client
                    for pattern, qos in list(self._subs.items()):
                        await self._subscribe(client, pattern, qos)
                    if ever_up:
                        self.stats.reconnects += 1
                    ever_up = True
                    delay = self.reconnect_min_s
                    self._link_up()
                    self._up.set()
                    if not first.done():
                        first.set_result(None)
                    await self._serve(client, v5)
            except MqttConnectError as exc:
                self.last_error = exc
                code = getattr(exc.rc, "value", exc.rc)
                if code in (4, 5, 134, 135):  # bad credentials / not authorised: final
                    if not first.done():
                        first.set_exception(TransportError(f"broker refused: {exc}"))
                        return
            except (MqttError, OSError) as exc:
                self.last_error = exc
                if self.tls is not None and not ever_up and _is_tls_failure(exc):
                    # a certificate or handshake problem does not go away by retrying:
                    # say so at once instead of after the connect timeout
                    if not first.done():
                        first.set_exception(self._tls_error(exc))
                    return
                final = None if ever_up or first.done() else self._first_connect_error(exc)
                if final is not None:  # no broker there: one line now, not a timeout
                    first.set_exception(final)
                    return
            finally:
                if self._up.is_set() and not self._closing.is_set():
                    self._link_down(self.last_error, self._latest_client)
                self._up.clear()
                self._client = None
                _close_socket(self._latest_client)  # an attempt a frozen broker never answered
            if self._closing.is_set():
                break
            sleep = delay * random.uniform(0.75, 1.25)
            delay = min(delay * 2, self.reconnect_max_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep):
                    await self._closing.wait()

    def _link_up(self) -> None:
        since, self._down_since = self._down_since, None
        if since is not None:
            took_s = time.monotonic() - since
            self.stats.down_s += took_s
            log.info("broker %s:%d: link back after %.1f s", self.host, self.port, took_s)

    def _link_down(self, error: BaseException | None, client: Any) -> None:
        self._down_since = time.monotonic()
        heard = getattr(getattr(client, "_client", None), "_last_bytes_received", None)
        silent_s = time.monotonic() - heard if isinstance(heard, float) else 0.0
        stalled = _is_stall(error) or silent_s >= self.keepalive_s
        if stalled:
            self.stats.stalls += 1
        log.warning(
            "broker %s:%d: link lost (%s); reconnecting",
            self.host,
            self.port,
            "the broker stopped answering" if stalled else _reason(error),
        )

    async def _probe_version(self) -> None:
        """Decide MQTT 5 or 3.1.1 with a will-less CONNECT (some 3.1.1-only brokers stall
        on an MQTT 5 CONNECT that carries will properties instead of refusing it)."""
        from aiomqtt.exceptions import MqttConnectError

        saved, self.will = self.will, None
        try:
            async with self._make_client(True, probe=True):
                self._v5 = True
        except MqttConnectError as exc:
            if getattr(exc.rc, "value", exc.rc) not in (1, 132):
                raise
            self._v5 = False
        finally:
            self.will = saved

    async def _serve(self, client: aiomqtt.Client, v5: bool) -> None:
        """Run reader and writer until the link fails (raise) or close() (return)."""
        reader = asyncio.create_task(self._reader(client))
        writer = asyncio.create_task(self._writer(client, v5))
        closing = asyncio.create_task(self._closing.wait())
        try:
            done, _ = await asyncio.wait(
                {reader, writer, closing}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in (reader, writer, closing):
                t.cancel()
            await asyncio.gather(reader, writer, closing, return_exceptions=True)
        if closing in done:
            return
        for t in (reader, writer):
            if t in done and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        from aiomqtt import MqttError

        raise MqttError("message stream ended")

    async def _reader(self, client: aiomqtt.Client) -> None:
        # aiomqtt's own queue is unbounded and hands out one message per event-loop
        # iteration or two, fewer than paho can read under load: take everything it
        # already holds each time, so the backlog waits in the bounded Inbox (whose
        # drop policy applies and is counted), not in aiomqtt.
        queue = getattr(client, "_queue", None)
        async for m in client.messages:
            self._accept(m)
            while queue is not None and not queue.empty():
                self._accept(queue.get_nowait())
            del m  # not held while waiting for the next message (up to max_packet_bytes)

    def _accept(self, m: aiomqtt.Message) -> None:
        payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload or b"")
        self._inbox.put(IncomingMessage(str(m.topic), payload, m.qos, bool(m.retain)))

    async def _writer(self, client: aiomqtt.Client, v5: bool) -> None:
        while True:
            msg = await self._outbox.get()
            try:
                await client.publish(
                    msg.topic,
                    msg.payload,
                    qos=msg.qos,
                    retain=msg.retain,
                    properties=self._props(msg.topic, v5),
                )
            except BaseException:
                self._outbox.requeue(msg)  # QoS 0 messages are not requeued
                raise
            else:
                self.stats.published += 1
            finally:
                self._outbox.done()
            # aiomqtt's publish waits with asyncio.wait_for, which on Python 3.11 can
            # swallow a cancellation that arrives with the broker's acknowledgement
            # (CPython gh-86296); honour it here, or close() would wait for this task
            # forever and the process would hang on Ctrl-C.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError


#: What a bare EOF before the first CONNACK of a TLS link means.
_CLOSED_AFTER_HANDSHAKE = (
    "the broker closed the link right after the handshake (it refused our client "
    "certificate, or requires one)"
)


def _consume_disconnected(client: Any) -> None:
    """Mark the exception of aiomqtt's ``_disconnected`` future as retrieved when it
    comes: a link lost while no message iterator waits (or an attempt abandoned after
    its CONNACK timeout) sets it with nobody to read it, and asyncio would log "Future
    exception was never retrieved" when the client is collected."""
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future):
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())


def _guard_write_registration(client: Any) -> None:
    """Register paho's socket for writing only while it is still open and has data.

    paho asks for a write callback when it queues a packet; aiomqtt defers the
    ``add_writer`` to the next loop iteration with the descriptor number taken then.
    When the link breaks in between (a broker killed while a message is queued),
    paho has closed the socket: asyncio logged an "Exception in callback" traceback
    for the closed descriptor (or would watch a socket that reused its number).
    The deferred step here checks first; the write itself stays paho's.
    """
    paho = getattr(client, "_client", None)
    if paho is None or not isinstance(getattr(client, "_disconnected", None), asyncio.Future):
        return
    loop = asyncio.get_running_loop()

    def write() -> None:
        try:
            paho.loop_write()
        except Exception as exc:  # a broken link, ended as aiomqtt's own callback ends it
            future = getattr(client, "_disconnected", None)
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_exception(exc)

    def register(_paho: Any, _userdata: Any, sock: Any) -> None:
        def add() -> None:
            if paho.socket() is sock and paho.want_write():
                loop.add_writer(sock.fileno(), write)

        loop.call_soon_threadsafe(add)  # paho may call from connect()'s executor thread

    paho.on_socket_register_write = register


def _os_error(exc: BaseException) -> BaseException | None:
    """The OSError under ``exc`` (aiomqtt wraps the socket's error), if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _close_socket(client: Any) -> None:
    """Close the paho socket of a client whose link ended or never came up (aiomqtt
    leaves an attempt that timed out waiting for its CONNACK open: once a frozen broker
    thaws it would answer and take over the client id of the live link)."""
    paho = getattr(client, "_client", None)
    if paho is not None:
        with contextlib.suppress(Exception):
            paho._sock_close()


def _reason(error: BaseException | None) -> str:
    """Why a link ended, for the log line."""
    text = str(error) if error is not None else ""
    if not text or "Disconnected during message iteration" in text:
        return "the broker closed the connection"
    return text


def _is_stall(error: BaseException | None) -> bool:
    """Whether a link ended because the broker stopped answering (an acknowledgement
    timed out, or paho's ping got no reply), not because it was closed."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "rc", None) == _MQTT_ERR_KEEPALIVE or "timed out" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _is_tls_failure(exc: BaseException) -> bool:
    """Whether a connect error is a TLS handshake or certificate failure (aiomqtt
    turns paho's ``ssl.SSLError`` into an ``MqttError`` carrying only its text)."""
    if isinstance(exc, ssl.SSLError):
        return True
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower() or "TLS" in text
