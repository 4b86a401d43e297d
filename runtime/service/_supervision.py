"""Supervision: every task of the service restarts after an unexpected exception, a bounded
number of times; beyond that the whole service stops, never half alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from delgrad.errors import DelgradError
from delgrad.runtime.service._stats import Counters

log = logging.getLogger("delgrad.runtime.service")


class ServiceFailed(DelgradError, RuntimeError):
    """A task of the service failed beyond its restarts; the message says which and why."""


class Supervisor:
    """Runs the service's tasks and restarts a failed one.

    Args:
        counters: where failures (``tasks.failed.<name>``) and restarts are counted.
        max_restarts: restarts per task before the service stops.
        stop: set when a task failed for good (and read: no restart while stopping).
    """

    def __init__(self, counters: Counters, *, max_restarts: int, stop: asyncio.Event) -> None:
        self._counters = counters
        self._max_restarts = max_restarts
        self._stop = stop
        self.failure: str | None = None  # why the service ended on its own, if it did

    def fail(self, why: str) -> None:
        """Record a failure outside a task (e.g. while shutting down)."""
        self.failure = why

    def task(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """:meth:`run` as an asyncio task of that name."""
        return asyncio.create_task(self.run(name, body), name=name)

    async def run(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body()`` until it returns; restart it after an unexpected exception
        (logged, counted), at most ``max_restarts`` times, backing off up to 2 s."""
        restarts = 0
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._counters.inc(f"tasks.failed.{name}")
                log.exception("service task %r failed (restart %d)", name, restarts + 1)
                if restarts >= self._max_restarts or self._stop.is_set():
                    self.failure = f"task {name!r}: {type(exc).__name__}: {exc}"
                    self._stop.set()
                    return
                restarts += 1
                self._counters.inc("tasks.restarts")
                await asyncio.sleep(min(0.05 * 2**restarts, 2.0))
