"""Leader timers: a tick into every flow-parts partition each second, and into every pcap-chunks
partition every few seconds.

Tables can only be written inside stream iteration, so idle flushing and row
expiry ride on these ticks through merge_flow_parts. On both topics a tick also
lets an agent notice messages the stream skipped at the end of a partition
(app/runtime/gaps.py), which no later message would reveal.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka.errors import KafkaError

from app.main import app, settings
from app.records import TICK_HEADERS
from app.runtime import compat
from app.topics import ALL, flow_parts, pcap_chunks

log = logging.getLogger(__name__)


@app.task
async def declare_topics() -> None:
    """Create the send-only topics too (egress reads them before anything was sent).
    Retries: an exception in a task would stop the worker, and a connection may drop."""
    for topic in ALL:
        for attempt in range(30):
            try:
                await topic.maybe_declare()
                break
            except (KafkaError, OSError) as exc:
                log.warning("declaring %s failed (%r); retrying", topic.get_topic_name(), exc)
                await asyncio.sleep(min(2 ** attempt, 30))
    track_topics()


def track_topics() -> None:
    """Make the producer's metadata follow every topic we send to.

    aiokafka's client fetches metadata for all topics until it tracks any, then only for
    the tracked ones; and a send to a topic it already knew from such a full fetch does not
    track it. The next refresh then forgets that topic's partitions, and its batches wait
    for a leader until the request timeout (a minute of stalled sends, then
    NotLeaderForPartitionError). Tracking every topic up front avoids this."""
    names = [t.get_topic_name() for t in ALL] + [t.changelog_topic.get_topic_name() for t in app.tables.values()]
    try:
        client = compat.producer_client(app)
    except Exception as exc:  # an exception in a task would stop the worker
        log.warning("cannot track topics in the producer's metadata: %r", exc)
        return
    for name in names:
        client.add_topic(name)
    log.info("producer metadata tracks %d topics", len(names))


@app.timer(interval=1.0, on_leader=True)
async def tick() -> None:
    now_ms = int(time.time() * 1000)
    for p in range(settings.partitions):
        await flow_parts.send(key=b"tick", value=json.dumps({"tick": now_ms}).encode(), partition=p)


@app.timer(interval=5.0, on_leader=True)
async def chunk_tick() -> None:
    for p in range(settings.partitions):
        await pcap_chunks.send(key=b"tick", value=b"", headers=TICK_HEADERS, partition=p)
