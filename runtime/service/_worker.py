"""Worker: the one thread that runs the service's blocking work, in submission order.

Driver runs, learning steps and checkpoints go through :class:`Worker`, so the
event loop never blocks on them and parameters change between batches only:
with one thread, a job starts after every job submitted before it has ended.
The kernels are compiled ``nogil``, so the thread really runs beside the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Worker:
    """One worker thread for blocking calls, bridged onto the running event loop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delgrad-worker")

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
