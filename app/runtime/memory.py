"""glibc malloc tuned for a process that moves large byte buffers all the time.

A worker copies every chunk of every upload several times: from the HTTP body into
a chunk, into a Kafka record batch, into a produce request, and back out of fetch
responses. Each copy is a buffer of megabytes. glibc serves such a buffer with a
fresh ``mmap`` and unmaps it when freed (above its dynamic threshold, at most
32 MiB), or gives the top of the heap back to the kernel past 128 KiB of free space.
Either way the next buffer's pages are faulted in and zeroed by the kernel again:
in ``bench/e2e.sh`` about a million page faults and 3 to 4 CPU-seconds of system
time per GiB of capture in one worker.

:func:`keep_freed` raises both thresholds, so that freed buffers are reused from
the heap instead: the page faults drop about five-fold, and the worker spends
about 2 CPU-seconds less per GiB, for up to ``keep`` MiB more resident memory.
On a C library other than glibc it does nothing.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed(keep_mb: int) -> bool:
    """Buffers below ``keep_mb / 2`` MiB come from the heap, and up to ``keep_mb`` MiB freed at its top
    stays there. ``keep_mb`` 0 leaves glibc's defaults. True if the C library took both settings."""
    if keep_mb <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):  # not glibc: musl and macOS have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, (keep_mb << 20) // 2)) and bool(mallopt(M_TRIM_THRESHOLD, keep_mb << 20))
