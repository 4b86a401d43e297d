"""Control: what commands and the service's own tasks ask of its parts as a whole.

Pause and resume, mode, learning rate, snapshot, checkpoint, reset, status and
the retained announcement: each composes calls on the parts (run state, online
learner, parameter stream, learning pipeline, worker, checkpoints), so the
command handler (``_commands``) and ``Service`` need not reach into them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delgrad.errors import ParameterError
from delgrad.protocols import Status
from delgrad.runtime.service._checkpoints import Checkpoints
from delgrad.runtime.service._health import HealthCheck
from delgrad.runtime.service._learning import LearningPipeline
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._run_state import Mode, RunState
from delgrad.runtime.service._worker import Worker


class Control:
    """The service's controls (implements :class:`~._commands.CommandTarget`).

    Args:
        driver_name: the configured driver, for the status.
        online, state, params, learning, worker, outbox, checkpoints: the parts.
        wake: tells the inference loop there is work again.
        uptime_s: seconds since the service started.
    """

    def __init__(
        self,
        driver_name: str,
        *,
        online: OnlineLearner,
        state: RunState,
        params: ParameterStream,
        learning: LearningPipeline,
        worker: Worker,
        outbox: Outbox,
        checkpoints: Checkpoints | None,
        wake: Callable[[], None],
        uptime_s: Callable[[], float],
        health: HealthCheck | None = None,
        heartbeat_period_s: float = 5.0,
    ) -> None:
        self._driver_name = driver_name
        self._heartbeat_period_s = float(heartbeat_period_s)
        self._health = health  # warnings listed in the status
        self._online = online
        self._state = state
        self._params = params
        self._learning = learning
        self._worker = worker
        self._outbox = outbox
        self._checkpoints = checkpoints
        self._wake = wake
        self._uptime_s = uptime_s
        self._heartbeats = 0

    @property
    def has_checkpoints(self) -> bool:
        """Whether a checkpoint folder is configured."""
        return self._checkpoints is not None

    def pause(self) -> None:
        """Stop inference and learning (ingest keeps its bounded queue)."""
        self._state.pause()

    def resume(self) -> None:
        """Restart inference and learning."""
        self._state.resume()
        self._wake()

    def set_mode(self, mode: Mode) -> None:
        """Learn (``"train"``) or only predict (``"infer"``)."""
        self._state.set_mode(mode)

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the recipe's learning rates by ``scale`` (> 0)."""
        self._online.set_lr_scale(scale)

    async def publish_snapshot(self) -> None:
        """Publish a full retained parameter snapshot now."""
        await self._params.snapshot()

    def _store(self) -> Checkpoints:
        if self._checkpoints is None:
            raise ParameterError("no checkpoint folder configured")
        return self._checkpoints

    async def checkpoint(self) -> Path:
        """Account pending learning, then write a checkpoint; returns its path."""
        store = self._store()
        await self._learning.collect(block=True)
        return await self._worker.call(store.save)

    async def reset(self) -> None:
        """Return to the last checkpoint and publish a snapshot."""
        store = self._store()
        await self._learning.collect(block=True)
        # parameters, optimiser and mode only: counters and sequence numbers count on
        if not await self._worker.call(lambda: store.load(counters=False)):
            raise ParameterError("no valid checkpoint to return to")
        await self._params.snapshot()

    def status(self) -> dict[str, Any]:
        """Mode, pause state, update number and steps (a command's reply)."""
        return {
            "mode": self._state.mode,
            "paused": self._state.paused,
            "param_seq": self._params.seq,
            "steps": self._online.steps,
        }

    def status_detail(self) -> str:
        """The JSON detail of a status message (at most 256 characters): network,
        delay kind, driver, mode, paused, update number, heartbeat counter and period
        (a monitor judges silence by it) and the number of rejected learning steps."""
        summary = self._online.network_summary()
        detail: dict[str, Any] = {
            "network": "-".join(str(n) for n in summary.layer_sizes),
            "delay": summary.delay_kinds[0],
            "driver": self._driver_name,
            "mode": self._state.mode,
            "paused": self._state.paused,
            "param_seq": self._params.seq,
            "heartbeat": self._heartbeats,
            "heartbeat_period_s": self._heartbeat_period_s,
            "rejected_steps": self._online.rejected,
        }
        if self._health is not None and self._health.active:
            detail["health"] = sorted(self._health.active)  # names; texts in the log
        text = json.dumps(detail, separators=(",", ":"))
        while len(text) > 256:  # a long network description goes first, then warnings
            if detail["network"]:
                detail["network"] = detail["network"][:-16]
            elif detail.get("health"):
                detail["health"] = detail["health"][:-1]
            else:  # never loops: these five always fit
                keep = ("mode", "paused", "param_seq", "heartbeat", "heartbeat_period_s")
                detail = {k: detail[k] for k in keep}
            text = json.dumps(detail, separators=(",", ":"))
        return text

    async def heartbeat(self) -> None:
        """Publish the retained ``alive`` status with the next heartbeat counter."""
        self._heartbeats += 1
        await self._outbox.publish(
            "status", Status("alive", self._uptime_s(), self.status_detail())
        )

    async def announce(self, state: str) -> None:
        """Publish a retained status (``birth``, ``alive``) and a full snapshot."""
        uptime_s = 0.0 if state == "birth" else self._uptime_s()
        await self._outbox.publish("status", Status(state, uptime_s, self.status_detail()))
        await self._params.snapshot()
