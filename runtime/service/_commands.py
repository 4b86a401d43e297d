"""Commands: checked, dispatched to the service, and always answered.

A :class:`~delgrad.protocols.Command` on ``.../cmd/{name}`` waits in a bounded
queue (commands are rare; overflow is counted in ``dropped.commands_overflow``)
until the receive loop runs it. Before anything acts, the command is refused
(``ok = false``, counted under ``commands.refused.<reason>``) when it

* came from the broker's retained store (``retained``): a retained command would
  run again at every (re)subscription, e.g. bring a device up paused;
* is older than ``commands.max_age_s`` by its envelope ``timestamp_ns``, or as
  far in the future (``stale``);
* carries a body ``name`` other than the topic level (``name_mismatch``);
* has an unknown name, an unknown, missing or ill-typed argument, or a value
  outside the documented range (``invalid``; :data:`ARG_SPECS`);
* could not be decoded at all (``undecodable``; the correlation id is taken from
  the raw body when it is a valid name, else ``"unknown"``).

The effect is asked of the service through the :class:`CommandTarget`
interface; the reply on ``.../cmd/{name}/reply`` carries the same correlation id
and either the service's status after the command (``ok = true``) or the reason
(``ok = false``), cut to fit the reply limit, echoed input shortened. A QoS 1
duplicate (same name and correlation id as one of the last
:data:`DEDUP_WINDOW` commands) is answered with the first reply again and not
run twice (``commands.duplicate``). No command, reply or failure of a handler
ever leaves this module as an exception. See docs/runtime.md, "Commands".
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from delgrad.errors import DelgradError, ParameterError
from delgrad.protocols import Command, Reply, is_valid_name, unpack_limited
from delgrad.runtime.service._command_args import (
    check_args,
    fit_error,
    shown,
)
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._run_state import Mode
from delgrad.runtime.service._stats import Counters

log = logging.getLogger(__name__)

#: Commands queued at most; a flood beyond is counted and dropped.
MAX_QUEUED_COMMANDS = 1000
#: Recent (name, correlation id) pairs remembered to answer a duplicate without rerunning.
DEDUP_WINDOW = 256


class CommandTarget(Protocol):
    """What commands may ask of the service."""

    @property
    def has_checkpoints(self) -> bool:
        """Whether a checkpoint folder is configured."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_mode(self, mode: Mode) -> None: ...

    def set_lr_scale(self, scale: float) -> None: ...

    async def publish_snapshot(self) -> None: ...

    async def checkpoint(self) -> Path:
        """Write a checkpoint once pending learning is accounted; returns its path."""
        ...

    async def reset(self) -> None:
        """Return to the last checkpoint and publish a snapshot."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"mode", "paused", "param_seq", "steps"}``."""
        ...


@dataclass(frozen=True)
class _Queued:
    name: str  # the topic level
    correlation_id: str
    command: Command | None  # None: refused before running (reason in ``refusal``)
    refusal: tuple[str, str] | None = None  # (counter reason, error text)


class Commands:
    """The command queue of one service and the handler that runs it.

    Args:
        target: the service the commands act on.
        outbox: where replies go.
        counters: the service's counters.
        max_age_s: commands older (or further in the future) than this by their
            envelope time stamp are refused.
        wall_ns: the wall clock in ns since the Unix epoch (tests may replace it).
    """

    def __init__(
        self,
        target: CommandTarget,
        outbox: Outbox,
        counters: Counters,
        *,
        max_age_s: float = 60.0,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._target = target
        self._outbox = outbox
        self._counters = counters
        self._max_age_ns = int(max_age_s * 1e9)
        self._wall_ns = wall_ns
        self._queue: deque[_Queued] = deque()
        self._recent: OrderedDict[tuple[str, str], Reply] = OrderedDict()

    @property
    def queued(self) -> int:
        """Commands waiting to run."""
        return len(self._queue)

    def _put(self, item: _Queued) -> None:
        if len(self._queue) >= MAX_QUEUED_COMMANDS:
            self._counters.inc("dropped.commands_overflow")
        else:
            self._queue.append(item)

    def offer(
        self,
        name: str,
        command: Command,
        *,
        timestamp_ns: int | None = None,
        retained: bool = False,
    ) -> None:
        """Queue ``command`` (sent to ``.../cmd/{name}``), or count it if the queue is full.

        Args:
            name: the topic level (the command's name by the topic).
            command: the decoded command.
            timestamp_ns: its envelope's send time (None: not checked).
            retained: whether it came from the broker's retained store.
        """
        refusal: tuple[str, str] | None = None
        if retained:
            refusal = ("retained", "retained commands are refused (publish with retain=false)")
        elif timestamp_ns is not None and abs(self._wall_ns() - timestamp_ns) > self._max_age_ns:
            age_s = (self._wall_ns() - timestamp_ns) / 1e9
            refusal = (
                "stale",
                f"command time stamp is {age_s:.3g} s from now; "
                f"at most {self._max_age_ns / 1e9:g} s allowed",
            )
        elif command.name != name:
            refusal = (
                "name_mismatch",
                f"body name {shown(command.name)} differs from the topic's {name!r}",
            )
        self._put(_Queued(name, command.correlation_id, command, refusal))

    def refuse_undecodable(self, name: str, payload: bytes, reason: str) -> None:
        """Answer a message on ``.../cmd/{name}`` that failed to decode (``ok = false``)."""
        self._put(
            _Queued(name, _salvage_correlation(payload), None, ("undecodable", fit_error(reason)))
        )

    async def run_queued(self) -> None:
        """Run every queued command in order and publish its reply (never raises)."""
        while self._queue:
            item = self._queue.popleft()
            reply = await self._answer(item)
            try:
                await self._outbox.publish("cmd/reply", reply, name=item.name)
            except Exception:  # a reply that cannot be sent must not stop the service
                self._counters.inc("commands.reply_failed")
                log.exception("reply to command %r could not be published", item.name)

    async def _answer(self, item: _Queued) -> Reply:
        cid = item.correlation_id
        if item.refusal is not None or item.command is None:
            reason, text = item.refusal or ("undecodable", "undecodable command")
            self._counters.inc(f"commands.refused.{reason}")
            return Reply(cid, False, {}, fit_error(text))
        key = (item.name, cid)
        earlier = self._recent.get(key)
        if earlier is not None:
            self._counters.inc("commands.duplicate")
            return earlier
        try:
            args = check_args(item.name, dict(item.command.args))
        except ParameterError as exc:
            self._counters.inc("commands.refused.invalid")
            return Reply(cid, False, {}, fit_error(f"{type(exc).__name__}: {exc}"))
        try:
            result = await self._run(item.name, args)
            reply = Reply(cid, True, result, "")
            self._counters.inc("commands.executed")
        except DelgradError as exc:
            self._counters.inc("commands.failed")
            reply = Reply(cid, False, {}, fit_error(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a bug in a handler: answered, logged, counted
            self._counters.inc("commands.failed")
            log.exception("command %r (correlation id %r) failed", item.name, cid)
            reply = Reply(cid, False, {}, fit_error(f"internal error: {type(exc).__name__}"))
        self._recent[key] = reply
        while len(self._recent) > DEDUP_WINDOW:
            self._recent.popitem(last=False)
        return reply

    async def _run(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        target = self._target
        if name == "pause":
            target.pause()
        elif name == "resume":
            target.resume()
        elif name == "mode":
            target.set_mode(args["mode"])
        elif name == "lr":
            target.set_lr_scale(args["scale"])
        elif name == "snapshot":
            await target.publish_snapshot()
        elif name == "checkpoint":
            self._need_checkpoints()
            return {"path": str(await target.checkpoint())}
        elif name == "reset":
            self._need_checkpoints()
            await target.reset()
        return target.status()

    def _need_checkpoints(self) -> None:
        if not self._target.has_checkpoints:
            raise ParameterError("no checkpoint folder configured")


def _salvage_correlation(payload: bytes) -> str:
    """The ``body.correlation_id`` of an undecodable command if it is a valid name."""
    try:
        obj = unpack_limited(payload)
    except (DelgradError, ValueError):
        return "unknown"
    body = obj.get("body") if isinstance(obj, dict) else None
    cid = body.get("correlation_id") if isinstance(body, dict) else None
    return cid if isinstance(cid, str) and is_valid_name(cid) else "unknown"
