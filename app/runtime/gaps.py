"""Offsets a stream skipped: find them and fetch them, so no message is lost across a rebalance.

faust-streaming 0.15.x skips messages fetched under an older consumer generation and
still acknowledges them, so their offsets get committed unprocessed. Offsets in our
topics are contiguous (no transactions, no compaction), so an agent can tell: it
expects each partition's next offset to follow the last one it processed (after an
assignment: the group's committed offset). When an event lands past that, the
missing messages are read with a side consumer and handed back to be processed
first; both agents are idempotent, so reading one twice is harmless.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.main import app, settings

log = logging.getLogger(__name__)


@dataclass
class Missed:
    """A message that was skipped, in the shape the agents use."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


class GapFinder:
    """Per topic: the offset each partition should continue at, and the messages a stream skipped before an event
    (module docstring)."""
    def __init__(self, topic_name: str):
        self.topic = topic_name
        self.expected: dict[int, int] = {}

    def forget(self, partitions) -> None:
        for p in partitions:
            self.expected.pop(p, None)

    async def remember(self, partitions) -> None:
        """Where each newly assigned partition starts: the group's committed offset now, before the
        stream can acknowledge (and so commit) messages it skips. Asked later, the committed offset may
        already be past them."""
        todo = [p for p in partitions if p not in self.expected]
        if not todo:
            return
        try:
            starts = await self._committed_many(todo)
        except Exception as exc:  # then the first event asks, as before
            log.warning("%s: committed offsets not known at assignment: %r", self.topic, exc)
            return
        for p, start in starts.items():
            self.expected.setdefault(p, start)

    async def missed(self, partition: int, offset: int) -> list[Missed]:
        """Messages of ``partition`` before ``offset`` that were never processed here."""
        start = self.expected.get(partition)
        if start is None:
            start = await self._committed(partition)
        self.expected[partition] = offset + 1
        if start is None or offset <= start:
            return []
        log.warning("%s[%d]: offsets %d..%d were skipped by the stream; reading them again",
                    self.topic, partition, start, offset - 1)
        return await self._read(partition, start, offset)

    def processed(self, partition: int, offset: int) -> None:
        self.expected[partition] = max(self.expected.get(partition, 0), offset + 1)

    async def _committed(self, partition: int) -> int | None:
        return (await self._committed_many([partition]))[partition]

    async def _committed_many(self, partitions: list[int]) -> dict[int, int]:
        """Where the group stands on each partition: its committed offset or, if it never committed
        one, the partition's first offset (the stream starts there too: auto_offset_reset=earliest)."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=app.conf.id, enable_auto_commit=False,
                             **settings.kafka_kwargs())
        await c.start()
        try:
            out = {}
            for tp in tps:
                committed = await c.committed(tp)
                if committed is None:
                    committed = (await c.beginning_offsets([tp]))[tp]
                out[tp.partition] = committed
            return out
        finally:
            await c.stop()

    async def _read(self, partition: int, start: int, end: int) -> list[Missed]:
        tp = TopicPartition(self.topic, partition)
        c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=max(1 << 20, settings.chunk_bytes * 2),
                             **settings.kafka_kwargs())
        await c.start()
        out: list[Missed] = []
        try:
            c.assign([tp])
            c.seek(tp, start)
            while not out or out[-1].offset < end - 1:
                batch = await c.getmany(tp, timeout_ms=10_000)
                msgs = batch.get(tp, [])
                if not msgs:
                    raise RuntimeError(f"{self.topic}[{partition}]: cannot read offsets {start}..{end - 1}")
                out += [Missed(partition, m.offset, m.key, m.value, list(m.headers or ()), m.timestamp)
                        for m in msgs if m.offset < end]
        finally:
            await c.stop()
        return out
