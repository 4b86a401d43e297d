"""Memory: large transient buffers go back to the operating system, and the
buffers of every learning step are not mapped anew each time.

A maximum-size message (16 MiB) passes through several buffers (the socket read,
the payload, the decoded arrays). glibc serves such blocks with ``mmap`` at first,
but raises its mmap threshold to the largest block freed (up to 32 MiB), after
which they come from the heap and stay mapped: a burst of big messages raised
the service's RSS by ~90 MB for good (issue 10, case 6). :func:`tame_allocator`
fixes the threshold (so blocks above it are always mapped and returned on free)
and :func:`trim` returns freed heap at the top of the arenas (called with every
heartbeat). Both do nothing where glibc is absent.

The threshold is :func:`mmap_threshold` of the network: a mapped block costs a
page fault per 4 KiB each time it is allocated, and a learning step allocates
temporaries of its parameter arrays' size (gradients, moments' checks, packed
rows) dozens of times per second. At 784-350-10, 5,000 trials/s, a 256 KiB
threshold put a third of the host's CPU time in the kernel (page faults, 10,000
interrupts/s) and the service learned ~4,000 trials/s; at 4 MiB, 4 % and all of
them (docs/performance.md, issue 24).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: The smallest mmap threshold :func:`mmap_threshold` picks.
MIN_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
#: glibc's own ceiling for its dynamic threshold (64-bit), and ours.
MAX_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
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


def mmap_threshold(largest_array_bytes: int) -> int:
    """Bytes from which blocks are mmapped, for a network whose largest parameter
    array has ``largest_array_bytes``: twice that (a step's temporaries of that size
    come from the heap), at least :data:`MIN_MMAP_THRESHOLD_BYTES`, at most
    :data:`MAX_MMAP_THRESHOLD_BYTES`."""
    wanted = 2 * int(largest_array_bytes)
    return max(MIN_MMAP_THRESHOLD_BYTES, min(MAX_MMAP_THRESHOLD_BYTES, wanted))


def tame_allocator(threshold_bytes: int = MIN_MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes`` and its trim threshold at
    four times that; returns whether it could."""
    if _LIBC is None:
        return False
    ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes))
    ok &= _LIBC.mallopt(_M_TRIM_THRESHOLD, 4 * int(threshold_bytes))
    return bool(ok)


def trim() -> None:
    """Return free heap memory to the operating system (glibc ``malloc_trim``)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
