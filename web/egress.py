"""GET /v1/flows: long poll over a Kafka topic with a resumable cursor.

    curl 'http://localhost:6066/v1/flows?timeout=30'              # from the start of the topic
    curl 'http://localhost:6066/v1/flows?cursor=C&timeout=30'     # resume after the last answer
    curl 'http://localhost:6066/v1/flows?from=end&timeout=30'     # only records that arrive from now on

The answer is ``{"records": [...], "cursor": "..."}`` at once when records lie
past the cursor, else after up to ``timeout`` seconds (default 30, max 60). The
cursor holds Kafka offsets, so any worker can answer and a client that resends
its last cursor after a restart neither loses nor repeats records. The flows topic
carries records in batches; the cursor can point into one, so ``limit`` is exact.
"""
from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.web import View

from app.api import cursor as cursors
from app.main import settings

MAX_TIMEOUT_S = 60
DEFAULT_TIMEOUT_S = 30
MAX_RECORDS = 5000
#: Seconds past its timeout that a long poll may take at most, whatever happens in the Kafka client underneath.
GRACE_S = 15
STOP_S = 5


class PollError(Exception):
    """A long poll refused: its HTTP status and the reason."""
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def parse_query(query, partitions: int | None = None) -> tuple[dict[int, int] | None, float, int, bool]:
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT_S))
        limit = int(query.get("limit", MAX_RECORDS))
    except (ValueError, OverflowError):
        raise PollError(400, "timeout and limit must be numbers") from None
    if not 0 <= timeout <= MAX_TIMEOUT_S:
        raise PollError(400, f"timeout must be from 0 to {MAX_TIMEOUT_S} seconds")
    if not 1 <= limit <= MAX_RECORDS:
        raise PollError(400, f"limit must be from 1 to {MAX_RECORDS}")
    start = query.get("from", "beginning")
    if start not in ("beginning", "end"):
        raise PollError(400, "from must be 'beginning' or 'end'")
    cur = None
    if query.get("cursor"):
        try:
            cur = cursors.decode(query["cursor"], partitions or settings.partitions)
        except cursors.CursorError as exc:
            raise PollError(400, str(exc)) from None
    return cur, timeout, limit, start == "end"


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


#: Long polls this worker holds open now (each one a Kafka consumer and a socket).
open_polls = asyncio.Semaphore(settings.max_long_polls)


def poll_view(topic: str, partitions: int | None = None, batched: bool = False) -> type[View]:
    class Poll(View):
        """GET on one egress topic: records after a cursor, waiting up to ``timeout`` for new ones."""
        async def get(self, request):
            try:
                cur, timeout, limit, from_end = parse_query(request.query, partitions)
                if open_polls.locked():
                    return self.json({"error": f"this worker holds {settings.max_long_polls} long polls already; "
                                      "retry with the same cursor"}, status=503, headers={"Retry-After": "2"})
                async with open_polls:
                    timeout = min(timeout, settings.long_poll_max_s)
                    return self.json(await bounded_poll(topic, cur, timeout, limit, from_end, partitions, batched))
            except PollError as exc:
                return self.json({"error": exc.message}, status=exc.status)
            except (TimeoutError, KafkaError) as exc:
                return self.json({"error": f"Kafka is unavailable ({type(exc).__name__}); retry with the same cursor"},
                                 status=503, headers={"Retry-After": "5"})

    Poll.__name__ = f"Poll_{topic.replace('-', '_')}"
    return Poll
