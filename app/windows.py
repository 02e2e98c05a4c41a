"""Capture-time windows: merge parts into rows, close windows by watermark or idleness.

Pure code (no Faust). The flows agent owns one :class:`Merger`; for every message
it gets a :class:`Plan`, sends ``plan.emit``, awaits the acks, and only then
applies ``plan.writes`` to its tables. A crash in between can repeat an emitted
record (same deterministic ``flowId``) but never lose one.

Determinism: every decision is a function of the partition's message sequence
alone. Parts carry their Kafka record time, ticks carry the leader's clock, and the
time of the last part is stored with the watermark; so a worker that replays a
partition after a crash emits exactly what was emitted before, with the same
flowIds and the same counts, and a consumer may drop repeats by flowId.

Idempotency (DESIGN.md invariant 1): a row remembers, per block, the chunk
indexes it has applied; a part seen again is skipped. A part for a window that
is already closed becomes a *late* delta record of its own, never dropped.
The watermark of a partition is the highest capture time seen there minus the
allowed lateness; a window closes when the watermark passes its end. When a
partition has had no parts for ``idle_flush_ms`` of wall-clock time, its open
windows are flushed (end of capture).

For scoring, each closed window also yields a :class:`~app.summary.Summary` per
sensor of this partition's records, and the partition reports its *frontier*
(watermark, and whether it is idle) whenever that moves to another window, so
that the scorer knows when a window is complete on every partition.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from app import ranges
from app.flows import END_ACTIVE_TIMEOUT, END_FORCED, SEP, flow_id, merge, record
from app.summary import Home, Summary

_MISSING = object()


@dataclass
class Plan:
    """What one message leads to: records to send first, then table rows to write."""

    emit: list[tuple[str, str, dict]] = field(default_factory=list)  #: (topic, key, value)
    writes: dict[str, dict | None] = field(default_factory=dict)     #: flows rows; None deletes
    marks: dict[str, dict] = field(default_factory=dict)             #: watermark rows


class Merger:
    def __init__(self, window_ms: int, lateness_ms: int, idle_flush_ms: int, retention_ms: int = 600_000,
                 home: Home | None = None):
        self.window_ms = window_ms
        self.home = home or Home()
        self.frontier_sent: dict[int, tuple[int, bool]] = {}
        self.lateness_ms = lateness_ms
        self.idle_flush_ms = idle_flush_ms
        self.retention_ms = retention_ms
        self.open: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.closed: dict[int, deque[tuple[int, str]]] = defaultdict(deque)
        self.last_part_ms: dict[int, int] = {}
        self.indexed: set[int] = set()
        self.watermark_ms: dict[int, int] = {}

    # -- index of open and closed rows, rebuilt from the table after an assignment
    def ensure_index(self, p: int, rows: Iterable[tuple[str, dict]], marks: Mapping, now_ms: int) -> None:
        if p in self.indexed:
            return
        self.open.pop(p, None)
        self.closed.pop(p, None)
        for rk, row in rows:
            if row and row.get("p") == p:
                self._track(p, rk, row)
        mark = marks.get(f"p{p}") or {}
        self.watermark_ms[p] = mark.get("max_ms", -(1 << 62)) - self.lateness_ms
        self.last_part_ms[p] = mark.get("last_part_ms", now_ms)
        self.indexed.add(p)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.indexed.discard(p)

    def _track(self, p: int, rk: str, row: dict) -> None:
        if row["closed_ms"] is not None:
            self.closed[p].append((row["closed_ms"], rk))
        else:
            self.open[p][int(rk.split(SEP, 1)[0])].add(rk)

    # -- messages
    def on_parts(self, p: int, msg: dict, rows: Mapping, now_ms: int) -> Plan:
        """Merge a parts message; ``now_ms`` is the message's own (Kafka record) time."""
        plan = Plan()
        block, chunk = msg["block"], msg["chunk"]
        wm = self.watermark_ms.get(p, -(1 << 62))
        top = None
        for part in msg["parts"]:
            w, key = part[0], part[1]
            rk = f"{w}{SEP}{key}"
            row = rows.get(rk)
            if row is not None and ranges.contains(row["a"].get(block), chunk):
                continue  # a replayed part: already counted
            top = part[5] if top is None else max(top, part[5])
            late = (row is not None and row["closed_ms"] is not None) or (
                row is None and self.window_ms > 0 and w + self.window_ms <= wm)
            if row is None:
                row = {"c": None, "a": {}, "p": p, "closed_ms": None, "o": [block, chunk]}
            else:
                row = {**row, "a": dict(row["a"])}
            row["a"][block] = ranges.add(row["a"].get(block), chunk)
            row["c"] = merge(row["c"], part)
            if late:
                fid = flow_id(w, key, block, chunk)
                plan.emit.append(("flows", key, record(w, key, merge(None, part), self.window_ms,
                                                        end_reason=END_ACTIVE_TIMEOUT, late=True,
                                                        blocks=[block], fid=fid)))
                if row["closed_ms"] is None:
                    row["closed_ms"] = now_ms
                    self.closed[p].append((now_ms, rk))
            else:
                self.open[p][w].add(rk)
            plan.writes[rk] = row
        self.last_part_ms[p] = now_ms
        max_ms = wm + self.lateness_ms
        if top is not None and top - self.lateness_ms > wm:
            max_ms = top
        plan.marks[f"p{p}"] = {"max_ms": max_ms, "last_part_ms": now_ms}
        if top is not None:
            new_wm = top - self.lateness_ms
            if new_wm > wm:
                self.watermark_ms[p] = new_wm
                if self.window_ms > 0:
                    due = [w for w in self.open[p] if w + self.window_ms <= new_wm]
                    self._close(p, due, rows, plan, now_ms, END_ACTIVE_TIMEOUT)
        self._frontier(p, plan, idle=False)
        return plan

    def _frontier(self, p: int, plan: Plan, idle: bool) -> None:
        """Tell the scorer how far this partition has closed its windows, when that changes.

        ``frontier`` is the watermark: every window ending at or before it is
        closed here. ``idle`` means nothing is open (no parts for idle_flush_ms):
        the partition holds no window back."""
        if self.window_ms <= 0:
            return
        wm = self.watermark_ms.get(p, -(1 << 62))
        state = (wm // self.window_ms, idle)
        if self.frontier_sent.get(p) != state:
            self.frontier_sent[p] = state
            plan.emit.append(("window-summaries", f"frontier{SEP}{p}",
                              {"frontier": max(wm, -1), "partition": p, "idle": idle}))

    def on_tick(self, p: int, rows: Mapping, now_ms: int) -> Plan:
        """Flush idle windows and expire old closed rows; ``now_ms`` is the time the tick carries."""
        plan = Plan()
        if now_ms - self.last_part_ms.get(p, now_ms) >= self.idle_flush_ms:
            if self.open.get(p):
                self._close(p, list(self.open[p]), rows, plan, now_ms, END_FORCED)
            self._frontier(p, plan, idle=True)
        old = self.closed.get(p)
        while old and now_ms - old[0][0] >= self.retention_ms:
            _, rk = old.popleft()
            row = rows.get(rk)
            if row is not None and row["closed_ms"] is not None:
                plan.writes[rk] = None
        return plan

    def _close(self, p: int, windows: list[int], rows: Mapping, plan: Plan, now_ms: int, reason: int) -> None:
        for w in sorted(windows):
            keys = self.open[p].pop(w, set())
            stats: dict[str, Summary] = {}
            home = self.home
            for rk in sorted(keys):
                row = plan.writes.get(rk, _MISSING)
                row = rows.get(rk) if row is _MISSING else row
                if row is None or row["closed_ms"] is not None:
                    continue
                key = rk.split(SEP, 1)[1]
                fid = flow_id(w, key, *row["o"])
                plan.emit.append(("flows", key, record(w, key, row["c"], self.window_ms, end_reason=reason,
                                                        blocks=row["a"], fid=fid)))
                plan.writes[rk] = {**row, "closed_ms": now_ms}
                self.closed[p].append((now_ms, rk))
                sensor, src, dst, proto, sport, dport, _ = key.split(SEP, 6)
                summ = stats.get(sensor)
                if summ is None:
                    summ = stats[sensor] = Summary()
                c = row["c"]
                summ.add(src, dst, int(proto), int(sport), int(dport), c[0], c[1], c[4], src in home)
            if stats:
                plan.emit.append(("window-summaries", f"{w}{SEP}{p}",
                                  {"window": w, "windowLengthMs": self.window_ms, "partition": p,
                                   "sensors": {s: summ.to_json() for s, summ in stats.items()}}))
