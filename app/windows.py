"""Capture-time windows: merge parts per window in memory, close windows by watermark or idleness.

Pure code (no Faust). The flows agent owns one :class:`Merger`; for every message
it gets a :class:`Plan`, sends ``plan.emit``, awaits the acks, and only then
applies ``plan.writes`` to its table. A crash in between can repeat an emitted
record (same deterministic ``flowId``) but never lose one.

State. The merged counts of a partition's open windows live in memory. The
table holds what rebuilds them: one *slice* row per (window, sensor, block, chunk) with
the parts that message brought to that window, written once, and one *closed*
row per closed window with the (sensor, block, chunk)s it applied. So a message
costs one changelog record per window it touches, not one per flow, and a
window's close costs one record plus a tombstone per slice. After an assignment
(or a crash) the open windows are rebuilt from the slices.

Determinism: every decision is a function of the partition's message sequence
alone. Parts carry their Kafka record time, ticks carry the leader's clock, and the
time of the last part is stored with the watermark; so a worker that replays a
partition after a crash emits exactly what was emitted before, with the same
flowIds and the same counts, and a consumer may drop repeats by flowId. A
record's flowId names its window, its flow key and the smallest (block, chunk)
that contributed to it, which does not depend on the order the slices were
applied in.

Idempotency (DESIGN.md invariant 1): a window remembers the (sensor~block, chunk)
pairs it applied, open or closed; a part seen again is skipped. A part for a window that
is already closed becomes a *late* delta record of its own, never dropped.
The watermark of a partition is the highest capture time seen there minus the
allowed lateness, where a message also carries its chunk's highest capture time over
all partitions (``top``), so that a partition with a small share of the flows keeps
up with the sensor's clock. While a block of several chunks is still arriving (a
shipper sends several files at once, and an older file's chunks come between a
newer one's), the watermark is held back to that block's progress, so the older
file's flows are not late. A block's chunks are decoded on several partitions
(agents/decode.py), so they can arrive out of order: a block's progress is the highest
capture time of its chunks seen without a gap from chunk 0, so a chunk decoded early
does not move the hold past a missing one. Ingest announces such a block to every
partition when it accepts it, with its first capture time, so the hold starts before any worker decodes
a chunk of it; a block that sends nothing for ``hold_ms`` stops holding it. A window closes when the watermark passes its end. When a
partition has had no parts for ``idle_flush_ms`` of wall-clock time, its open
windows are flushed (end of capture).

Flow records go out in batches (``{"records": [...]}``, at most
:data:`BATCH_RECORDS` each, written as JSON text directly) on the partition's own flows
partition, as an IPFIX exporter packs many records into one message.

For scoring, each closed window also yields a :class:`~app.summary.Summary` per
sensor of this partition's records, and the partition reports its *frontier*
(watermark, and whether it is idle) whenever that moves to another window, so
that the scorer knows when a window is complete on every partition.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from app import ranges
from app.flows import END_ACTIVE_TIMEOUT, END_FORCED, SEP, flow_id, record_json
from app.summary import Home, Summary

#: Flow records per message on the flows topic, and the size a message stays under (Kafka's default
#: limit is 1 MB; one record is about 500 bytes, more when it names many blocks).
BATCH_RECORDS = 500
BATCH_BYTES = 512 * 1024
SLICE, CLOSED = "o", "c"
SOURCE_SEP = "~"  # in neither a sensor name nor a block id
NEVER = -(1 << 62)


def slice_key(p: int, w: int, source: str, chunk: int) -> str:
    return SEP.join((SLICE, str(p), str(w), str(chunk), source))


def closed_key(p: int, w: int) -> str:
    return SEP.join((CLOSED, str(p), str(w)))


def parse_key(key: str) -> tuple[str, int, int, int | None, str | None] | None:
    """``(kind, partition, window, chunk, sensor~block)`` of a table key; None for a key of another shape."""
    f = key.split(SEP, 4)
    try:
        if f[0] == SLICE and len(f) == 5:
            return SLICE, int(f[1]), int(f[2]), int(f[3]), f[4]
        if f[0] == CLOSED and len(f) == 3:
            return CLOSED, int(f[1]), int(f[2]), None, None
    except ValueError:
        pass
    return None


def slice_parts(value) -> list:
    """The parts of a decoded slice row: the list itself, or the ``parts`` of the whole message it kept."""
    return value["parts"] if isinstance(value, dict) else value


def row_value(value):
    """A flows table row as data: rows are JSON bytes (a slice: the parts, or the whole message they came
    in; a closed row: its dict)."""
    return json.loads(value) if isinstance(value, (bytes, bytearray, str)) else value


def batches(records: list[str]) -> list[bytes]:
    """Messages of the flows topic, ``{"records": [...]}``, from records as JSON text: at most
    :data:`BATCH_RECORDS` records and about :data:`BATCH_BYTES` each (a record naming many blocks is long)."""
    out, start, size = [], 0, 0
    for i, rec in enumerate(records):
        if i > start and (i - start >= BATCH_RECORDS or size + len(rec) > BATCH_BYTES):
            out.append(('{"records":[' + ",".join(records[start:i]) + "]}").encode())
            start, size = i, 0
        size += len(rec) + 1
    if start < len(records):
        out.append(('{"records":[' + ",".join(records[start:]) + "]}").encode())
    return out


@dataclass
class Plan:
    """What one message leads to: records to send first, then table rows to write."""

    emit: list[tuple[str, str, object]] = field(default_factory=list)  #: (topic, key, value); flows: bytes
    writes: dict[str, bytes | None] = field(default_factory=dict)      #: table rows (JSON); None deletes
    marks: dict[str, dict] = field(default_factory=dict)               #: watermark rows
    ends: Counter = field(default_factory=Counter)                     #: records by end: flowEndReason or "late"

    def records(self) -> list[dict]:
        """The flow records of the plan, unbatched and decoded."""
        return [r for topic, _, v in self.emit if topic == "flows" for r in json.loads(v)["records"]]


class Window:
    """One open window of one partition: flow key -> ``[packets, bytes, first, last, flags, (block, chunk),
    {blocks}]``, and the (block, chunk) pairs applied."""

    __slots__ = ("flows", "applied")

    def __init__(self) -> None:
        self.flows: dict[str, list] = {}
        self.applied: set[tuple[str, int]] = set()

    def apply(self, source: str, chunk: int, parts: list) -> None:
        """``source``: ``sensor~block`` (two sensors may upload the same bytes, so the same block id)."""
        self.applied.add((source, chunk))
        block = source.split(SOURCE_SEP, 1)[-1]
        src = (block, chunk)
        flows = self.flows
        for part in parts:
            key = part[1]
            c = flows.get(key)
            if c is None:
                flows[key] = [part[2], part[3], part[4], part[5], part[6], src, {block}]
            else:
                c[0] += part[2]
                c[1] += part[3]
                if part[4] < c[2]:
                    c[2] = part[4]
                if part[5] > c[3]:
                    c[3] = part[5]
                c[4] |= part[6]
                if src < c[5]:
                    c[5] = src
                c[6].add(block)


class Merger:
    def __init__(self, window_ms: int, lateness_ms: int, idle_flush_ms: int, retention_ms: int = 600_000,
                 home: Home | None = None, hold_ms: int = 60_000):
        self.window_ms = window_ms
        self.hold_ms = hold_ms
        self.home = home or Home()
        self.frontier_sent: dict[int, tuple[int, bool]] = {}
        self.lateness_ms = lateness_ms
        self.idle_flush_ms = idle_flush_ms
        self.retention_ms = retention_ms
        self.open: dict[int, dict[int, Window]] = defaultdict(dict)
        #: closed windows still remembered: partition -> window -> {"closed_ms", "a": {block: ranges}}
        self.closed: dict[int, dict[int, dict]] = defaultdict(dict)
        self.expiry: dict[int, deque[tuple[int, int]]] = defaultdict(deque)
        self.stale: dict[int, list[str]] = defaultdict(list)
        self.last_part_ms: dict[int, int] = {}
        self.indexed: set[int] = set()
        self.watermark_ms: dict[int, int] = {}
        #: highest capture time seen per partition
        self.high: dict[int, int] = {}
        #: blocks of several chunks not all seen yet: sensor~block -> [chunk ranges seen, chunks, highest
        #: capture time so far or None, message time of the last one]
        self.inflight: dict[int, dict[str, list]] = defaultdict(dict)

    # -- state rebuilt from the table after an assignment
    def ensure_index(self, p: int, rows: Iterable[tuple[str, object]], marks: Mapping, now_ms: int) -> None:
        if p in self.indexed:
            return
        opened: dict[int, Window] = {}
        closed: dict[int, dict] = {}
        slices = []
        for key, value in rows:
            f = parse_key(key) if value is not None else None
            if f is None or f[1] != p:
                continue
            value = row_value(value)
            if f[0] == CLOSED:
                closed[f[2]] = value
            else:
                slices.append((key, f, slice_parts(value)))
        stale = []
        for key, (_, _, w, chunk, source), parts in slices:
            if w in closed:  # a close whose tombstones did not all land
                stale.append(key)
            else:
                opened.setdefault(w, Window()).apply(source, chunk, parts)
        self.open[p] = opened
        self.closed[p] = closed
        self.expiry[p] = deque(sorted((v["closed_ms"], w) for w, v in closed.items()))
        self.stale[p] = stale
        mark = marks.get(f"p{p}") or {}
        self.high[p] = mark.get("max_ms", NEVER)
        self.inflight[p] = {k: [*v, {}][:5] for k, v in (mark.get("inflight") or {}).items()}
        self.watermark_ms[p] = self._watermark(p)
        self.last_part_ms[p] = mark.get("last_part_ms", now_ms)
        self.indexed.add(p)

    def _watermark(self, p: int) -> int:
        """The highest capture time seen, held back to the progress of every block still arriving
        (several files in flight: an older one's windows stay open until it is through), minus the
        allowed lateness."""
        held = [e[2] for e in self.inflight[p].values() if e[2] is not None]
        return min([self.high.get(p, NEVER), *held]) - self.lateness_ms

    def _mark(self, p: int, now_ms: int) -> dict:
        return {"max_ms": self.high.get(p, NEVER), "last_part_ms": now_ms, "inflight": self.inflight[p]}

    def _advance(self, p: int, plan: Plan, now_ms: int) -> None:
        """Move the watermark; close the windows it passed."""
        wm, new_wm = self.watermark_ms.get(p, NEVER), self._watermark(p)
        self.watermark_ms[p] = new_wm
        if new_wm > wm and self.window_ms > 0:
            due = [w for w in self.open[p] if w + self.window_ms <= new_wm]
            self._close(p, due, plan, now_ms, END_ACTIVE_TIMEOUT)

    def _expire_holds(self, p: int, now_ms: int) -> bool:
        """Stop waiting for a block that sent nothing for ``hold_ms`` (its other chunks went to a
        replay that is over, or will never come)."""
        flight = self.inflight[p]
        old = [k for k, e in flight.items() if now_ms - e[3] >= self.hold_ms]
        for k in old:
            del flight[k]
        return bool(old)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.indexed.discard(p)
            self.open.pop(p, None)
            self.closed.pop(p, None)
            self.expiry.pop(p, None)
            self.stale.pop(p, None)
            self.inflight.pop(p, None)
            self.high.pop(p, None)

    def _plan(self, p: int) -> Plan:
        plan = Plan()
        for key in self.stale.pop(p, ()):
            plan.writes[key] = None
        return plan

    # -- messages
    def on_parts(self, p: int, msg: dict, rows: Mapping | None = None, now_ms: int = 0,
                 raw: bytes | None = None) -> Plan:
        """Merge a parts message; ``now_ms`` is the message's own (Kafka record) time. ``raw``: the
        message as it came (JSON), kept as the slice when all its parts are of one window."""
        plan = self._plan(p)
        if msg.get("announce"):
            return self._announce(p, msg, plan, now_ms)
        block, chunk = msg["block"], msg["chunk"]
        source = f"{msg.get('sensor', '')}{SOURCE_SEP}{block}"
        wm = self.watermark_ms.get(p, NEVER)
        by_window: dict[int, list] = {}
        for part in msg["parts"]:
            by_window.setdefault(part[0], []).append(part)
        opened, closed = self.open[p], self.closed[p]
        top = None
        late: list[dict] = []
        for w, parts in by_window.items():
            win = opened.get(w)
            if win is None and w not in closed and not (self.window_ms > 0 and w + self.window_ms <= wm):
                win = opened[w] = Window()
            if win is not None:
                if (source, chunk) in win.applied:
                    continue  # a replayed part: already counted
                win.apply(source, chunk, parts)
                plan.writes[slice_key(p, w, source, chunk)] = \
                    raw if raw is not None and len(by_window) == 1 else json.dumps(parts).encode()
            else:
                mark = closed.get(w)
                if mark is not None and ranges.contains(mark["a"].get(source), chunk):
                    continue
                blocks_json = json.dumps([block])
                for part in parts:
                    key = part[1]
                    f = key.split(SEP)
                    late.append(record_json(w, f, part[2:7], self.window_ms, END_ACTIVE_TIMEOUT, True,
                                            json.dumps(f[0]), blocks_json, flow_id(w, key, block, chunk)))
                plan.ends["late"] += len(parts)
                if mark is None:
                    mark = {"closed_ms": now_ms, "a": {}}
                    self.expiry[p].append((now_ms, w))
                mark = {"closed_ms": mark["closed_ms"],
                        "a": {**mark["a"], source: ranges.add(mark["a"].get(source), chunk)}}
                closed[w] = mark
                plan.writes[closed_key(p, w)] = json.dumps(mark).encode()
            t = max(part[5] for part in parts)
            top = t if top is None or t > top else top
        for batch in batches(late):
            plan.emit.append(("flows", f"late{SEP}{p}", batch))
        if msg.get("top") is not None:  # the chunk's highest capture time, over every partition
            top = msg["top"] if top is None else max(top, msg["top"])
        self.last_part_ms[p] = now_ms
        if top is not None and top > self.high.get(p, NEVER):
            self.high[p] = top
        total = msg.get("chunks") or 0
        if total > 1:  # a block of one chunk is through when it arrives: nothing to hold
            flight = self.inflight[p]
            e = flight.get(source) or self._hold(p, source, total, None, now_ms)
            e[0] = ranges.add(e[0], chunk)
            e[3] = now_ms
            if ranges.contains_all(e[0], total):
                del flight[source]
            else:
                self._extend_hold(e, chunk, top)
        self._expire_holds(p, now_ms)
        plan.marks[f"p{p}"] = self._mark(p, now_ms)
        self._advance(p, plan, now_ms)
        self._frontier(p, plan, idle=False)
        return plan

    def _announce(self, p: int, msg: dict, plan: Plan, now_ms: int) -> Plan:
        """A block of several chunks was accepted: hold the watermark at its first capture time until its
        chunks arrive (or it sends nothing for ``hold_ms``). Announcing it again changes nothing."""
        source = f"{msg.get('sensor', '')}{SOURCE_SEP}{msg['block']}"
        if (msg.get("chunks") or 0) > 1 and source not in self.inflight[p]:
            self._hold(p, source, msg["chunks"], msg.get("top"), now_ms)
            plan.marks[f"p{p}"] = self._mark(p, self.last_part_ms.get(p, now_ms))
            self.watermark_ms[p] = self._watermark(p)
            self._frontier(p, plan, idle=False)
        return plan

    def _hold(self, p: int, source: str, chunks: int, top: int | None, now_ms: int) -> list:
        """Start holding partition ``p``'s watermark for a block of ``chunks`` chunks: its in-flight entry,
        ``[chunk ranges seen, chunks, capture time held at, message time of the last one, {chunk: its highest
        capture time} for chunks seen past a gap]``."""
        e = self.inflight[p][source] = [[], chunks, top, now_ms, {}]
        return e

    @staticmethod
    def _extend_hold(e: list, chunk: int, top: int | None) -> None:
        """The hold moves up to the highest capture time of the block's chunks seen without a gap from
        chunk 0, never past a missing one (should its chunks arrive out of order)."""
        ahead = e[4]
        if top is not None:
            ahead[str(chunk)] = max(top, ahead.get(str(chunk), top))
        seen = e[0]
        upto = seen[0][1] if seen and seen[0][0] == 0 else -1  # chunks 0..upto have all arrived
        for c in [c for c in ahead if int(c) <= upto]:
            t = ahead.pop(c)
            e[2] = t if e[2] is None else max(e[2], t)

    def _frontier(self, p: int, plan: Plan, idle: bool) -> None:
        """Tell the scorer how far this partition has closed its windows, when that changes.

        ``frontier`` is the watermark: every window ending at or before it is
        closed here. ``idle`` means nothing is open (no parts for idle_flush_ms):
        the partition holds no window back."""
        if self.window_ms <= 0:
            return
        wm = self.watermark_ms.get(p, NEVER)
        state = (wm // self.window_ms, idle)
        if self.frontier_sent.get(p) != state:
            self.frontier_sent[p] = state
            plan.emit.append(("window-summaries", f"frontier{SEP}{p}",
                              {"frontier": max(wm, -1), "partition": p, "idle": idle}))

    def on_tick(self, p: int, rows: Mapping | None = None, now_ms: int = 0) -> Plan:
        """Flush idle windows and forget old closed ones; ``now_ms`` is the time the tick carries."""
        plan = self._plan(p)
        if self._expire_holds(p, now_ms):
            plan.marks[f"p{p}"] = self._mark(p, self.last_part_ms.get(p, now_ms))
            self._advance(p, plan, now_ms)
            self._frontier(p, plan, idle=False)
        if now_ms - self.last_part_ms.get(p, now_ms) >= self.idle_flush_ms:
            if self.open.get(p):
                self._close(p, list(self.open[p]), plan, now_ms, END_FORCED)
            self._frontier(p, plan, idle=True)
        old, closed = self.expiry[p], self.closed[p]
        while old and now_ms - old[0][0] >= self.retention_ms:
            t, w = old.popleft()
            mark = closed.get(w)
            if mark is not None and mark["closed_ms"] == t:  # not a later close of the same window
                del closed[w]
                plan.writes[closed_key(p, w)] = None
        return plan

    def _close(self, p: int, windows: list[int], plan: Plan, now_ms: int, reason: int) -> None:
        home = self.home
        for w in sorted(windows):
            win = self.open[p].pop(w)
            stats: dict[str, Summary] = {}
            records = []
            sensors: dict[str, str] = {}        # JSON of each sensor name and of each set of block ids
            block_sets: dict[frozenset, str] = {}
            window_ms = self.window_ms
            for key in sorted(win.flows):
                c = win.flows[key]
                f = key.split(SEP)
                sensor, src, dst, proto, sport, dport = f[:6]
                sj = sensors.get(sensor)
                if sj is None:
                    sj = sensors[sensor] = json.dumps(sensor)
                    stats[sensor] = Summary()
                bj = block_sets.get(blocks := frozenset(c[6]))
                if bj is None:
                    bj = block_sets[blocks] = json.dumps(sorted(blocks))
                records.append(record_json(w, f, c, window_ms, reason, False, sj, bj, flow_id(w, key, *c[5])))
                stats[sensor].add(src, dst, int(proto), int(sport), int(dport), c[0], c[1], c[4], src in home)
            plan.ends[reason] += len(records)
            for batch in batches(records):
                plan.emit.append(("flows", f"{w}{SEP}{p}", batch))
            if stats:
                plan.emit.append(("window-summaries", f"{w}{SEP}{p}",
                                  {"window": w, "windowLengthMs": self.window_ms, "partition": p,
                                   "sensors": {s: summ.to_json() for s, summ in stats.items()}}))
            applied: dict[str, list] = {}
            for source, chunk in sorted(win.applied):
                applied[source] = ranges.add(applied.get(source), chunk)
            # the closed row first: a crash part-way through these writes leaves stale slices, never lost ones
            mark = {"closed_ms": now_ms, "a": applied}
            self.closed[p][w] = mark
            plan.writes[closed_key(p, w)] = json.dumps(mark).encode()
            self.expiry[p].append((now_ms, w))
            for source, chunk in win.applied:
                plan.writes[slice_key(p, w, source, chunk)] = None
