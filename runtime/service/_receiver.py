"""Receiving: every incoming message is decoded and routed to its stage.

Events go to ingest, labels to the label join, commands to the command queue.
A malformed message is counted (``malformed.<error>``) and dropped; one valid
on the wire that a stage cannot take is counted (``dropped.unprocessable.<error>``)
and dropped too: the receive loop never ends on a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from delgrad.errors import DelgradError
from delgrad.protocols import (
    Command,
    Labels,
    ProtocolError,
    SensorEvents,
    SpikeBatch,
    Transport,
    decode,
    parse_topic,
)
from delgrad.runtime.service._commands import Commands
from delgrad.runtime.service._inference import Inference
from delgrad.runtime.service._ingest import Ingest
from delgrad.runtime.service._join import LabelJoin
from delgrad.runtime.service._learning import LearningPipeline
from delgrad.runtime.service._stats import Counters

log = logging.getLogger("delgrad.runtime.service")


class Receiver:
    """Routes messages of one device's input topics to the service's stages.

    Args:
        ingest, join, learning, commands, inference: the stages messages go to
            (``inference`` is woken when work was queued).
        counters: where malformed and dropped messages are counted.
        clock: monotonic clock in seconds (arrival times).
    """

    def __init__(
        self,
        *,
        ingest: Ingest,
        join: LabelJoin,
        learning: LearningPipeline,
        commands: Commands,
        inference: Inference,
        counters: Counters,
        clock: Callable[[], float],
    ) -> None:
        self._ingest = ingest
        self._join = join
        self._learning = learning
        self._commands = commands
        self._inference = inference
        self._counters = counters
        self._clock = clock

    async def loop(self, transport: Transport) -> None:
        """Receive, route and run queued commands until cancelled."""
        while True:
            due_s = self._ingest.idle_flush_in(self._clock())
            if due_s is not None and due_s <= 0:
                if self._ingest.flush_idle(self._clock()):
                    self._inference.wake()
                continue
            try:
                incoming = await transport.recv(timeout=due_s)
            except TimeoutError:
                continue  # the stream went quiet: its started windows are due
            try:
                self.handle(incoming.topic, incoming.payload, retained=incoming.retain)
            except (DelgradError, ValueError, TypeError, IndexError) as exc:
                # a message valid on the wire that a stage could not take: counted,
                # dropped, the loop goes on (never a deaf device)
                self._counters.inc(f"dropped.unprocessable.{type(exc).__name__}")
                log.warning(
                    "message on %s dropped: %s: %s", incoming.topic, type(exc).__name__, exc
                )
            del incoming  # not held while waiting for the next one (up to 16 MiB)
            await self._commands.run_queued()
            # recv() returns at once while the inbox holds messages; yield once per
            # message so inference, metrics and publishing keep their turn under overload
            await asyncio.sleep(0)

    def handle(self, topic_str: str, payload: bytes, *, retained: bool = False) -> None:
        """Decode and route one message; malformed ones are counted and dropped (an
        undecodable command is also answered, ``ok = false``)."""
        now = self._clock()
        try:
            info = parse_topic(topic_str)
        except DelgradError as exc:
            self._counters.inc(f"malformed.{type(exc).__name__}")
            return
        try:
            envelope = decode(payload)
        except (ProtocolError, DelgradError) as exc:
            self._counters.inc(f"malformed.{type(exc).__name__}")
            if str(info.kind) == "cmd" and info.name is not None:
                self._commands.refuse_undecodable(
                    info.name, payload, f"undecodable command: {type(exc).__name__}: {exc}"
                )
            return
        msg = envelope.message
        kind = str(info.kind)
        if kind == "events/in" and isinstance(msg, SpikeBatch):
            queued = self._ingest.spikes(msg, now)
        elif kind == "events/in" and isinstance(msg, SensorEvents):
            queued = self._ingest.stream(msg, now)
        elif kind == "labels" and isinstance(msg, Labels):
            self._counters.inc("labels.received", len(msg.trial_ids))
            queued = self._learning.add(self._join.join_labels(msg.trial_ids, msg.labels, now))
        elif kind == "cmd" and isinstance(msg, Command):
            self._commands.offer(
                info.name or msg.name,
                msg,
                timestamp_ns=envelope.timestamp_ns,
                retained=retained,
            )
            return
        else:
            self._counters.inc("malformed.wrong_schema_for_topic")
            return
        if queued:
            self._inference.wake()
