"""Encoding one produce request of pcap chunks: aiokafka's schema against app/runtime/compat.py.

    .venv/bin/python bench/produce_encode.py [BATCH_MIB] [REQUESTS]

A request of one 8 MiB record batch (a chunk) and a small one, as a worker sends to
pcap-chunks; prints the milliseconds per request of each encoding and of one plain
copy of the same bytes, and the peak of memory allocated while encoding. Memory is
kept for reuse as in a worker (app/runtime/memory.py); without it, every megabyte buffer is
mapped and faulted in anew, and aiokafka's encoding takes several times longer.
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.protocol import produce
from aiokafka.protocol.struct import Struct

from app.runtime import compat
from app.runtime import memory


def per_call_ms(fn, arg, n: int) -> float:
    fn(arg)
    t = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter() - t) / n * 1e3


def peak_mib(fn, arg) -> float:
    tracemalloc.start()
    fn(arg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> int:
    memory.keep_freed(128)  # as a worker does (FLOWSIGHT_MALLOC_KEEP_MB): buffers reused, not mapped anew
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    batch = os.urandom(mib << 20)
    req = produce.ProduceRequest_v8(None, -1, 30000, [("pcap-chunks", [(0, batch), (1, b"x" * 1000)])])
    assert compat.encode_produce(req) == Struct.encode(req)
    print(f"one produce request with a record batch of {mib} MiB, {n} times:")
    for name, fn in (("aiokafka's schema", Struct.encode), ("kafka_wire.encode_produce", compat.encode_produce),
                     ("one copy of the batch", bytes)):
        arg = bytearray(batch) if fn is bytes else req
        print(f"  {name:26} {per_call_ms(fn, arg, n):6.2f} ms per request, peak {peak_mib(fn, arg):5.1f} MiB allocated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
