"""Whole windows: collect every partition's summaries of a sensor's window, and say when it is complete.

Pure code (no Faust). The scoring agent feeds every window-summaries message to
one :class:`Completer` and scores what :meth:`Completer.complete` returns.

A (sensor, window) is complete when every flow-parts partition has reported a
*frontier* for that sensor at or past the window's end: each partition has then
closed that window and sent its summary of it, if it had flows of it (the
summary goes out before the frontier that passes it, on the one partition of
window-summaries). There is no shortcut for idle partitions: a partition says it
is done with a sensor's windows only through its frontier, which an idle flush
moves too (app/flows/clock.py). Every decoded chunk reaches every partition, so every
partition reports on every sensor.

Summaries are kept per (sensor, window, partition), so one sent again (a replay)
replaces itself and is never counted twice. A complete window is scored once.
What misses its window's score is counted per sensor, never silently dropped:

* ``late``: records of a window already closed by a partition (a late notice from
  app/flows/windows.py), or a partition's summary of a window already scored;
* ``ahead``: records of windows far ahead of the sensor's clock (damaged capture
  times), which are never scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable

from app.records import SEP, ScoringRows
from app.flows.summary import Summary

NEVER = -(1 << 62)
#: Late notices remembered per sensor, so that a notice sent again (a replay) counts once.
RECENT_NOTICES = 256
#: Windows scored remembered per sensor with the partitions in them, so that a summary sent again after a crash
#: (the table can be ahead of the committed offset) is known for a replay, not counted as late.
RECENT_SCORED = 256


@dataclass(slots=True)
class SensorProgress:
    """How far one sensor's windows are known to be closed, and what missed scoring."""

    frontier: dict[int, int] = field(default_factory=dict)   #: partition -> frontier (ms)
    scored_ms: int = NEVER          #: the last window scored
    windows: int = 0                #: windows scored
    late_records: int = 0           #: records that came after their window was closed or scored
    late_packets: int = 0
    late_bytes: int = 0
    ahead_records: int = 0          #: records of windows far ahead of the clock: not scored
    notices: list = field(default_factory=list)   #: ids of the last late notices
    scored: dict = field(default_factory=dict)    #: the last windows scored -> the partitions that had flows

    def to_json(self) -> dict:
        return {"frontier": {str(p): f for p, f in self.frontier.items()}, "scored_ms": self.scored_ms,
                "windows": self.windows, "late_records": self.late_records, "late_packets": self.late_packets,
                "late_bytes": self.late_bytes, "ahead_records": self.ahead_records, "notices": self.notices,
                "scored": {str(w): ps for w, ps in self.scored.items()}}

    @classmethod
    def from_json(cls, d: dict) -> SensorProgress:
        return cls({int(p): f for p, f in d.get("frontier", {}).items()}, d.get("scored_ms", NEVER),
                   d.get("windows", 0), d.get("late_records", 0), d.get("late_packets", 0), d.get("late_bytes", 0),
                   d.get("ahead_records", 0), list(d.get("notices", [])),
                   {int(w): ps for w, ps in d.get("scored", {}).items()})

    def low(self, partitions: int) -> int | None:
        """The frontier every partition has reached, None while one has not reported yet."""
        try:
            return min(self.frontier[p] for p in range(partitions))
        except KeyError:
            return None


@dataclass
class Completer:
    """Per sensor: every partition's frontier and the pending summaries; complete windows come out once.

    ``changed``: table rows to write (``None`` deletes), collected since the agent last took them:
    ``clock|SENSOR`` -> :meth:`SensorProgress.to_json`; ``pending|SENSOR|window|partition`` -> that
    partition's summary of the window, as the window-summaries message it came in;
    ``pending|SENSOR|partition|first window|batch`` -> the summaries of many windows closed at once, as the
    message came, until every window of it that was pending is scored."""

    partitions: int
    progress: dict[str, SensorProgress] = field(default_factory=dict)
    pending: dict[str, dict[int, dict[int, dict]]] = field(default_factory=dict)  #: sensor -> w -> p -> summary
    changed: dict[str, object] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)              #: sensors whose windows may have completed
    batch_rows: dict[str, set[int]] = field(default_factory=dict)   #: batch row -> its windows still pending
    row_of: dict[tuple[str, int, int], str] = field(default_factory=dict)  #: (sensor, w, p) -> its batch row
    first: dict[str, int] = field(default_factory=dict)       #: sensor -> its oldest pending window

    PENDING = ScoringRows.PENDING
    CLOCK = ScoringRows.CLOCK
    pending_key = ScoringRows.pending
    batch_key = ScoringRows.pending_batch

    def _progress(self, sensor: str) -> SensorProgress:
        prog = self.progress.get(sensor)
        if prog is None:
            prog = self.progress[sensor] = SensorProgress()
        return prog

    def _touch(self, sensor: str) -> SensorProgress:
        self.dirty.add(sensor)
        prog = self._progress(sensor)
        self.changed[self.CLOCK + sensor] = prog    # serialised when the agent writes it
        return prog

    def on_message(self, msg: dict) -> None:
        if "frontier" in msg:
            if "sensor" in msg:   # an older version's frontier spoke for every sensor: superseded
                prog = self._progress(msg["sensor"])
                f = int(msg["frontier"])
                if prog.frontier.get(int(msg["partition"])) != f:
                    self._touch(msg["sensor"]).frontier[int(msg["partition"])] = f
            return
        if "late" in msg:
            self._late_notice(msg)
            return
        if "windows" in msg:
            self._batch(msg)
            return
        self._summary(msg)

    def _batch(self, msg: dict) -> None:
        """The summaries of many windows of one sensor, closed at once (a replay): kept as one row, the
        message as it came, deleted once every window of it that was pending is scored."""
        sensor, p = msg["sensor"], int(msg["partition"])
        key = self.batch_key(sensor, p, int(msg["windows"][0][0]))
        held = set()
        for w, summ, ahead in msg["windows"]:
            if self._summary({"window": w, "windowLengthMs": msg.get("windowLengthMs"), "partition": p,
                              "sensors": {sensor: summ}, **({"ahead": True} if ahead else {})}, row=False):
                held.add(int(w))
                self.row_of[(sensor, int(w), p)] = key
        if held:
            self.batch_rows[key] = held
            self.changed[key] = msg
        elif key in self.batch_rows:
            del self.batch_rows[key]
            self.changed[key] = None

    def _restore_batch(self, msg: dict) -> None:
        """A batch row read back: its windows still pending, nothing counted again."""
        sensor, p = msg["sensor"], int(msg["partition"])
        key = self.batch_key(sensor, p, int(msg["windows"][0][0]))
        prog = self._progress(sensor)
        held = set()
        for w, summ, ahead in msg["windows"]:
            w = int(w)
            if not ahead and w > prog.scored_ms and p not in prog.scored.get(w, ()):
                self.pending.setdefault(sensor, {}).setdefault(w, {})[p] = summ
                self.row_of[(sensor, w, p)] = key
                held.add(w)
        if held:
            self.batch_rows[key] = held
        else:
            self.changed[key] = None

    def _done(self, sensor: str, w: int, p: int) -> None:
        """A pending summary was scored: delete its row, or take it out of its batch row."""
        key = self.row_of.pop((sensor, w, p), None)
        if key is None:
            self.changed[self.pending_key(sensor, w, p)] = None
            return
        held = self.batch_rows.get(key)
        if held is not None:
            held.discard(w)
            if not held:
                del self.batch_rows[key]
                self.changed[key] = None

    def _summary(self, msg: dict, row: bool = True) -> bool:
        """One summary message; whether it left a summary pending."""
        pending = False
        w, p = int(msg["window"]), int(msg["partition"])
        for sensor, summ in msg["sensors"].items():
            prog = self._progress(sensor)
            if msg.get("ahead"):
                self._touch(sensor).ahead_records += int(summ["flows"])
            elif p in prog.scored.get(w, ()):
                continue                                # a replay of a summary already scored
            elif w <= prog.scored_ms:
                prog = self._touch(sensor)
                prog.late_records += int(summ["flows"])
                prog.late_packets += int(summ["packets"])
                prog.late_bytes += int(summ["bytes"])
            else:
                # complete only once every partition's frontier passed it, which comes after this summary;
                # after a crash the frontiers may be there already
                self.pending.setdefault(sensor, {}).setdefault(w, {})[p] = summ
                self.first[sensor] = min(self.first.get(sensor, w), w)
                self.dirty.add(sensor)
                pending = True
                if row:   # the row is the message as it came when it holds this sensor alone
                    self.changed[self.pending_key(sensor, w, p)] = msg if len(msg["sensors"]) == 1 else \
                        {"window": w, "partition": p, "windowLengthMs": msg.get("windowLengthMs"),
                         "sensors": {sensor: summ}}
        return pending

    def _late_notice(self, msg: dict) -> None:
        notice = f"{msg['partition']}|{msg['source']}|{msg['chunk']}|{msg['window']}"
        prog = self._progress(msg["sensor"])
        if notice in prog.notices:
            return
        prog = self._touch(msg["sensor"])
        prog.notices = [*prog.notices[-(RECENT_NOTICES - 1):], notice]
        prog.late_records += int(msg["late"]["records"])
        prog.late_packets += int(msg["late"]["packets"])
        prog.late_bytes += int(msg["late"]["bytes"])

    def complete(self, window_ms: int) -> list[tuple[str, int, Summary]]:
        """Pop the complete windows of the sensors heard of since the last call: ``(sensor, window,
        merged summary)``, each sensor's in capture-time order."""
        out = []
        for sensor in sorted(self.dirty):
            low = self._progress(sensor).low(self.partitions)
            windows = self.pending.get(sensor)
            if low is None or not windows or self.first[sensor] + window_ms > low:
                continue                                # cheap: a bulk replay brings thousands pending
            prog = self._touch(sensor)
            for w in sorted(windows):
                if w + window_ms > low:
                    break
                merged = Summary()
                for p in sorted(windows[w]):
                    merged.merge(Summary.from_json(windows[w][p]))
                prog.scored[w] = sorted(windows[w])
                for p in windows.pop(w):
                    self._done(sensor, w, p)
                prog.scored_ms = max(prog.scored_ms, w)
                prog.windows += 1
                out.append((sensor, w, merged))
            for old in sorted(prog.scored)[:-RECENT_SCORED]:
                del prog.scored[old]
            if windows:
                self.first[sensor] = min(windows)
            else:
                del self.pending[sensor], self.first[sensor]
        self.dirty.clear()
        return out

    def take(self) -> dict[str, object]:
        """The rows changed since the last call (clock rows as their JSON data)."""
        out = {k: (v.to_json() if isinstance(v, SensorProgress) else v) for k, v in self.changed.items()}
        self.changed = {}
        return out

    @classmethod
    def from_rows(cls, partitions: int, rows: Iterable[tuple[str, dict | None]]) -> Completer:
        """From the rows of :meth:`take` (rows of other shapes are ignored). Rows of an older version (one
        ``completer`` row, ``pending|window|partition`` rows holding several sensors) are read and rewritten."""
        c = cls(partitions)
        batches = []
        for key, v in rows:
            if not v:
                continue
            if key.startswith(cls.CLOCK):
                c.progress[key[len(cls.CLOCK):]] = SensorProgress.from_json(v)
            elif key.startswith(cls.PENDING) and key.endswith(ScoringRows.BATCH):
                batches.append(v)
            elif key.startswith(cls.PENDING):
                f = key[len(cls.PENDING):].split(SEP)
                if len(f) == 3:
                    c.pending.setdefault(f[0], {}).setdefault(int(f[1]), {})[int(f[2])] = v["sensors"][f[0]]
                else:   # older: pending|window|partition; its value the message, or the sensors alone
                    sensors = v["sensors"] if isinstance(v.get("window"), int) and "sensors" in v else v
                    for sensor, summ in sensors.items():
                        c.pending.setdefault(sensor, {}).setdefault(int(f[0]), {})[int(f[1])] = summ
                        c.changed[cls.pending_key(sensor, int(f[0]), int(f[1]))] = \
                            {"window": int(f[0]), "partition": int(f[1]), "sensors": {sensor: summ}}
                    c.changed[key] = None
            elif key == "completer":   # older: one row; the frontiers were per partition, for every sensor
                for sensor, w in v.get("scored_ms", {}).items():
                    c._progress(sensor).scored_ms = max(c._progress(sensor).scored_ms, w)
                    c.changed[cls.CLOCK + sensor] = c.progress[sensor]
                c.changed[key] = None
        for msg in batches:   # after the clock rows: what was scored already is no longer pending
            c._restore_batch(msg)
        c.dirty = set(c.pending)
        c.first = {sensor: min(ws) for sensor, ws in c.pending.items()}
        return c
