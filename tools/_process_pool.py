"""Independent runs in worker processes, stopped by one Ctrl-C.

``concurrent.futures`` gets Ctrl-C wrong for batch commands: the workers get the
terminal's SIGINT too and die with tracebacks, leaving the ``with`` block waits for
every queued run (training goes on after the user asked it to stop), and stopping
its workers by hand makes its manager thread print a traceback. Here the workers of
a ``multiprocessing`` pool ignore SIGINT; the parent, on KeyboardInterrupt (or any
error), terminates the pool and waits for it before re-raising, so the command exits
130 with no traceback and no process left behind.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import get_context
from typing import Any, TypeVar

R = TypeVar("R")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    fn, args = job
    return fn(*args)


def run_in_processes(
    fn: Callable[..., R], items: Sequence[tuple[Any, ...]], workers: int
) -> Iterator[R]:
    """Yield ``fn(*item)`` for every item as each finishes, in ``workers`` spawned
    processes (``fn`` must be importable). On KeyboardInterrupt (or any error) the
    workers are terminated and joined before it propagates."""
    pool = get_context("spawn").Pool(processes=workers, initializer=_ignore_sigint)
    try:
        yield from pool.imap_unordered(_call, [(fn, tuple(item)) for item in items])
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
