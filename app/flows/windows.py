"""Capture-time windows: merge parts per (sensor, window) in memory, close them by the sensor's clock.

Pure code (no Faust). The flows agent owns one :class:`Merger`; for every message
it gets a :class:`Plan`, sends ``plan.emit``, awaits the acks, and only then
applies ``plan.writes`` and ``plan.marks`` to its tables. A crash in between can
repeat an emitted record (same deterministic ``flowId``) but never lose one.

Clocks. Every window belongs to one sensor, and closes by that sensor's capture
clock on this partition (:class:`app.flows.clock.SensorClock`: watermark, lateness,
holds for blocks in flight, idle flush, damaged times). One sensor's time never
closes another sensor's windows or makes its data late (docs/design.md, invariant 2).

State. The merged counts of a partition's open windows live in memory. The
table holds what rebuilds them: one *slice* row per (window, sensor, block, chunk) with
the parts that message brought to that window, written once, and one *closed*
row per closed (window, sensor) with the blocks and chunks it applied. So a message
costs one changelog record per window it touches, not one per flow, and a
window's close costs one record plus a tombstone per slice. After an assignment
(or a crash) the open windows are rebuilt from the slices. Each sensor's clock is
one row of table ``watermarks``.

Determinism: every decision is a function of the partition's message sequence
alone. Parts carry their Kafka record time, ticks carry the leader's clock, and the
time of the last message is stored with the clock; so a worker that replays a
partition after a crash emits exactly what was emitted before, with the same
flowIds and the same counts, and a consumer may drop repeats by flowId. A
record's flowId hashes its flow key, its window and its first packet's time
(app/records.py), which do not depend on the order the slices were applied in,
and which the offline command computes the same way; a late record's also names
its (block, chunk).

Idempotency (docs/design.md, invariant 1): a window remembers the (sensor~block, chunk)
pairs it applied, open or closed; a part seen again is skipped. A part for a window that
is already closed becomes a *late* delta record of its own, never dropped, and the
scorer hears of it (a ``late`` notice), so that health can say how many records of
a sensor came after their window was closed.

Flow records go out in batches (``{"records": [...]}``, at most
:data:`BATCH_RECORDS` each, written as JSON text directly) on the partition's own flows
partition, as an IPFIX exporter packs many records into one message.

For scoring, each closed (window, sensor) also yields a :class:`~app.flows.summary.Summary`
of this partition's records, and the partition reports each sensor's *frontier*
(its watermark: every window of the sensor ending at or before it is closed here)
whenever that moves to another window, so that the scorer knows when a window of
a sensor is complete on every partition (app/flows/complete.py). A window far ahead of
its sensor's clock (a damaged timestamp) is closed like any other but marked
``ahead``: it is counted, not scored.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from typing import cast

from app.flows import ranges
from app.flows.clock import NEVER, SensorClock
from app.records import (DAY_MS, END_ACTIVE_TIMEOUT, END_FORCED, MESSAGE_VERSIONS, SEP, AnnounceMsg, FlowsRows,
                         FrontierMsg, LateMsg, SummariesMsg, SummaryMsg, column_row, columns_of, flow_ids,
                         flows_messages, id_text, late_id_text, record_json, source_block, source_sensor, watermark_key)
from app.records import source as source_of
from app.flows.summary import Home, Summary
from app.detect.entities import EntityRows

SUMMARIES_VERSION = MESSAGE_VERSIONS["window-summaries"]
#: Window summaries per window-summaries message stay under this (a message holds those of many windows).
SUMMARY_BYTES = 256 * 1024
SLICE, CLOSED = FlowsRows.SLICE, FlowsRows.CLOSED
slice_key, closed_key, parse_key = FlowsRows.slice, FlowsRows.closed, FlowsRows.parse
sensor_of = source_sensor


def slice_parts(value) -> list:
    """The parts of a decoded slice row: the list itself, or the ``parts`` of the whole message it kept."""
    return value["parts"] if isinstance(value, dict) else value


def row_value(value):
    """A flows table row as data: rows are JSON bytes (a slice: the parts, or the whole message they came
    in; a closed row: its dict)."""
    return json.loads(value) if isinstance(value, (bytes, bytearray, str)) else value


@dataclass
class Plan:
    """What one message leads to: records to send first, then table rows to write."""

    emit: list[tuple[str, str, object]] = field(default_factory=list)  #: (topic, key, value); flows: bytes
    writes: dict[str, bytes | None] = field(default_factory=dict)      #: table rows (JSON); None deletes
    marks: dict[str, dict] = field(default_factory=dict)               #: watermark rows
    ends: Counter = field(default_factory=Counter)                     #: records by end: flowEndReason or "late"
    #: emit index -> the capture time (ms) of a flows batch: its window's start, its Kafka record time, so
    #: that a query can seek by capture time
    stamps: dict[int, int] = field(default_factory=dict)
    #: emit index -> the partition an entity-flows message goes to (its actors')
    partitions: dict[int, int] = field(default_factory=dict)
    #: emit index -> the Kafka headers of a flows batch: its columns (app.records.flows_messages)
    headers: dict[int, list] = field(default_factory=dict)


class Window:
    """One open (sensor, window) of one partition: flow key -> ``[packets, bytes, first, last, flags,
    block id or {block ids}]`` (counts in :data:`app.records.COUNT_COLUMNS` order), the (sensor~block, chunk)
    pairs applied, and when it opened (message time). An open flow costs about 130 bytes here, besides its key
    (about 90)."""

    __slots__ = ("flows", "applied", "opened_ms")

    def __init__(self, opened_ms: int = 0) -> None:
        self.flows: dict[str, list] = {}
        self.applied: set[tuple[str, int]] = set()
        self.opened_ms = opened_ms

    def apply(self, source: str, chunk: int, parts: list) -> int:
        """``source``: ``sensor~block`` (two sensors may upload the same bytes, so the same block id); returns
        how many flows are new to the window."""
        new = 0
        self.applied.add((source, chunk))
        block = source_block(source)
        flows = self.flows
        for part in parts:
            key = part[1]
            c = flows.get(key)
            if c is None:
                flows[key] = [part[2], part[3], part[4], part[5], part[6], block]
                new += 1
            else:
                c[0] += part[2]
                c[1] += part[3]
                if part[4] < c[2]:
                    c[2] = part[4]
                if part[5] > c[3]:
                    c[3] = part[5]
                c[4] |= part[6]
                if c[5] != block:    # one block (a str) as a rule: a set only for a flow that spans uploads
                    c[5] = {c[5], block} if isinstance(c[5], str) else c[5] | {block}
        return new


class Merger:
    """Merges one worker's flow-parts partitions into windows per sensor, and closes them by each sensor's
    clock (see the module docstring).

    ``window_ms``: window length (0: one window per flow until the sensor goes idle);
    ``lateness_ms``: capture time a window waits past its end; ``idle_flush_ms``: wall-clock
    silence that ends a replayed capture (a live sensor waits up to ``live_idle_ms``, app/flows/clock.py);
    ``retention_ms``: how long a closed window is remembered, for replays; ``hold_ms``: how long a
    block in flight may send nothing before it stops holding its sensor's clock; ``max_jump_ms``:
    how far ahead of its sensor's clock a capture time may be before it counts as damaged;
    ``max_open_flows``: the open flows this worker holds at most, over its partitions."""

    def __init__(self, window_ms: int, lateness_ms: int, idle_flush_ms: int, retention_ms: int = 600_000,
                 home: Home | None = None, hold_ms: int = 60_000, max_jump_ms: int = DAY_MS,
                 live_idle_ms: int = 600_000, max_open_flows: int = 2_000_000, entity_partitions: int = 0):
        self.window_ms = window_ms
        #: partitions of topic entity-flows: a closed window's records the entity detectors read go to the
        #: partition of their actor (app/detect/entities.py); 0: none are sent
        self.entity_partitions = entity_partitions
        self.lateness_ms = lateness_ms
        self.idle_flush_ms = idle_flush_ms
        self.retention_ms = retention_ms
        self.home = home or Home()
        self.hold_ms = hold_ms
        self.max_jump_ms = max_jump_ms
        self.live_idle_ms = live_idle_ms
        #: open flows this worker holds at most (about 250 bytes each): past it a partition's biggest open
        #: windows are closed early (flowEndReason 4), and later parts of them come as late records
        self.max_open_flows = max_open_flows
        self.open_flows: dict[int, int] = defaultdict(int)
        self.spilled = 0
        #: partition -> sensor -> window start -> open window
        self.open: dict[int, dict[str, dict[int, Window]]] = defaultdict(dict)
        #: closed windows still remembered: partition -> (sensor, window) -> {"closed_ms", "a": {source: ranges}}
        self.closed: dict[int, dict[tuple[str, int], dict]] = defaultdict(dict)
        self.expiry: dict[int, deque[tuple[int, str, int]]] = defaultdict(deque)
        #: rows to write with the next plan: slices of a close cut short, and rows of an older version rewritten
        self.stale: dict[int, dict[str, bytes | None]] = defaultdict(dict)
        #: partition -> sensor -> its clock there (idle sensors are dropped, and read back from their row)
        self.clocks: dict[int, dict[str, SensorClock]] = defaultdict(dict)
        self.indexed: set[int] = set()

    # -- state rebuilt from the tables after an assignment
    def ensure_index(self, p: int, rows: Iterable[tuple[str, object]], marks: Mapping, now_ms: int) -> None:
        if p in self.indexed:
            return
        opened: dict[str, dict[int, Window]] = {}
        closed: dict[tuple[str, int], dict] = {}
        stale: dict[str, bytes | None] = {}
        slices = []
        for key, value in rows:
            f = parse_key(key) if value is not None else None
            if f is None or f[1] != p:
                continue
            value = row_value(value)
            if f[0] == SLICE:
                slices.append((key, f, slice_parts(value)))
            elif f[4] is not None:
                closed[(f[4], f[2])] = value
            else:   # an older version closed a window for all its sensors at once: one row per sensor now
                by_sensor: dict[str, dict] = {}
                for source, done in value["a"].items():
                    by_sensor.setdefault(sensor_of(source), {})[source] = done
                for sensor, a in by_sensor.items():
                    mark = closed[(sensor, f[2])] = {"closed_ms": value["closed_ms"], "a": a}
                    stale[closed_key(p, f[2], sensor)] = json.dumps(mark).encode()
                stale[key] = None
        for key, (_, _, w, chunk, source), parts in slices:
            assert source is not None and chunk is not None   # a slice names both
            sensor = sensor_of(source)
            if (sensor, w) in closed:  # a close whose tombstones did not all land
                stale[key] = None
            else:
                opened.setdefault(sensor, {}).setdefault(w, Window(now_ms)).apply(source, chunk, parts)
        self.open[p] = opened
        self.open_flows[p] = sum(len(win.flows) for ws in opened.values() for win in ws.values())
        self.closed[p] = closed
        self.expiry[p] = deque(sorted((v["closed_ms"], s, w) for (s, w), v in closed.items()))
        self.stale[p] = stale
        prefix = watermark_key(p, "")
        clocks = self.clocks[p] = {}
        for key, mark in marks.items():
            if isinstance(key, str) and key.startswith(prefix) and mark:
                clocks[key[len(prefix):]] = SensorClock.from_json(mark)
        for sensor in opened:
            clocks.setdefault(sensor, SensorClock(last_part_ms=now_ms))
        self.indexed.add(p)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.indexed.discard(p)
            for state in (self.open, self.closed, self.expiry, self.stale, self.clocks, self.open_flows):
                state.pop(p, None)

    def _clock(self, p: int, sensor: str, marks: Mapping | None) -> SensorClock:
        clock = self.clocks[p].get(sensor)
        if clock is None:
            row = marks.get(watermark_key(p, sensor)) if marks is not None else None
            clock = self.clocks[p][sensor] = SensorClock.from_json(row) if row else SensorClock()
        return clock

    def _plan(self, p: int) -> Plan:
        plan = Plan()
        plan.writes.update(self.stale.pop(p, {}))
        return plan

    def watermark(self, p: int, sensor: str) -> int:
        clock = self.clocks[p].get(sensor)
        return clock.watermark(self.lateness_ms) if clock is not None else NEVER

    def sensors(self) -> dict[str, dict]:
        """Per sensor, over this worker's partitions: the lowest watermark, open windows, the earliest time
        held as damaged (far ahead of its clock) and how many jumps were held so."""
        out: dict[str, dict] = {}
        for p, clocks in self.clocks.items():
            for sensor, clock in clocks.items():
                s = out.setdefault(sensor, {"watermark_ms": None, "open_windows": 0, "ahead_ms": None,
                                            "held_jumps": 0, "live": clock.live()})
                wm = clock.watermark(self.lateness_ms)
                if wm != NEVER:
                    s["watermark_ms"] = wm if s["watermark_ms"] is None else min(s["watermark_ms"], wm)
                s["open_windows"] += len(self.open[p].get(sensor, ()))
                if clock.ahead is not None:
                    s["ahead_ms"] = clock.ahead[0] if s["ahead_ms"] is None else min(s["ahead_ms"], clock.ahead[0])
                s["held_jumps"] = max(s["held_jumps"], clock.held_jumps)
        return out

    # -- messages
    def on_parts(self, p: int, msg: dict, rows: Mapping | None = None, now_ms: int = 0,
                 raw: bytes | None = None, marks: Mapping | None = None) -> Plan:
        """Merge a parts message; ``now_ms`` is the message's own (Kafka record) time. ``raw``: the
        message as it came (JSON), kept as the slice when all its parts are of one window. ``marks``: the
        clock rows, for a sensor whose clock is not in memory."""
        plan = self._plan(p)
        sensor = msg.get("sensor", "")
        clock = self._clock(p, sensor, marks)
        clock.heard(now_ms, self.idle_flush_ms)
        if msg.get("announce"):
            return self._announce(p, sensor, clock, cast(AnnounceMsg, msg), plan, now_ms)
        block, chunk = msg["block"], msg["chunk"]
        source = source_of(sensor, block)
        wm = clock.watermark(self.lateness_ms)
        by_window: dict[int, list] = {}
        for part in msg["parts"]:
            by_window.setdefault(part[0], []).append(part)
        opened, closed = self.open[p].setdefault(sensor, {}), self.closed[p]
        top = None
        late: list[tuple[int, tuple[list[str], list[tuple]]]] = []   # (window, its late records and columns)
        for w, parts in by_window.items():
            t = max(part[5] for part in parts)
            top = t if top is None or t > top else top
            win = opened.get(w)
            if win is None and (sensor, w) not in closed and not (self.window_ms > 0 and w + self.window_ms <= wm):
                win = opened[w] = Window(now_ms)
            if win is not None:
                if (source, chunk) in win.applied:
                    continue  # a replayed part: already counted
                self.open_flows[p] += win.apply(source, chunk, parts)
                plan.writes[slice_key(p, w, source, chunk)] = \
                    raw if raw is not None and len(by_window) == 1 else json.dumps(parts).encode()
                continue
            mark = closed.get((sensor, w))
            if mark is not None and ranges.contains(mark["a"].get(source), chunk):
                continue
            late.append((w, self._late(p, sensor, w, source, chunk, parts, plan)))
            if mark is None:
                mark = {"closed_ms": now_ms, "a": {}}
                self.expiry[p].append((now_ms, sensor, w))
            applied = {**mark["a"], source: ranges.add(mark["a"].get(source), chunk)}
            mark = {"closed_ms": mark["closed_ms"], "a": applied}
            closed[(sensor, w)] = mark
            plan.writes[closed_key(p, w, sensor)] = json.dumps(mark).encode()
        if not opened:
            del self.open[p][sensor]
        for w, (recs, cols) in late:   # a batch per window: its Kafka record time is that window's start
            for batch, headers in flows_messages(recs, cols, sensor):
                plan.stamps[len(plan.emit)] = w
                plan.headers[len(plan.emit)] = headers
                plan.emit.append(("flows", f"late{SEP}{p}", batch))
        if "top" in msg:   # the chunk's highest capture time over every partition, damaged stamps left out
            top = msg["top"]
        clock.observe(top, source, chunk, msg.get("n", 0), self.max_jump_ms)
        total = msg.get("chunks") or 0
        hold = clock.holds.get(source)       # announced (every block is), or a block of several chunks
        if hold is None and total > 1:
            hold = clock.hold(source, total, None, now_ms)
        if hold is not None:
            hold.touched_ms = now_ms
            if hold.add(chunk, top):
                del clock.holds[source]
        clock.expire_holds(now_ms, self.hold_ms)
        self._advance(p, sensor, clock, plan, now_ms)
        self._spill(p, plan, now_ms)
        return plan

    def _spill(self, p: int, plan: Plan, now_ms: int) -> None:
        """Past this partition's share of ``max_open_flows``, close its biggest open windows early."""
        share = self.max_open_flows // max(1, len(self.indexed))
        if self.open_flows[p] <= share:
            return
        sizes = sorted(((len(win.flows), sensor, w) for sensor, ws in self.open[p].items() for w, win in ws.items()),
                       reverse=True)
        for _, sensor, w in sizes:
            if self.open_flows[p] <= share * 3 // 4:
                break
            self._close(p, sensor, self.clocks[p][sensor], [w], plan, now_ms, END_FORCED)
            self.spilled += 1

    def _late(self, p: int, sensor: str, w: int, source: str, chunk: int, parts: list,
              plan: Plan) -> tuple[list[str], list[tuple]]:
        """Late records (and their columns) for parts of a window already closed, and a notice of them for the
        scorer."""
        block = source_block(source)
        blocks_json, sensor_json = json.dumps([block]), json.dumps(sensor)
        ids = flow_ids([late_id_text(part[1], w, part[4], block, chunk) for part in parts])
        fields = [part[1].split(SEP) for part in parts]
        out = [record_json(w, f, part[2:7], self.window_ms, END_ACTIVE_TIMEOUT, True, sensor_json, blocks_json, fid)
               for f, part, fid in zip(fields, parts, ids)]
        rows = [column_row(f, part[2:7], True) for f, part in zip(fields, parts)]
        plan.ends["late"] += len(parts)
        late: LateMsg = {"late": {"records": len(parts), "packets": sum(part[2] for part in parts),
                                  "bytes": sum(part[3] for part in parts)},
                         "sensor": sensor, "window": w, "partition": p, "source": source, "chunk": chunk,
                         "v": SUMMARIES_VERSION}
        plan.emit.append(("window-summaries", f"late{SEP}{p}", late))
        return out, rows

    def _announce(self, p: int, sensor: str, clock: SensorClock, msg: AnnounceMsg, plan: Plan, now_ms: int) -> Plan:
        """A block is on its way: hold its sensor's clock at its first capture time until its chunks arrive (or
        it sends nothing for ``hold_ms``). Announcing it again only says it is still coming. An upload still
        being received is announced the same way, under a name no chunk has, and released (``release``) when it ends
        (web/ingest.py): the accepted block's own announce has taken over by then, or it was refused."""
        source = source_of(sensor, msg["block"])
        hold = clock.holds.get(source)
        if msg.get("release"):
            if hold is not None:
                del clock.holds[source]
                self._advance(p, sensor, clock, plan, now_ms)
                return plan
        elif hold is not None:
            hold.touched_ms = now_ms
        elif (msg.get("chunks") or 0) >= 1:
            clock.hold(source, msg["chunks"], msg.get("top"), now_ms)
        plan.marks[watermark_key(p, sensor)] = clock.to_json()
        self._frontier(p, sensor, clock, plan)
        return plan

    def _advance(self, p: int, sensor: str, clock: SensorClock, plan: Plan, now_ms: int) -> None:
        """Close the windows of the sensor that its watermark passed; write its clock; report its frontier."""
        wm = clock.watermark(self.lateness_ms)
        if self.window_ms > 0:
            due = [w for w in self.open[p].get(sensor, ()) if w + self.window_ms <= wm]
            self._close(p, sensor, clock, due, plan, now_ms, END_ACTIVE_TIMEOUT)
        plan.marks[watermark_key(p, sensor)] = clock.to_json()
        self._frontier(p, sensor, clock, plan)

    def _frontier(self, p: int, sensor: str, clock: SensorClock, plan: Plan) -> None:
        """Tell the scorer how far this partition has closed the sensor's windows, when that changes:
        every window of the sensor ending at or before ``frontier`` is closed here."""
        if self.window_ms <= 0:
            return
        wm = clock.watermark(self.lateness_ms)
        state = wm // self.window_ms
        if clock.frontier_sent != state:
            clock.frontier_sent = state
            frontier: FrontierMsg = {"frontier": max(wm, -1), "partition": p, "sensor": sensor,
                                     "v": SUMMARIES_VERSION}
            plan.emit.append(("window-summaries", f"frontier{SEP}{p}", frontier))

    def on_tick(self, p: int, rows: Mapping | None = None, now_ms: int = 0) -> Plan:
        """Stop holds that ran out, flush the windows of idle sensors, close windows held open far ahead of
        their sensor's clock, forget old closed windows and idle clocks; ``now_ms`` is the time the tick
        carries."""
        plan = self._plan(p)
        clocks, opened = self.clocks[p], self.open[p]
        for sensor, clock in list(clocks.items()):
            if clock.flushed and not clock.holds and sensor not in opened:
                if clock.last_part_ms is None or now_ms - clock.last_part_ms >= self.retention_ms:
                    del clocks[sensor]            # its row keeps it; read back when it sends again
                continue
            changed = clock.expire_holds(now_ms, self.hold_ms)
            # not while a block of the sensor is known to be on its way (announced, or part-way through): its
            # capture has not ended, a worker that decodes it is only slow (a rebalance after a crash, say)
            if not clock.holds and clock.is_idle(now_ms, self.idle_flush_ms, self.live_idle_ms):
                flushed = list(opened.get(sensor, ()))
                self._close(p, sensor, clock, flushed, plan, now_ms, END_FORCED)
                # the frontier covers every window the flush closed (but those far ahead, never scored)
                ends = [w + self.window_ms for w in flushed if not clock.far_ahead(w, self.max_jump_ms)]
                clock.flush_floor(self.window_ms, max(ends, default=NEVER))
                changed = True
            elif self.window_ms > 0:   # a damaged stamp's window would otherwise wait for the clock for ever
                far = [w for w, win in opened.get(sensor, {}).items()
                       if clock.far_ahead(w, self.max_jump_ms) and now_ms - win.opened_ms >= self.hold_ms]
                self._close(p, sensor, clock, far, plan, now_ms, END_FORCED)
                changed = changed or bool(far)
            if changed:
                self._advance(p, sensor, clock, plan, now_ms)
        old, closed = self.expiry[p], self.closed[p]
        while old and now_ms - old[0][0] >= self.retention_ms:
            t, sensor, w = old.popleft()
            mark = closed.get((sensor, w))
            if mark is not None and mark["closed_ms"] == t:  # not a later close of the same window
                del closed[(sensor, w)]
                plan.writes[closed_key(p, w, sensor)] = None
        return plan

    def _close(self, p: int, sensor: str, clock: SensorClock, windows: list[int], plan: Plan, now_ms: int,
               reason: int) -> None:
        if not windows:
            return
        home, window_ms, opened = self.home, self.window_ms, self.open[p][sensor]
        sensor_json = json.dumps(sensor)
        summaries: list[list] = []
        for w in sorted(windows):
            win = opened.pop(w)
            self.open_flows[p] -= len(win.flows)
            stats = Summary()
            records, rows = [], []
            block_sets: dict[frozenset, str] = {}   # JSON of each set of block ids
            keys = sorted(win.flows)
            ids = flow_ids([id_text(key, w, win.flows[key][2]) for key in keys])
            picks = EntityRows(sensor, self.entity_partitions) if self.entity_partitions else None
            for key, fid in zip(keys, ids):
                c = win.flows[key]
                f = key.split(SEP)
                _, src, dst, proto_, sport_, dport_, vlan, tos = f
                proto, sport, dport = int(proto_), int(sport_), int(dport_)
                bj = block_sets.get(blocks := frozenset((c[5],) if isinstance(c[5], str) else c[5]))
                if bj is None:
                    bj = block_sets[blocks] = json.dumps(sorted(blocks))
                records.append(record_json(w, f, c, window_ms, reason, False, sensor_json, bj, fid))
                rows.append(columns_of(src, dst, proto, sport, dport, int(vlan), int(tos), c, False))
                inside = src in home
                stats.add(src, dst, proto, sport, dport, c[0], c[1], c[4], inside)
                if picks is not None:
                    picks.add(src, dst, inside, dst in home, proto, sport, dport, c)
            plan.ends[reason] += len(records)
            for batch, headers in flows_messages(records, rows, sensor):
                plan.stamps[len(plan.emit)] = w
                plan.headers[len(plan.emit)] = headers
                plan.emit.append(("flows", f"{w}{SEP}{p}", batch))
            if picks is not None and not clock.far_ahead(w, self.max_jump_ms):
                for part, msg in picks.messages(w, window_ms, p):
                    plan.partitions[len(plan.emit)] = part
                    plan.emit.append(("entity-flows", f"{sensor}{SEP}{part}", msg))
            if records and window_ms > 0:   # far ahead: a damaged capture time, counted and never scored
                summaries.append([w, stats.to_json(), clock.far_ahead(w, self.max_jump_ms)])
            applied: dict[str, list] = {}
            for source, chunk in sorted(win.applied):
                applied[source] = ranges.add(applied.get(source), chunk)
            # the closed row first: a crash part-way through these writes leaves stale slices, never lost ones
            mark = {"closed_ms": now_ms, "a": applied}
            self.closed[p][(sensor, w)] = mark
            plan.writes[closed_key(p, w, sensor)] = json.dumps(mark).encode()
            self.expiry[p].append((now_ms, sensor, w))
            for source, chunk in win.applied:
                plan.writes[slice_key(p, w, source, chunk)] = None
        self._summaries(p, sensor, summaries, plan)
        if not opened:
            del self.open[p][sensor]

    def _summaries(self, p: int, sensor: str, summaries: list[list], plan: Plan) -> None:
        """The summaries of the windows just closed, for the scorer: one message for one window; for many (a
        replay closes thousands at once) messages of several, under SUMMARY_BYTES each, so the scorer
        handles a few messages per chunk, not one per window and partition."""
        if len(summaries) == 1:
            w, summ, ahead = summaries[0]
            msg: SummaryMsg = {"window": w, "windowLengthMs": self.window_ms, "partition": p,
                               "sensors": {sensor: summ}, "v": SUMMARIES_VERSION}
            if ahead:
                msg["ahead"] = True
            plan.emit.append(("window-summaries", f"{w}{SEP}{p}", msg))
            return
        batch: list[list] = []
        size = 0
        for entry in summaries:
            n = len(json.dumps(entry[1]))
            if batch and size + n > SUMMARY_BYTES:
                self._emit_summaries(p, sensor, batch, plan)
                batch, size = [], 0
            batch.append(entry)
            size += n
        if batch:
            self._emit_summaries(p, sensor, batch, plan)

    def _emit_summaries(self, p: int, sensor: str, batch: list[list], plan: Plan) -> None:
        msg: SummariesMsg = {"windows": batch, "windowLengthMs": self.window_ms, "partition": p, "sensor": sensor,
                             "v": SUMMARIES_VERSION}
        plan.emit.append(("window-summaries", f"{batch[0][0]}{SEP}{p}", msg))
