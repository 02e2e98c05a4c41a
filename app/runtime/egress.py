"""Reading an egress topic from a cursor: the long polls of web/egress.py and the placebo sink share it."""
from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from app.api import cursor as cursors
from app.main import settings

#: Seconds past its timeout that a long poll may take at most, whatever happens in the Kafka client underneath.
GRACE_S = 15
STOP_S = 5


async def poll(topic: str, cur: dict[int, cursors.Position] | None, timeout_s: float, limit: int,
               from_end: bool, partitions: int | None = None, batched: bool = False) -> dict:
    """Up to ``limit`` records past the cursor. ``batched``: each message is ``{"records": [...]}``
    (the flows topic), and an answer may end inside one; the cursor then says how far."""
    # earliest: if a cursor's offset is ever out of range (around a leader change), start the partition
    # again rather than jump to its end; repeats are dropped by flowId/id, a skip would be a loss
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                group_id=None, request_timeout_ms=15000, auto_offset_reset="earliest",
                                **settings.kafka_kwargs())
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {"records": [], "cursor": cursors.encode(cur or {})}
        tps = [TopicPartition(topic, p) for p in range(partitions or settings.partitions)]
        consumer.assign(tps)
        for tp in tps:
            if cur is not None and tp.partition in cur:
                consumer.seek(tp, cursors.split(cur[tp.partition])[0])
            elif from_end and cur is None:
                await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_beginning(tp)
        fetched = await consumer.getmany(*tps, timeout_ms=int(timeout_s * 1000), max_records=limit)
        records: list = []
        positions: dict[int, cursors.Position] = {}
        for tp in sorted(fetched, key=lambda t: t.partition):
            msgs = fetched[tp]
            at, skip = cursors.split(cur[tp.partition]) if cur and tp.partition in cur else (-1, 0)
            pos: cursors.Position | None = None
            for m in msgs:
                room = limit - len(records)
                first = skip if m.offset == at else 0
                if room <= 0:
                    pos = (m.offset, first) if first else m.offset
                    break
                value = json.loads(m.value)
                recs = value.get("records", []) if batched else [value]
                take = recs[first:first + room]
                records.extend(take)
                if first + len(take) < len(recs):
                    pos = (m.offset, first + len(take))
                    break
            positions[tp.partition] = pos if pos is not None else msgs[-1].offset + 1
        for tp in tps:
            if tp.partition not in positions:
                positions[tp.partition] = cur[tp.partition] if cur and tp.partition in cur \
                    else await consumer.position(tp)
        return {"records": records, "cursor": cursors.encode(positions)}
    finally:
        try:   # a consumer whose fetcher died must not hold the answer, nor the poll's slot
            await asyncio.wait_for(consumer.stop(), STOP_S)
        except (TimeoutError, KafkaError, OSError):
            pass


async def bounded_poll(topic: str, cur, timeout_s: float, limit: int, from_end: bool, partitions: int | None = None,
                       batched: bool = False) -> dict:
    """:func:`poll`, ended by ``asyncio.TimeoutError`` at most GRACE_S past its timeout, whatever the Kafka client
    does underneath (a fetcher task that died once held a poll, and its slot, for ever)."""
    return await asyncio.wait_for(poll(topic, cur, timeout_s, limit, from_end, partitions, batched),
                                  timeout_s + GRACE_S)
