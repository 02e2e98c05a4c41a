"""Produce requests encoded with one copy of their record batches, not eight.

aiokafka encodes a request by nesting ``b"".join()`` and ``+``: each level of a
produce request (batch, partition, partitions, topic, topics, request) builds
new bytes from the level below, so a record batch -- up to a chunk of 8 MiB for
pcap-chunks -- is copied about eight times before the connection adds the header
and the size: 3.8 ms for a request of one 8 MiB batch, where one copy takes 0.3
(``bench/produce_encode.py``), or about 0.45 CPU-seconds per GiB of uploads.
Streaming megabytes through memory is also what two workers on shared cores pay
for most (bench/README.md).

:func:`install` gives aiokafka's produce request structs of versions 3 to 8
(one schema, the versions aiokafka can send) an ``encode`` that collects the
small fields and the batches as they are and joins them once. The bytes are the
same as aiokafka's (tests/unit/test_kafka_wire.py compares them); other
requests and versions are left alone.
"""
from __future__ import annotations

import struct

from aiokafka.protocol import produce
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import String

#: the produce request versions with the schema :func:`encode_produce` writes
VERSIONS = (3, 4, 5, 6, 7, 8)
_STRING = String("utf-8")
_ACKS_TIMEOUT = struct.Struct(">hi")
_COUNT = struct.Struct(">i")
_PARTITION = struct.Struct(">ii")


def encode_produce(req) -> bytes:
    """A ProduceRequest v3-v8 as aiokafka's schema encodes it: transactional_id, required_acks,
    timeout, then topics ``[(topic, [(partition, record batch bytes)])]``."""
    pieces = [_STRING.encode(req.transactional_id), _ACKS_TIMEOUT.pack(req.required_acks, req.timeout),
              _COUNT.pack(len(req.topics))]
    for topic, partitions in req.topics:
        pieces += (_STRING.encode(topic), _COUNT.pack(len(partitions)))
        for partition, batch in partitions:
            if batch is None:
                pieces.append(_PARTITION.pack(partition, -1))
            else:
                pieces += (_PARTITION.pack(partition, len(batch)), batch)
    return b"".join(pieces)


def install() -> list[int]:
    """Encode aiokafka's produce requests v3-v8 with :func:`encode_produce`, each version only if it
    encodes a probe request to the same bytes as aiokafka's own schema (a later aiokafka that changes
    a version keeps its own encoding). Idempotent. The versions it took."""
    probe = (None, -1, 30000, [("a", [(0, b"\x01\x02"), (5, None)]), ("bb", [])])
    taken = []
    for v in VERSIONS:
        cls = getattr(produce, f"ProduceRequest_v{v}", None)
        if cls is None:
            continue
        req = cls(*probe)
        if encode_produce(req) == Struct.encode(req):   # aiokafka's own encoding, as before install
            cls.encode = encode_produce
            taken.append(v)
    return taken
