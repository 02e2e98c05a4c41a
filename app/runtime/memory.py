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

Python's cyclic garbage collector, too, is kept out of the way. Its full
collections go through every object the process holds, and a worker holds
some 120,000 from its start alone (modules, Faust's services, the app); the
objects a hot loop makes (a search makes one view per run of records it keeps)
trigger a full collection every few hundred thousand. A search of a flows topic
spent 15% of its CPU in them (bench/query.py). :func:`settle`, once everything
is imported, collects once and moves what is left to the collector's permanent
generation (``gc.freeze``), which it never goes through again, and makes full
collections rarer: the flows agent's open windows hold a few hundred thousand
lists that live for a minute or more, and with Python's thresholds a worker
spent 8.2 of its 50 CPU-seconds in collections on bench/e2e.py's 0.94 GiB, 5.4
of them in 32 full ones (:data:`THRESHOLDS`). A cycle of garbage that lived long
enough to reach the oldest generation lives longer: it is freed at the next full
collection.
:func:`track_collections` counts each generation's collections and their CPU
time, for /v1/health.
"""
from __future__ import annotations

import ctypes
import gc
import time

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


#: The collector's thresholds once settled: young and middle collections as Python's defaults have them
#: (700 net allocations, 10 of those), a full one every 100 middle ones, not 10. Young collections must stay
#: frequent: the Kafka client leaves cycles of garbage that hold fetched buffers, and with a young
#: collection every 20,000 allocations a search process grew to 5.8 GB, against 0.5 with 700.
THRESHOLDS = (700, 10, 100)


def settle() -> int:
    """Collect once, then leave every object there is now out of later collections, and collect less often
    (:data:`THRESHOLDS`); how many objects were left out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return gc.get_freeze_count()


_collections: dict[int, list] = {}     # generation -> [collections, CPU-seconds]
_started = [0.0]


def _timed(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.process_time()
    else:
        c = _collections.setdefault(info["generation"], [0, 0.0])
        c[0] += 1
        c[1] += time.process_time() - _started[0]


def track_collections() -> None:
    """Count the garbage collector's collections and their CPU time from now on (idempotent)."""
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)


def gc_report() -> dict:
    """Per generation, the collections and their CPU-seconds since :func:`track_collections`; the objects
    :func:`settle` froze."""
    return {"gc": {str(g): {"collections": n, "cpu_s": round(t, 3)} for g, (n, t) in sorted(_collections.items())},
            "gc_cpu_s": round(sum(t for _, t in _collections.values()), 3), "frozen_objects": gc.get_freeze_count()}
