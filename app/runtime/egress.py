"""Reading an egress topic from a cursor: the long polls of web/egress.py and the placebo sink share it, and
searches of the flows topic by capture time and filter (GET /v1/flows with a query, /v1/top, the query
command)."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from app.api import cursor as cursors
from app.main import app, settings
from app.runtime import compat
from app.flows import index
from app.query.top import Query
from app.query.filter import Columns, TextColumns
from app.records import BATCH_HEAD, BATCH_SEP, BATCH_TAIL, message_columns

log = logging.getLogger(__name__)
#: Seconds past its timeout that a long poll may take at most, whatever happens in the Kafka client underneath.
GRACE_S = 15
STOP_S = 5


class Consumers:
    """Started consumers kept between long polls and searches of one process: a poll takes one (or starts
    one) and gives it back when it ends well, its partitions paused (a search's next page may find it
    unpaused). Starting a consumer (bootstrap, metadata) cost more CPU than the poll it served when a client
    reads a topic back page after page. One that failed or was cancelled is stopped, never given back; one
    idle for IDLE_S is stopped."""

    IDLE_S = 30.0

    def __init__(self, **options) -> None:
        self.idle: list[tuple[AIOKafkaConsumer, float]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.options = options

    async def take(self, positions: dict[TopicPartition, int] | None = None) -> AIOKafkaConsumer:
        """A started consumer; ``positions``: preferably one that stands at one of them already (the consumer
        of the page before, with what it fetched ahead)."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:   # consumers belong to the loop they were started in
            self.idle, self.loop = [], loop
        if positions:
            for k, (consumer, since) in enumerate(self.idle):
                if loop.time() - since < self.IDLE_S and consumer.assignment() == set(positions) and \
                        any(compat.position(consumer, tp) == at for tp, at in positions.items()):
                    del self.idle[k]
                    return consumer
        while self.idle:
            consumer, since = self.idle.pop()
            if loop.time() - since < self.IDLE_S:
                return consumer
            await stopped(consumer)
        # earliest: if a cursor's offset is ever out of range (around a leader change), start the partition
        # again rather than jump to its end; repeats are dropped by flowId/id, a skip would be a loss
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                    group_id=None, request_timeout_ms=15000, auto_offset_reset="earliest",
                                    **self.options, **settings.kafka_kwargs())
        try:
            await consumer.start()
        except BaseException:
            await stopped(consumer)
            raise
        return consumer

    def give(self, consumer: AIOKafkaConsumer, pause: bool = True) -> None:
        """Back into the pool; ``pause`` (else what it fetches ahead waits for a next page)."""
        if pause:
            consumer.pause(*consumer.assignment())
        loop = asyncio.get_running_loop()
        self.idle.append((consumer, loop.time()))
        loop.call_later(self.IDLE_S + 1, lambda: asyncio.ensure_future(self.expire()))

    async def expire(self) -> None:
        now = asyncio.get_running_loop().time()
        old = [c for c, since in self.idle if now - since >= self.IDLE_S]
        self.idle = [(c, since) for c, since in self.idle if now - since < self.IDLE_S]
        for consumer in old:
            await stopped(consumer)

    async def close(self) -> None:
        """Stop every idle consumer (the worker stops: one left to the interpreter's exit is not closed)."""
        idle, self.idle = self.idle, []
        for consumer, _ in idle:
            await stopped(consumer)


#: the long polls' consumers, and the searches' (which read whole ranges: larger fetches). A search does not
#: check the CRC of each record batch again (a third of its CPU): the broker checked it when it was written,
#: and a search only reads; the pipeline's consumers, the long polls and the exports still check.
consumers = Consumers()
search_consumers = Consumers(max_partition_fetch_bytes=4 << 20, check_crcs=False)


@app.on_before_shutdown.connect
async def _close_consumers(app_, **kwargs) -> None:
    await consumers.close()
    await search_consumers.close()


async def has_topic(consumer: AIOKafkaConsumer, topic: str) -> bool:
    """Whether ``topic`` exists: from the consumer's metadata when it knows the topic already (asking the
    broker for every topic's metadata on each page of a search cost a tenth of the search), else asked."""
    if consumer.partitions_for_topic(topic):
        return True
    return topic in await consumer.topics()


async def stopped(consumer: AIOKafkaConsumer) -> None:
    try:   # a consumer whose fetcher died must not hold the answer, nor the poll's slot
        await asyncio.wait_for(consumer.stop(), STOP_S)
    except (TimeoutError, KafkaError, OSError):
        pass


#: The layout :func:`app.records.batches` writes a flows message in: a record a line, so that a record's JSON
#: text can be handed out as it is stored, without parsing and encoding it again.
RAW_HEAD, RAW_SEP, RAW_TAIL = BATCH_HEAD.encode(), BATCH_SEP.encode(), BATCH_TAIL.encode()


class Lines:
    """The records of a flows message of the record-a-line layout, each cut out only when asked for: where
    each ends is in its columns (app.records.COLUMNS ``text_end``), or, for a message written without them, its
    newlines (the head's, one per separator, the tail's) are looked for when a record in its middle is
    wanted: a message taken whole needs only its length in records."""

    __slots__ = ("value", "n", "_ends", "_nl")

    def __init__(self, value: bytes, ends: np.ndarray | None = None):
        self.value = value
        # a newline after the head and after each record: counted at memory speed
        self.n = len(ends) if ends is not None else \
            int(np.count_nonzero(np.frombuffer(value, np.uint8) == 10)) - 1
        self._ends = ends.astype(np.int64) if ends is not None else None
        self._nl: np.ndarray | None = None

    @classmethod
    def of(cls, value: bytes, ends: np.ndarray | None = None) -> Lines | None:
        """``ends``: where each record's text ends, if known (its columns say)."""
        if not (value.startswith(RAW_HEAD) and value.endswith(RAW_TAIL)):
            return None
        return cls(value, ends)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> bytes:
        return self.span(i, i + 1)

    def span(self, i: int, j: int) -> bytes:
        """Records ``i`` to ``j - 1`` as JSON text joined by ``,`` (and newlines): one piece of an answer."""
        return bytes(self.spans(np.array([i]), np.array([j]))[0])

    def spans(self, starts: np.ndarray, stops: np.ndarray) -> list[memoryview]:
        """:meth:`span` of each (start, stop), at once, as views of the message (nothing copied until the
        answer is joined)."""
        v = memoryview(self.value)
        if len(starts) == 1 and starts[0] == 0 and stops[0] == self.n:
            return [v[len(RAW_HEAD):-len(RAW_TAIL)]]
        if self._ends is not None:
            e = self._ends
            a = np.where(starts > 0, e[starts - 1] + len(RAW_SEP), len(RAW_HEAD))
            b = e[stops - 1]
        else:
            nl = self._nl
            if nl is None:
                nl = self._nl = np.flatnonzero(np.frombuffer(self.value, np.uint8) == 10)
            a, b = nl[starts] + 1, nl[stops] - (stops < self.n)
        return [v[x:y] for x, y in zip(a.tolist(), b.tolist())]


def runs(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of True in a boolean array: their starts and their ends (exclusive)."""
    pad = np.zeros(len(keep) + 2, np.int8)
    pad[1:-1] = keep
    d = pad[1:] - pad[:-1]
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def batch_records(value: bytes, raw: bool) -> list:
    """The records of a flows message: as JSON text (``raw``; bytes each) or decoded."""
    if raw and value.startswith(RAW_HEAD) and value.endswith(RAW_TAIL):
        return value[len(RAW_HEAD):-len(RAW_TAIL)].split(RAW_SEP)
    recs = json.loads(value).get("records", [])
    return [json.dumps(r, separators=(",", ":")).encode() for r in recs] if raw else recs


async def poll(topic: str, cur: dict[int, cursors.Position] | None, timeout_s: float, limit: int,
               from_end: bool, partitions: int | None = None, batched: bool = False, raw: bool = False) -> dict:
    """Up to ``limit`` records past the cursor. ``batched``: each message is ``{"records": [...]}``
    (the flows topic), and an answer may end inside one; the cursor then says how far. ``raw`` (batched
    only): the records as their stored JSON text (bytes), for an answer written by :func:`answer_body`."""
    consumer = await consumers.take()
    ok = False
    try:
        if not await has_topic(consumer, topic):
            ok = True
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
                recs = batch_records(m.value, raw) if batched else [json.loads(m.value)]
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
        ok = True
        return {"records": records, "cursor": cursors.encode(positions)}
    finally:
        if ok:
            consumers.give(consumer)
        else:
            await stopped(consumer)


def answer_body(answer: dict) -> bytes:
    """The JSON text of a poll's or a search's answer whose records are JSON text already (``raw``; a piece
    may hold several records)."""
    rest = json.dumps({k: v for k, v in answer.items() if k != "records"}, separators=(",", ":"))
    head, tail, recs = b'{"records":[', b"]," + rest[1:].encode(), answer["records"]
    if not recs:
        return head + tail
    parts: list = [b","] * (2 * len(recs) + 1)     # one join: each byte of the answer copied once
    parts[0], parts[1::2], parts[-1] = head, recs, tail
    return b"".join(parts)


async def bounded_poll(topic: str, cur, timeout_s: float, limit: int, from_end: bool, partitions: int | None = None,
                       batched: bool = False, raw: bool = False) -> dict:
    """:func:`poll`, ended by ``asyncio.TimeoutError`` at most GRACE_S past its timeout, whatever the Kafka client
    does underneath (a fetcher task that died once held a poll, and its slot, for ever)."""
    return await asyncio.wait_for(poll(topic, cur, timeout_s, limit, from_end, partitions, batched, raw),
                                  timeout_s + GRACE_S)


class TimeIndex:
    """The entries of a flows topic's time index (topic ``<flows>-index``, app/flows/index.py) read so far, per
    partition; read on from where it was at most every REFRESH_S. If it cannot be read, a search reads all."""

    REFRESH_S = 2.0
    #: entries kept per partition, the newest (one covers 256 messages, some 60 MB: 4,096 are far more than
    #: a partition keeps; older ones only name offsets retention deleted, and a search reads what none covers)
    KEEP = 4096

    def __init__(self, topic: str):
        self.topic = topic
        self.entries: dict[int, list[dict]] = {}
        self.read_to: dict[int, int] = {}
        self.at = -1e18

    async def spans(self, partitions: int, query: Query) -> dict[int, list[tuple[int, int]]]:
        """Per partition, the offset spans a search of ``query``'s range need not fetch."""
        if query.window_ms <= 0 or (query.since_ms is None and query.until_ms is None):
            return {}
        loop = asyncio.get_running_loop()
        if loop.time() - self.at >= self.REFRESH_S:
            self.at = loop.time()
            try:
                await asyncio.wait_for(self._read(partitions), settings.query_max_s)
            except (TimeoutError, KafkaError, OSError, ValueError) as exc:
                log.warning("time index %s not read (%r): searches read every span", self.topic, exc)
        return {p: index.passed_over(self.entries.get(p, []), query.window_ms, query.since_ms, query.until_ms)
                for p in range(partitions)}

    async def _read(self, partitions: int) -> None:
        consumer = await consumers.take()
        ok = False
        try:
            if not await has_topic(consumer, self.topic):
                ok = True
                return
            tps = [TopicPartition(self.topic, p) for p in range(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, self.read_to.get(tp.partition, 0))
            while any(self.read_to.get(tp.partition, 0) < ends[tp] for tp in tps):
                fetched = await consumer.getmany(*tps, timeout_ms=1000, max_records=10_000)
                if not fetched:
                    break
                for tp, msgs in fetched.items():
                    kept = self.entries.setdefault(tp.partition, [])
                    for m in msgs:
                        try:
                            kept.append(json.loads(m.value))
                        except ValueError:
                            pass
                        self.read_to[tp.partition] = m.offset + 1
                    del kept[:-self.KEEP]
            ok = True
        finally:
            if ok:
                consumers.give(consumer)
            else:
                await stopped(consumer)


_time_indexes: dict[str, TimeIndex] = {}


def time_index(topic: str) -> TimeIndex:
    """The time index of flows topic ``topic`` (``<topic>-index``), one per process."""
    t = _time_indexes.get(topic)
    if t is None:
        t = _time_indexes[topic] = TimeIndex(topic + "-index")
    return t


@dataclass(slots=True)
class Piece:
    """What one flows message gives a page of a search: ``records`` (dicts, JSON text, or with ``raw`` runs
    of records' stored text), how many records they hold (``kept``), how many were looked at, whether the
    page is full, and the record the next page resumes at (None: past the message)."""

    records: list = field(default_factory=list)
    kept: int = 0
    scanned: int = 0
    full: bool = False
    resume: int | None = None


def cut_message(value: bytes, cols: tuple[np.ndarray, str] | None, first: int, query: Query, room: int,
                visit: Callable[[dict], None] | None, raw: bool) -> Piece | None:
    """The records of one flows message that ``query`` keeps, from record ``first`` on, at most ``room`` (with
    ``visit`` each is handed to it instead, or the message's columns if it takes them: an aggregate). ``cols``:
    the message's columns (:func:`~app.records.message_columns`), read instead of its text; a message written
    without them is first looked through for what the filter needs (None if it holds none of it), then its
    text is cut up. Only the records the filter keeps are decoded, and only when they must be."""
    if cols is None and query.maybe is not None and not query.maybe(value):
        return None
    lines = Lines.of(value, cols[0]["text_end"] if cols is not None else None)
    recs: Lines | list
    if lines is None:     # a message of the layout before: decoded whole
        recs, keep = json.loads(value).get("records", []), None
    else:
        recs = lines
        keep = query.mask(Columns(*cols) if cols is not None else TextColumns(value, len(lines)))
    n = len(recs)
    out = Piece(scanned=n - first)
    by_columns = getattr(visit, "columns", None)
    if by_columns is not None and cols is not None and keep is not None:
        if first:     # an aggregate: from the columns, nothing decoded
            keep = keep.copy()
            keep[:first] = False
        by_columns(Columns(*cols), keep)
        return out
    if lines is not None and keep is not None and raw and visit is None:
        # each run of kept records as one piece of the answer (all of it: one piece)
        keep = keep[first:]
        kept = int(np.count_nonzero(keep))
        end = n
        if kept >= room:
            kept, out.full = room, True
            end = first + int(np.flatnonzero(keep)[kept - 1]) + 1
            keep = keep[:end - first]
        if kept:
            starts, stops = runs(keep)
            out.records, out.kept = lines.spans(starts + first, stops + first), kept
        out.resume = end if end < n else None
        return out
    for i in (range(first, n) if keep is None else (np.flatnonzero(keep[first:]) + first).tolist()):
        r = recs[i]
        if keep is not None:
            if visit is not None or not raw:
                r = json.loads(r)
        elif lines is not None:
            d = json.loads(r)
            if not query.keeps(d):
                continue
            r = d if visit is not None or not raw else r
        elif not query.keeps(r):
            continue
        elif raw and visit is None:
            r = json.dumps(r, separators=(",", ":")).encode()
        if visit is not None:
            visit(r)
            continue
        out.records.append(r)
        out.kept += 1
        if out.kept >= room:
            out.full, out.resume = True, (i + 1 if i + 1 < n else None)
            break
    return out


async def search(topic: str, cur: dict[int, cursors.Position] | None, query: Query, limit: int,
                 timeout_s: float, bounded: bool, partitions: int | None = None,
                 visit: Callable[[dict], None] | None = None, ends: dict[int, int] | None = None,
                 raw: bool = False) -> dict:
    """Records of the flows topic that ``query`` keeps, past the cursor.

    Without a cursor, each partition starts at the first batch whose record time (its window's start, a
    capture time) may hold flows of ``since``, found with Kafka's offsets for times; batches whose record
    time lies outside the range are passed over unread. ``bounded``: read up to the topic's end as it was
    when the search began, and say ``"complete": true`` when there (a range in the past, a command line);
    else wait for new records like a long poll. Answers with up to ``limit`` records (``visit``: each kept
    record is handed to it instead, and none answered: an aggregate), or with what it has after
    ``timeout_s``; the cursor goes on from there either way. ``ends``: where a bounded search stops, per
    partition (a command that pages through a range keeps the ends of its first page; the answer's
    ``ends`` are those used). ``raw``: the records as their stored JSON text (bytes), as :func:`poll` gives
    them. Each message is filtered as a whole (:meth:`Query.mask`): only what it keeps is decoded."""
    tps = [TopicPartition(topic, p) for p in range(partitions or settings.partitions)]
    consumer = await search_consumers.take({tp: cursors.split(cur.get(tp.partition, 0))[0] for tp in tps}
                                           if cur is not None else None)
    ok, complete = False, True
    try:
        if not await has_topic(consumer, topic):
            ok = True
            return {"records": [], "cursor": cursors.encode(cur or {}), "complete": True, "scanned": 0, "fetched": 0,
                    "ends": {}}
        # the topic's ends: where a bounded search stops, unless it was told (a next page)
        told = ends is not None and cur is not None and all(tp.partition in ends for tp in tps)
        last = {tp: ends[tp.partition] for tp in tps} if told and ends is not None else await consumer.end_offsets(tps)
        stop = {tp: (ends or {}).get(tp.partition, last[tp]) for tp in tps}
        pos: dict[int, cursors.Position] = {}
        if cur is not None:
            pos = {tp.partition: cur.get(tp.partition, 0) for tp in tps}
        elif query.since_ms is not None and query.window_ms > 0:
            found = await consumer.offsets_for_times({tp: max(0, query.since_ms - query.window_ms) for tp in tps})
            pos = {tp.partition: (found[tp].offset if found.get(tp) is not None else last[tp]) for tp in tps}
        else:
            begin = await consumer.beginning_offsets(tps)
            pos = {tp.partition: begin[tp] for tp in tps}
        # the next page finds the consumer of the page before where it stopped, with what it fetched ahead:
        # only a partition it does not stand at is sought (and fetched) again. A consumer that stands nowhere
        # it is wanted starts afresh (seeking it would wait for its fetches in flight).
        # the spans of the time index whose capture times lie outside the range are not fetched at all
        skip = await time_index(topic).spans(len(tps), query)
        for tp in tps:
            j = index.jump(skip.get(tp.partition, []), cursors.split(pos[tp.partition])[0])
            if j is not None:
                pos[tp.partition] = j
        at = {tp: cursors.split(pos[tp.partition])[0] for tp in tps}
        again = consumer.assignment() == set(tps) and \
            any(compat.position(consumer, tp) == at[tp] for tp in tps)
        if again:
            consumer.resume(*tps)
        else:
            consumer.assign(tps)
        for tp in tps:
            if not again or compat.position(consumer, tp) != at[tp]:
                consumer.seek(tp, at[tp])
        records: list = []
        count = 0       # records answered (with ``raw``, a piece of ``records`` may hold several)
        scanned = 0
        fetched_bytes = 0     # of the messages handed over by the consumer (in the range or not)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def left() -> list[TopicPartition]:
            return [tp for tp in tps if not bounded or cursors.split(pos[tp.partition])[0] < stop[tp]]

        full = False
        while not full:
            todo = left()
            if not todo:
                break
            wait = deadline - loop.time()
            if wait <= 0:
                break
            # no more messages than the page can still take, at the share of records kept so far (a message
            # holds up to 500): what is fetched but not handed out stays with the consumer for the next page
            share = max(count / scanned, 0.01) if scanned else 1.0
            fetched = await consumer.getmany(*todo, timeout_ms=int(min(wait, 1.0) * 1000),
                                             max_records=min(2000, 1 + int((limit - count) / share) // 500)
                                             if visit is None else 2000)
            if not fetched and records and visit is None:
                break   # caught up, with something to answer: do not hold it back
            for tp in sorted(fetched, key=lambda t: t.partition):
                at, skip_records = cursors.split(pos[tp.partition])
                passed = skip.get(tp.partition)
                for m in fetched[tp]:
                    if bounded and m.offset >= stop[tp]:
                        break
                    j = index.jump(passed, m.offset) if passed else None
                    if j is not None:       # a span outside the range: fetch on past it
                        pos[tp.partition] = j
                        consumer.seek(tp, j)
                        break
                    fetched_bytes += len(m.value)
                    piece = None if query.skips(m.timestamp) else \
                        cut_message(m.value, message_columns(m.headers), skip_records if m.offset == at else 0,
                                    query, limit - count, visit, raw)
                    if piece is None:     # outside the range, or holding nothing the filter needs
                        pos[tp.partition] = m.offset + 1
                        continue
                    records += piece.records
                    count += piece.kept
                    scanned += piece.scanned
                    pos[tp.partition] = m.offset + 1 if piece.resume is None else (m.offset, piece.resume)
                    if piece.full:
                        full = True
                        break
                if full:
                    break
        complete = bounded and not left()
        ok = True
        return {"records": records, "cursor": cursors.encode(pos), "complete": complete, "scanned": scanned,
                "fetched": fetched_bytes,
                "ends": {tp.partition: stop[tp] for tp in tps}, "count": count}
    finally:
        if ok:
            # a consumer goes on fetching only for the next page of an unfiltered range
            search_consumers.give(consumer, pause=complete or not bounded)
        else:
            await stopped(consumer)


async def pages(topic: str, query: Query, page_records: int = 5000, visit: Callable[[dict], None] | None = None,
                partitions: int | None = None, raw: bool = False):
    """A bounded search read to its end, page after page: each page resumes from the last cursor and stops
    at the ends of the first (what the topic held when it began). Yields each page's records."""
    cur, ends = None, None
    while True:
        page = await search(topic, cur, query, page_records, settings.query_max_s, True, partitions,
                            visit=visit, ends=ends, raw=raw)
        yield page
        cur, ends = cursors.decode(page["cursor"]), page["ends"]
        if page["complete"]:
            return
