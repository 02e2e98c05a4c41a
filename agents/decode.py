"""decode_chunks: pcap-chunks -> flow-parts.

Each chunk is decoded once: table ``blocks`` remembers which chunk indexes of a
block are done, and a chunk is marked done only after every part it produced
has been acknowledged by Kafka. Parts go to the partition of their flow key, one
message per (chunk, partition).
"""
from __future__ import annotations

import asyncio
import logging

from app import capture, decode, flows, progress, ranges
from app.main import app, settings
from app.topics import flow_parts, pcap_chunks
from tables import blocks

log = logging.getLogger(__name__)


def header_map(headers) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else headers or ()
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in items}


def decode_chunk(data: bytes, sensor: str) -> tuple[dict[int, list], decode.Packets]:
    idx = capture.index(data)
    pk = decode.decode(data, idx)
    more = (decode.decode(data, idx, inner=True),) if settings.inner_tunnels else ()
    return flows.split_by_partition(flows.parts(sensor, pk, settings.window_ms, *more), settings.partitions), pk


@app.agent(pcap_chunks, concurrency=1)
async def decode_chunks(stream):
    loop = asyncio.get_running_loop()
    async for event in stream.events():
        h = header_map(event.headers)
        block, sensor, chunk = h["block"], h["sensor"], int(h["chunk"])
        row = blocks.get(block) or {"sensor": sensor, "done": []}
        if ranges.contains(row["done"], chunk):
            progress.mark("decode", duplicate_chunks=1)
            continue
        try:
            by_partition, pk = await loop.run_in_executor(None, decode_chunk, event.value, sensor)
        except capture.CaptureError as exc:  # ingest checked the chunk; this is a bug or a corrupt message
            log.error("chunk %s/%s of sensor %s is unreadable: %s", block, chunk, sensor, exc)
            by_partition, pk = {}, None
        futures = [await flow_parts.send(key=block.encode(), partition=p,
                                         value={"block": block, "chunk": chunk, "sensor": sensor, "parts": items})
                   for p, items in sorted(by_partition.items())]
        for fut in futures:
            await fut
        blocks[block] = {"sensor": sensor, "done": ranges.add(row["done"], chunk)}
        progress.mark("decode", chunks=1, packets=len(pk.status) if pk else 0,
                      parts=sum(len(v) for v in by_partition.values()))
