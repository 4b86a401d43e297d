"""Commands: validated, dispatched to the service, and answered.

A :class:`~delgrad.protocols.Command` on ``.../cmd/{name}`` waits in a bounded
queue (commands are rare; overflow is counted in ``dropped.commands_overflow``)
until the receive loop runs it. Its arguments are checked first; the effect is
asked of the service through the :class:`CommandTarget` interface; the reply
on ``.../cmd/{name}/reply`` carries the same correlation id and either the
service's status after the command (``ok = true``) or the error
(``ok = false``). See docs/runtime.md, "Commands".
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Protocol

from delgrad.errors import DelgradError, ParameterError
from delgrad.protocols import Command, Reply
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._run_state import Mode, is_mode
from delgrad.runtime.service._stats import Counters

COMMANDS = ("checkpoint", "lr", "mode", "pause", "reset", "resume", "snapshot", "status")
#: Commands queued at most; a flood beyond is counted and dropped.
MAX_QUEUED_COMMANDS = 1000


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


def parse_mode(args: dict[str, Any]) -> Mode:
    """The ``mode`` command's ``{"mode": "train" | "infer"}``."""
    mode = args.get("mode")
    if not is_mode(mode):
        raise ParameterError(f"mode must be 'train' or 'infer', got {mode!r}")
    return mode


def parse_lr_scale(args: dict[str, Any]) -> float:
    """The ``lr`` command's ``{"scale": number > 0}``."""
    scale = args.get("scale")
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
        raise ParameterError(f"lr needs a number scale > 0, got {scale!r}")
    return float(scale)


class Commands:
    """The command queue of one service and the handler that runs it.

    Args:
        target: the service the commands act on.
        outbox: where replies go.
        counters: the service's counters.
    """

    def __init__(self, target: CommandTarget, outbox: Outbox, counters: Counters) -> None:
        self._target = target
        self._outbox = outbox
        self._counters = counters
        self._queue: deque[tuple[str, Command]] = deque()

    def offer(self, name: str, command: Command) -> None:
        """Queue ``command`` (sent to ``.../cmd/{name}``), or count it if the queue is full."""
        if len(self._queue) >= MAX_QUEUED_COMMANDS:
            self._counters.inc("dropped.commands_overflow")
        else:
            self._queue.append((name, command))

    async def run_queued(self) -> None:
        """Run every queued command in order and publish its reply."""
        while self._queue:
            name, command = self._queue.popleft()
            try:
                result = await self._run(name, dict(command.args))
                reply = Reply(command.correlation_id, True, result, "")
            except (DelgradError, KeyError, TypeError, ValueError) as exc:
                reply = Reply(command.correlation_id, False, {}, f"{type(exc).__name__}: {exc}")
            await self._outbox.publish("cmd/reply", reply, name=name)

    async def _run(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        target = self._target
        if name == "pause":
            target.pause()
        elif name == "resume":
            target.resume()
        elif name == "mode":
            target.set_mode(parse_mode(args))
        elif name == "lr":
            target.set_lr_scale(parse_lr_scale(args))
        elif name == "snapshot":
            await target.publish_snapshot()
        elif name == "checkpoint":
            self._need_checkpoints()
            return {"path": str(await target.checkpoint())}
        elif name == "reset":
            self._need_checkpoints()
            await target.reset()
        elif name != "status":
            raise ParameterError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
        return target.status()

    def _need_checkpoints(self) -> None:
        if not self._target.has_checkpoints:
            raise ParameterError("no checkpoint folder configured")
