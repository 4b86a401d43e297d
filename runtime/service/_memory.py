"""Memory: large transient buffers go back to the operating system.

A maximum-size message (16 MiB) passes through several buffers (the socket read,
the payload, the decoded arrays). glibc serves such blocks with ``mmap`` at first,
but raises its mmap threshold to the largest block freed (up to 32 MiB), after
which they come from the heap and stay mapped: a burst of big messages raised
the service's RSS by ~90 MB for good (issue 10, case 6). :func:`tame_allocator`
fixes the threshold at :data:`MMAP_THRESHOLD_BYTES` (so big blocks are always
mapped and returned on free) and :func:`trim` returns freed heap at the top of
the arenas (called with every heartbeat). Both do nothing where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Blocks from this size up are mmapped (and unmapped when freed).
MMAP_THRESHOLD_BYTES = 256 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers of glibc's malloc.h
_M_TRIM_THRESHOLD = -1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc only)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def tame_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds; returns whether it could."""
    if _LIBC is None:
        return False
    ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    ok &= _LIBC.mallopt(_M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD_BYTES)
    return bool(ok)


def trim() -> None:
    """Return free heap memory to the operating system (glibc ``malloc_trim``)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
