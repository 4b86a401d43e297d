"""Storage: the one path through which the service writes files.

A device left alone meets full, read-only, vanished and slow filesystems. None of
them may stop inference or learning, so every write the service makes (checkpoints,
the sequence high-water, the boot epoch) goes through :class:`Storage`, which turns a
failure into a *degraded state* instead of an exception in a task:

* a failed write is counted (``storage.failures``; successes in ``storage.writes``)
  and returned as ``False`` (or :class:`~delgrad.errors.StorageError` from
  :meth:`Storage.write_or_raise`), never raised as a bare :class:`OSError`;
* while writes fail, or the last one was slower than ``slow_s``, :attr:`Storage.problem`
  says why in one line; the health check turns it into the ``storage`` warning
  (metric ``health.storage``, the status detail, one log line when it starts and one
  when it clears);
* the writer of a failed file tries again when :meth:`Storage.due` says its backoff
  (doubling from ``retry_min_s`` to ``retry_max_s``) has elapsed; the first write that
  succeeds clears the problem.

Thread-safe: checkpoints are written from the worker thread, small files from the
event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from delgrad.errors import StorageError
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime.service._stats import Counters

log = logging.getLogger(__name__)

__all__ = ["Storage"]


class Storage:
    """Writes files atomically and turns storage faults into a degraded state.

    Args:
        counters: where ``storage.writes`` and ``storage.failures`` are counted.
        clock: monotonic seconds (tests may replace it).
        retry_min_s, retry_max_s: the backoff between retries of a failed write (s).
        slow_s: a write that took longer than this (s) raises the problem too.
    """

    def __init__(
        self,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
        slow_s: float = 10.0,
    ) -> None:
        self._counters = counters
        self._clock = clock
        self.retry_min_s = float(retry_min_s)
        self.retry_max_s = float(retry_max_s)
        self.slow_s = float(slow_s)
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._streak = 0  # failures since the last success
        self._next_retry_s = 0.0

    @property
    def problem(self) -> str | None:
        """Why writes fail now (one line), or None while they succeed."""
        return self._problem

    @property
    def retry_delay_s(self) -> float:
        """The backoff before the next attempt after the current run of failures (s)."""
        if not self._streak:
            return 0.0
        return min(self.retry_max_s, self.retry_min_s * 2.0 ** (self._streak - 1))

    def write(self, path: Path, write: Callable[[BinaryIO], object], *, what: str) -> bool:
        """Write ``path`` atomically with ``write(fileobj)``; returns whether it was written.

        Args:
            path: the file.
            write: writes the content into the open temporary file.
            what: what the file is, for the problem text (e.g. ``"checkpoint"``).
        """
        started = self._clock()
        try:
            atomic_write(path, write)
        except OSError as exc:
            self._failed(what, path, exc)
            return False
        self._succeeded(what, self._clock() - started)
        return True

    def write_or_raise(self, path: Path, write: Callable[[BinaryIO], object], *, what: str) -> None:
        """:meth:`write`, raising :class:`~delgrad.errors.StorageError` on failure.

        Raises:
            StorageError: the write failed (already counted; the text says why).
        """
        if not self.write(path, write, what=what):
            raise StorageError(self._problem or f"{what} not written")

    def due(self) -> bool:
        """Whether a failed write may be tried again now (its backoff has elapsed)."""
        return self._clock() >= self._next_retry_s

    def _failed(self, what: str, path: Path, exc: OSError) -> None:
        self._counters.inc("storage.failures")
        reason = exc.strerror or type(exc).__name__
        with self._lock:
            self._streak += 1
            self._next_retry_s = self._clock() + self.retry_delay_s
            first = self._problem is None or self._problem.startswith("slow")
            self._problem = (
                f"{what} not written: {reason} ({path.parent}); "
                "inference and learning go on, retrying"
            )
        if first:  # the health check logs the episode; this line is for debugging
            log.debug("storage: %s not written", what, exc_info=exc)

    def _succeeded(self, what: str, took_s: float) -> None:
        self._counters.inc("storage.writes")
        with self._lock:
            self._streak = 0
            if took_s > self.slow_s:
                self._problem = f"slow: writing the {what} took {took_s:.1f} s"
            else:
                self._problem = None
