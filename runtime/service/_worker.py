"""Worker: one thread that runs blocking work of the service, in submission order.

The service has one, the learner's worker (driver runs, learning steps with their
re-observations, checkpoints, commands that load parameters), and with
``learning.pipeline`` a second, the driver's worker (driver runs for predictions),
so batch k+1 is run on the driver while step k learns (docs/runtime.md, "Pipeline
and parameter versions"). Each runs
its jobs in order: with one thread, a job starts after every job submitted
before it has ended. The kernels are compiled ``nogil``, so the threads really
run beside each other and beside the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Worker:
    """One worker thread for blocking calls, bridged onto the running event loop.

    Args:
        name: the thread's name prefix (seen in profilers and thread dumps).
        nice: added to the thread's scheduling niceness on Linux (0: as the process;
            > 0: work that should yield a core to the others, e.g. parameter deltas
            beside the kernels' threads).
    """

    def __init__(self, name: str = "delgrad-worker", *, nice: int = 0) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_renice, initargs=(nice,)
        )

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn()`` behind the jobs already submitted; returns its future at once."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` after the jobs already submitted and wait for its result."""
        return await self.submit(fn)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the thread: after the queued jobs (``wait``), or at once, dropping the
        jobs not started (after a failure; a running job is not interrupted)."""
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


def _renice(nice: int) -> None:
    """The calling thread's niceness + ``nice`` (Linux schedules threads one by one)."""
    if nice and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):  # not permitted, or not Linux: as it is
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
