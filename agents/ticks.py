"""Leader timer: a tick into every flow-parts partition each second.

Tables can only be written inside stream iteration, so idle flushing and row
expiry ride on these ticks through merge_flow_parts.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.errors import KafkaError

from app.main import app, settings
from app.topics import ALL, flow_parts

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


@app.timer(interval=1.0, on_leader=True)
async def tick() -> None:
    now_ms = int(time.time() * 1000)
    for p in range(settings.partitions):
        await flow_parts.send(key=b"tick", value={"tick": now_ms}, partition=p)
