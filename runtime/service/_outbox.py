"""Outbox: every message the service sends, encoded, counted and handed to the transport.

One place for the envelope sequence numbers of the device, for the
``published.*`` counters and the published-bytes rate, and for the policy on a
failed publish: counted in ``dropped.publish_failed``, never raised into the
loop that published.

Envelope sequence numbers: ``seq = epoch * 2**40 + n``, where ``n`` counts the
messages of a topic in this process (0, 1, 2, ...) and ``epoch`` is the *boot
epoch* (:func:`next_boot_epoch`), larger at every start than at any earlier one.
So numbers never go backwards and are never reused for a different message,
across resets (which leave them alone), restarts and SIGKILL. The last will
carries the last number of its boot, ``epoch * 2**40 + 2**40 - 1``: the broker
publishes it after everything the boot sent, and the next boot's numbers are
above it (docs/protocol.md, section 5).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from delgrad.protocols import (
    Message,
    Publisher,
    Status,
    Transport,
    TransportError,
    Will,
    encode,
    policy_for,
    topic,
)
from delgrad.runtime.service._stats import Counters, RateMeter
from delgrad.runtime.service._storage import Storage

log = logging.getLogger(__name__)

#: Low bits of an envelope sequence number counting the messages of one boot.
EPOCH_SHIFT = 40
#: Boot epochs fit in the 24 bits above :data:`EPOCH_SHIFT`.
MAX_EPOCH = (1 << 24) - 1
EPOCH_NAME = "boot_epoch.json"
#: Longest wait at a start whose boot epoch cannot be recorded (s).
MAX_UNRECORDED_WAIT_S = 120.0
#: Epoch time (Unix seconds) of boot epoch 0 on the clock: 2024-01-01 UTC.
_EPOCH_ORIGIN_S = 1_704_067_200


def next_boot_epoch(
    folder: Path | None,
    *,
    now_s: float | None = None,
    storage: Storage | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """This start's boot epoch: above the last one recorded in ``folder`` (written
    back atomically before anything is published) and at least the minutes since
    2024-01-01 UTC (so a device without a folder, or with a new one, still
    continues above earlier starts that were at least a minute ago).

    If the record cannot be written (full, read-only or vanished folder), the next
    start would compute the same epoch from the old record; so this start waits
    (``sleep``, at most :data:`MAX_UNRECORDED_WAIT_S`, logged) until the clock's
    minute is past its epoch: every later start then takes a larger one from the clock.

    Args:
        folder: the checkpoint folder, or None (no record kept).
        now_s: the wall clock in Unix seconds (tests).
        storage: the write path (counts the failure); default: a new one.
        sleep: how to wait (tests).
    """
    now = time.time() if now_s is None else now_s
    epoch = max(0, int((now - _EPOCH_ORIGIN_S) // 60))
    if folder is not None:
        path = folder / EPOCH_NAME
        try:
            epoch = max(epoch, int(json.loads(path.read_text())["epoch"]) + 1)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no record yet (or unreadable): the clock's epoch
        epoch = min(epoch, MAX_EPOCH)
        data = json.dumps({"epoch": epoch}).encode()
        storage = storage if storage is not None else Storage(Counters())
        if not storage.write(path, lambda fh: fh.write(data), what="boot epoch"):
            wait_s = min(MAX_UNRECORDED_WAIT_S, _EPOCH_ORIGIN_S + 60 * (epoch + 1) - now)
            log.warning(
                "the boot epoch could not be recorded (%s): waiting %.0f s for the next "
                "minute, so that sequence numbers stay above every earlier start",
                storage.problem,
                max(0.0, wait_s),
            )
            if wait_s > 0:
                sleep(wait_s)
    return min(epoch, MAX_EPOCH)


def first_seq(epoch: int) -> int:
    """The first envelope sequence number of a boot."""
    return epoch << EPOCH_SHIFT


def status_will(device: str, epoch: int) -> Will:
    """The last will of a boot: a retained ``lost`` status with the boot's last number."""
    status_topic = topic(device, "status")
    policy = policy_for(status_topic)
    payload = encode(
        Status("lost", 0.0, "connection lost"),
        seq=first_seq(epoch + 1) - 1,
        sender=device,
        timestamp_ns=time.time_ns(),
    )
    return Will(status_topic, payload, policy.qos, policy.retain)


class Outbox:
    """Publishes the messages of one device.

    Args:
        transport: the connected message bus.
        device: device id (the topic prefix and the envelopes' sender).
        counters: the service's counters.
        clock: monotonic clock in seconds.
        epoch: the boot epoch (:func:`next_boot_epoch`).
    """

    def __init__(
        self,
        transport: Transport,
        device: str,
        counters: Counters,
        clock: Callable[[], float],
        *,
        epoch: int = 0,
    ) -> None:
        self._transport = transport
        self._device = device
        self.epoch = epoch
        self._publisher = Publisher(transport, device, first_seq=first_seq(epoch))
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
        """The next envelope sequence number per topic (kept in checkpoints, for the record)."""
        return self._publisher.sequences()
