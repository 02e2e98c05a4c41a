"""One sensor's capture clock on one flow-parts partition: watermark, holds, idle flush, damaged times.

Pure code (no Faust). DESIGN.md invariant 2: a watermark belongs to a *sensor*.
Sensors' clocks can lie years apart (a replay of last month's captures beside
live traffic, the placebo stamped with today, a capture server whose clock is
wrong), so nothing here ever mixes two sensors: each (partition, sensor) has
its own :class:`SensorClock`, and one sensor's time never closes another's
windows or makes its data late.

Every decoded chunk reaches every partition (agents/decode.py), carrying its
sensor and its highest capture time (``top``), so every partition's clock of a
sensor follows that sensor's whole capture, not only the flows that hash there.

The clock's time moves by the chunks' ``top``:

* **Holds.** While a block of several chunks is still arriving (a shipper sends
  several files at once), the watermark waits at that block's progress, so an
  older file's flows are not late beside a newer one. A block that sends nothing
  for ``hold_ms`` stops holding.
* **Damaged times.** A ``top`` more than ``max_jump_ms`` ahead of the clock does
  not move it by itself: it is kept as ``ahead`` until another chunk confirms the
  jump, or the chunk itself carries at least :data:`SUPPORT_PACKETS` packets (a
  whole capture from a sensor whose clock was reset, not one stamped packet).
  Windows far ahead of the clock are closed but not scored (app/flows/windows.py).
* **Idle flush.** A sensor that sent nothing for a while has ended its capture:
  its open windows are flushed and its watermark moves to the end of the window
  of its last capture time (``floor_ms``), so a later part for those windows is a
  late record. A replay is flushed after ``idle_flush_ms`` of wall-clock silence.
  A *live* sensor (its capture clock within :data:`LIVE_MS` of the wall clock:
  the placebo, a capture server uploading ring files) pauses between uploads as
  a matter of course, so it is flushed only after one and a half of its usual
  pauses (at least ``idle_flush_ms``, at most ``live_idle_ms``): the next ring
  file continues the window the last one ended in, and must not be late.

Every decision is a function of the partition's message sequence (message times,
tick times), so a replay after a crash decides the same.

State per (partition, sensor): one watermark row (about 150 bytes, plus about 80
per block in flight) and, in memory, one :class:`SensorClock` while the sensor has
open windows or holds, or sent something within the retention; an idle sensor's
clock is dropped from memory and read back from its row when it sends again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from app.flows import ranges

NEVER = -(1 << 62)
#: A capture clock within this of the wall clock (the message times) is live.
LIVE_MS = 3_600_000
#: A chunk of at least this many packets moves its sensor's clock however far ahead it is.
SUPPORT_PACKETS = 64


def robust_top(times: list[int], max_jump_ms: int) -> int | None:
    """A chunk's highest capture time, leaving out the few times above its median that lie past a gap of
    more than ``max_jump_ms`` (a packet stamped years ahead among ordinary ones). A chunk that spans days
    of sparse traffic keeps its whole span: only a gap marks a damaged stamp. None for no times.

    >>> robust_top([10, 11, 12, 4_000_000_000_000], 3_600_000)
    12
    >>> robust_top([0, 5_000_000, 10_000_000, 15_000_000], 3_600_000 * 2)   # a long span, no gap
    15000000
    >>> robust_top([5], 1), robust_top([], 1)
    (5, None)
    """
    if not times:
        return None
    s = sorted(times)
    for i in range(max(1, len(s) // 2), len(s)):
        if s[i] - s[i - 1] > max_jump_ms:
            return s[i - 1]
    return s[-1]


@dataclass(slots=True)
class Hold:
    """A block of several chunks not all seen yet: the watermark waits at its progress.

    ``seen``: chunk ranges seen; ``at_ms``: the capture time held at (the highest
    capture time of its chunks seen without a gap from chunk 0), None before any;
    ``touched_ms``: message time of its last chunk; ``ahead``: chunk -> highest
    capture time, for chunks seen past a gap."""

    chunks: int
    at_ms: int | None
    touched_ms: int
    seen: list = field(default_factory=list)
    ahead: dict = field(default_factory=dict)

    def to_json(self) -> list:
        return [self.seen, self.chunks, self.at_ms, self.touched_ms, self.ahead]

    @classmethod
    def from_json(cls, v: list) -> Hold:
        seen, chunks, at_ms, touched_ms, ahead = [*v, {}][:5]   # rows of an older version lack ``ahead``
        return cls(chunks, at_ms, touched_ms, seen, dict(ahead))

    def add(self, chunk: int, top: int | None) -> bool:
        """Chunk ``chunk`` arrived with its highest capture time ``top``; True when the block is through.

        The hold moves up to the highest capture time of the chunks seen without a
        gap from chunk 0, never past a missing one (chunks are decoded on several
        partitions, so they can arrive out of order)."""
        self.seen = ranges.add(self.seen, chunk)
        if ranges.contains_all(self.seen, self.chunks):
            return True
        if top is not None:
            self.ahead[str(chunk)] = max(top, self.ahead.get(str(chunk), top))
        upto = self.seen[0][1] if self.seen and self.seen[0][0] == 0 else -1   # chunks 0..upto all arrived
        for c in [c for c in self.ahead if int(c) <= upto]:
            t = self.ahead.pop(c)
            self.at_ms = t if self.at_ms is None else max(self.at_ms, t)
        return False


@dataclass(slots=True)
class SensorClock:
    """The capture clock of one sensor on one partition (see the module docstring)."""

    high_ms: int = NEVER          #: highest capture time accepted
    floor_ms: int = NEVER         #: windows ending at or before it were flushed (end of capture)
    last_part_ms: int | None = None   #: message time of the sensor's last message here
    pause_ms: int = 0             #: the sensor's usual pause between uploads (wall clock), 0 unknown
    holds: dict[str, Hold] = field(default_factory=dict)   #: "sensor~block" -> hold
    ahead: list | None = None     #: [capture time, "sensor~block", chunk]: a jump not yet confirmed
    held_jumps: int = 0           #: jumps that were held as damaged (for health)
    flushed: bool = False         #: idle and flushed: nothing to do until it sends again
    frontier_sent: int | None = None   #: in memory only: the last frontier window reported

    # -- the row
    def to_json(self) -> dict:
        return {"max_ms": self.high_ms, "floor_ms": self.floor_ms, "last_part_ms": self.last_part_ms,
                "pause_ms": self.pause_ms, "inflight": {k: h.to_json() for k, h in self.holds.items()},
                "ahead": self.ahead, "held_jumps": self.held_jumps, "flushed": self.flushed}

    @classmethod
    def from_json(cls, d: dict) -> SensorClock:
        return cls(d.get("max_ms", NEVER), d.get("floor_ms", NEVER), d.get("last_part_ms"), d.get("pause_ms", 0),
                   {k: Hold.from_json(v) for k, v in (d.get("inflight") or {}).items()}, d.get("ahead"),
                   d.get("held_jumps", 0), d.get("flushed", False))

    # -- time
    def watermark(self, lateness_ms: int) -> int:
        """Every window ending at or before this is closed: the highest capture time, held back to the
        progress of every block still arriving, minus the lateness; or the flushed floor."""
        held = min([self.high_ms, *(h.at_ms for h in self.holds.values() if h.at_ms is not None)])
        return max(self.floor_ms, held - lateness_ms if held != NEVER else NEVER)

    def far_ahead(self, t_ms: int, max_jump_ms: int) -> bool:
        """Whether capture time ``t_ms`` is further ahead of the clock than a jump it would take by itself."""
        return self.high_ms != NEVER and t_ms > self.high_ms + max_jump_ms

    def observe(self, top: int | None, source: str, chunk: int, packets: int, max_jump_ms: int) -> None:
        """A chunk of ``packets`` packets whose (robust) highest capture time is ``top``."""
        if top is None:
            return
        if self.far_ahead(top, max_jump_ms) and packets < SUPPORT_PACKETS:
            if self.ahead is None:
                self.held_jumps += 1
                self.ahead = [top, source, chunk]
                return
            if (self.ahead[1], self.ahead[2]) == (source, chunk):
                return                                  # the same chunk again (a replay): no confirmation
            first = self.ahead[0]                       # a second chunk says so too: the clock did jump
            self.ahead = None
            self.high_ms = max(self.high_ms, min(first, top))
            if self.far_ahead(top, max_jump_ms):
                return
        if top > self.high_ms:
            self.high_ms = top
        if self.ahead is not None and not self.far_ahead(self.ahead[0], max_jump_ms):
            self.ahead = None                           # the clock caught up with it

    def heard(self, now_ms: int, idle_flush_ms: int) -> None:
        """A message of the sensor arrived at ``now_ms``: learn its pauses, and it is no longer idle."""
        if self.last_part_ms is not None:
            gap = now_ms - self.last_part_ms
            if gap >= idle_flush_ms:                    # a pause between uploads, not inside one
                self.pause_ms = gap if not self.pause_ms else (self.pause_ms + gap) // 2
        self.last_part_ms = now_ms
        self.flushed = False

    def live(self) -> bool:
        return self.last_part_ms is not None and self.high_ms != NEVER and \
            abs(self.last_part_ms - self.high_ms) <= LIVE_MS

    def idle_after_ms(self, idle_flush_ms: int, live_idle_ms: int) -> int:
        """Wall-clock silence after which the sensor's capture has ended."""
        if not self.live():
            return idle_flush_ms
        return min(max(idle_flush_ms, self.pause_ms * 3 // 2), max(live_idle_ms, idle_flush_ms))

    def is_idle(self, now_ms: int, idle_flush_ms: int, live_idle_ms: int) -> bool:
        return self.last_part_ms is not None and \
            now_ms - self.last_part_ms >= self.idle_after_ms(idle_flush_ms, live_idle_ms)

    def flush_floor(self, window_ms: int, closed_upto_ms: int = NEVER) -> None:
        """The capture has ended: every window up to the one of the highest capture time is closed, and up
        to ``closed_upto_ms`` (the end of the last window the flush closed, far-ahead ones left out)."""
        if self.high_ms != NEVER and window_ms > 0:
            self.floor_ms = max(self.floor_ms, self.high_ms - self.high_ms % window_ms + window_ms, closed_upto_ms)
        self.flushed = True

    # -- holds
    def hold(self, source: str, chunks: int, top: int | None, now_ms: int) -> Hold:
        """Hold the clock for a block from its first capture time ``top`` (None: from its first chunk on), but
        never behind where the clock already is: a block older than the clock is late where it is older
        (a replay of 2011 after 2020 is late, not a reason to reopen nine years), and it keeps the clock
        from moving on until it is through."""
        now_at = self.watermark(0)
        if now_at != NEVER:
            top = now_at if top is None else max(top, now_at)
        h = self.holds[source] = Hold(chunks, top, now_ms)
        return h

    def expire_holds(self, now_ms: int, hold_ms: int) -> bool:
        """Stop waiting for blocks that sent nothing for ``hold_ms``; True if any stopped."""
        old = [k for k, h in self.holds.items() if now_ms - h.touched_ms >= hold_ms]
        for k in old:
            del self.holds[k]
        return bool(old)
