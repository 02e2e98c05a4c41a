"""decode_chunks: pcap-chunks -> flow-parts.

Each chunk is decoded once: table ``blocks`` remembers which chunk indexes of a
block are done, and a chunk is marked done only after every part it produced
has been acknowledged by Kafka. Parts go to the partition of their flow key, one
message per (chunk, partition), and every partition gets one (empty if need be) that
carries the chunk's highest capture time.

A block's chunks are dealt over the partitions (:func:`app.topics.chunk_partition`), so that
every worker decodes a share of a large upload. Chunk ``i`` goes to lane ``i mod
partitions``: lane 0 is the block key's own partition, where its row (the one ingest
asks for) lives; each other lane keeps a row of its own chunks, and reports each
chunk it finished to the block's own row with an empty ``done`` message.
"""
from __future__ import annotations

import asyncio
import json
import logging

from app.capture import pcap
from app.flows import decode
from app.flows import parts as flows
from app.runtime import progress
from app.flows import ranges
from app.flows.clock import robust_top
from app.main import app, settings
from app.records import MESSAGE_VERSIONS, ChunkHeaders
from app.runtime.gaps import GapFinder
from app.runtime.send import send_all
from app.topics import block_key, flow_parts, home_partition, pcap_chunks, row_key
from tables import blocks

log = logging.getLogger(__name__)


def decode_chunk(data: bytes, sensor: str) -> tuple[dict[int, list], decode.Packets]:
    idx = pcap.index(data)
    pk = decode.decode(data, idx)
    more = (decode.decode(data, idx, inner=True),) if settings.inner_tunnels else ()
    return flows.split_by_partition(flows.parts(sensor, pk, settings.window_ms, *more), settings.partitions), pk


gaps = GapFinder(pcap_chunks.get_topic_name())


@app.on_partitions_revoked.connect
async def _forget(app_, revoked, **kwargs) -> None:
    gaps.forget(tp.partition for tp in revoked if tp.topic == pcap_chunks.get_topic_name())


@app.on_partitions_assigned.connect
async def _remember(app_, assigned, **kwargs) -> None:
    await gaps.remember(tp.partition for tp in assigned if tp.topic == pcap_chunks.get_topic_name())


def chunk_messages(block: str, chunk: int, sensor: str, chunks: int, by_partition: dict[int, list]) -> list[tuple]:
    """One flow-parts message per partition for a chunk: its parts there (maybe none), the chunk's highest
    capture time (None without parts; a lone damaged stamp left out, app/flows/clock.py), its packets and its
    block's chunk count."""
    top = robust_top([part[5] for items in by_partition.values() for part in items], settings.max_clock_jump_s * 1000)
    n = sum(part[2] for items in by_partition.values() for part in items)
    head = {"block": block, "chunk": chunk, "sensor": sensor, "top": top, "n": n, "chunks": chunks,
            "v": MESSAGE_VERSIONS["flow-parts"]}
    return [(flow_parts, block.encode(), json.dumps({**head, "parts": by_partition.get(p, [])}).encode(), p)
            for p in range(settings.partitions)]


def new_row(h: ChunkHeaders) -> dict:
    return {"sensor": h.sensor, "sha256": h.sha256, "chunks": h.chunks, "done": [],
            "chunk_bytes": h.chunk_bytes or None}


async def report(bkey: str, chunk: int, h: ChunkHeaders) -> None:
    """Tell the block's own row that a chunk of another lane is done (ingest reads that row only)."""
    if chunk % settings.partitions:
        headers = h._replace(done=True).encode()
        await send_all([(pcap_chunks, bkey.encode(), b"", home_partition(bkey, settings.partitions), headers)],
                       f"done report of chunk {chunk} of block {h.block}")


async def handle(value: bytes, headers) -> None:
    """Decode one chunk once; mark it done only after Kafka acknowledged every part it produced."""
    h = ChunkHeaders.decode(headers)
    if h is None:  # a tick (agents/ticks.py): only for the gap check before it
        return
    block, sensor, chunk, sha = h.block, h.sensor, h.chunk, h.sha256
    bkey = block_key(sensor, block)
    if h.done:  # another lane finished this chunk
        row = blocks.get(bkey) or new_row(h)
        if row["sha256"] == sha and not ranges.contains(row["done"], chunk):
            blocks[bkey] = {**row, "done": ranges.add(row["done"], chunk)}
        return
    rkey = row_key(bkey, chunk, settings.partitions)
    row = blocks.get(rkey) or new_row(h)
    if row["sha256"] != sha:  # ingest answers 409 for this; two racing uploads can still get here
        log.warning("block %s: chunk %d has other content than the block's first upload; dropped", block, chunk)
        progress.mark("decode", conflicting_chunks=1)
        return
    if ranges.contains(row["done"], chunk):
        # decoded before; say so again (no parts) so that an announce of a retried upload completes
        progress.mark("decode", duplicate_chunks=1)
        await send_all(chunk_messages(block, chunk, sensor, row["chunks"], {}),
                       f"duplicate chunk {chunk} of block {block}")
        await report(bkey, chunk, h)  # again: the first report may have been lost in a crash
        return
    loop = asyncio.get_running_loop()
    try:
        by_partition, pk = await loop.run_in_executor(None, decode_chunk, value, sensor)
    except pcap.CaptureError as exc:  # ingest checked the chunk; this is a bug or a corrupt message
        log.error("chunk %s/%s of sensor %s is unreadable: %s", block, chunk, sensor, exc)
        by_partition, pk = {}, None
    # every partition hears of every chunk and how far its capture time went, parts for it or not: each
    # partition's clock of the sensor follows its capture time, and waits for blocks still arriving (chunks: how many)
    await send_all(chunk_messages(block, chunk, sensor, row["chunks"], by_partition),
                   f"chunk {chunk} of block {block}")
    blocks[rkey] = {**row, "done": ranges.add(row["done"], chunk)}
    await report(bkey, chunk, h)
    progress.mark("decode", chunks=1, packets=len(pk.status) if pk else 0,
                  parts=sum(len(v) for v in by_partition.values()))
    if pk is not None and (skipped := pk.skipped()):
        progress.mark("decode_skipped", **skipped)


def _warm_up() -> None:
    """Load the decoder's compiled code (numba's cache) and scipy.stats once, at start: not with the
    first chunk or the first scored window, whose latency it would add to."""
    import scipy.stats  # noqa: F401  (app.detect.scorer uses it for alert limits)

    from app.capture import synth
    decode_chunk(synth.generate(seed=1, conversations=4, packets=40).pcap, "warm-up")


@app.task
async def warm_up() -> None:
    try:
        await asyncio.get_running_loop().run_in_executor(None, _warm_up)
    except Exception as exc:  # an exception in a task would stop the worker; this only saves time
        log.warning("warm-up failed: %r", exc)


@app.agent(pcap_chunks, concurrency=1)
async def decode_chunks(stream):
    async for event in stream.events():
        p, offset = event.message.partition, event.message.offset
        for m in await gaps.missed(p, offset):
            await handle(m.value, m.headers)
        await handle(event.value, event.headers)
        gaps.processed(p, offset)
