"""Detectors per entity: scans, brute force, beacons, DNS tunnels, exfiltration and long connections.

Pure code (no Faust). A sensor-wide count cannot see one source probing 200
hosts among a site's millions of flows; these detectors keep state per *actor*
(a sensor and a source address) and look at what that actor does, in the manner
of Zeek's scan and SSH password-guessing policies and RITA's beacon, DNS and
long-connection analyses.

Data path. When the flows agent closes a window it picks the records these
detectors read (:func:`wanted`: connection attempts, flows to services where
passwords are guessed, DNS, and an inside host's flows to the outside) and sends
them, a compact row each (:data:`OBS_FIELDS`), to the partition of their actor
(:func:`actor_partition`). The entities agent keeps one :class:`Actor` per actor
as a row of a changelog table of that partition: actors spread over partitions
and workers like flows do. What an actor's detectors find (:class:`Finding`)
goes through the same attention control and budget as every other anomaly.

Detectors and what they count, per actor, in capture time:

- ``horizontal-scan``: distinct destination hosts per (destination port,
  protocol) of connection attempts (a TCP SYN never followed by an ACK from the
  source; an ICMP echo request), over 5 minutes and over an hour;
- ``vertical-scan``: distinct destination ports per destination host of
  attempts (and of UDP flows of at most two packets), over the same horizons;
- ``brute-force``: short TCP connections (opened, at most 60 packets) per
  (destination host, service port) for services where passwords are guessed
  (:data:`AUTH_PORTS`), over 10 minutes and over an hour;
- ``beacon``: for an inside host and an outside address, the regularity of
  the intervals between connections and of their sizes (Bowley skewness and
  median absolute deviation, as RITA scores them) over the last
  :data:`BEACON_RING` connections;
- ``dns-tunnel``: an inside host's DNS packets and their size over 10 minutes,
  against that host's own history (the peak of its earlier buckets, fading over
  a week, :class:`History`);
- ``exfiltration``: an inside host's bytes to one outside address over 30
  minutes against the host's own history (more to an address it uploaded to on
  earlier days, :class:`Seen`), and ``slow-exfiltration``: a steady run of
  uploading to a new address (records at most :data:`STEADY_GAP` apart, over
  three windows, no one record most of it), or bytes accumulated over the last
  12 hours to a new address, spread over at least three hours;
- ``long-connection``: how long one connection (a source port) to an outside
  address has been open, for an address the host had not talked to before it
  (RITA's long connections), unless its bytes were found as exfiltration.

Counts over a horizon are estimated from two tumbling buckets, the current
one and the previous one weighted by how much of it still lies in the horizon
(the sliding-window estimate of rate limiters). Distinct counts are exact up to
:data:`EXACT` items, then a HyperLogLog sketch of 256 registers (about 6.5 %
error). Everything an actor keeps is bounded (:data:`MAX_KEYS` keys per
bucket, :data:`MAX_PAIRS` outside addresses, :data:`BEACON_RING` connections
per address, :data:`MAX_UPLOADS` upload destinations): 27 KB of JSON for a source that
scanned 20,000 addresses on as many ports, asked 2,000 DNS questions and uploaded to 3,000
addresses; a few hundred bytes for most actors.

A finding that an actor's same (type, entity) raised on two earlier capture
days of the last week is *habitual* (a nightly backup, a scheduled vulnerability
scan, a monitoring poll): it is still published, and raises no alert.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.records import DAY_MS, flow_ids, port_name

SYN, RST, ACK = 0x02, 0x04, 0x10
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
#: ICMP echo requests (type 8, ICMPv6 128) as the flow key's port: type * 256 + code.
ECHO = (8 << 8, 128 << 8)
#: Services where passwords are guessed: ssh, telnet, ftp, smtp submission, pop3, imap, rdp, vnc, smb,
#: databases, ldap, http basic-auth admin ports are left out (a web client makes many short connections).
AUTH_PORTS = frozenset({21, 22, 23, 25, 110, 143, 389, 445, 465, 587, 636, 993, 995, 1433, 1521, 3306, 3389,
                        5432, 5900, 5985, 5986, 6379, 27017})
#: Ports whose traffic is periodic by design (NTP, DNS, mDNS, NetBIOS, SSDP): no beacon is looked for there.
PERIODIC_BY_DESIGN = frozenset({53, 123, 137, 138, 5353, 1900})
#: What the flows agent sends per record: a compact row, in this order.
OBS_FIELDS = ("dst", "proto", "sport", "dport", "packets", "bytes", "first", "last", "flags", "dst_inside")

EXACT = 64               #: distinct items kept exactly before a HyperLogLog takes over
HLL_P = 8                #: HyperLogLog registers: 2 ** HLL_P
MAX_KEYS = 64            #: keys per bucket of a counting detector (the smallest quarter is evicted)
MAX_PAIRS = 24           #: outside addresses an inside host is followed to (space-saving by weight)
BEACON_RING = 64         #: connection times and sizes kept per outside address
TRACEROUTE = (33434, 33534)  #: UDP ports of traceroute's probes: never a vertical scan
MAX_HABITS = 32          #: (type, entity) whose days are remembered per actor


def actor_key(sensor: str, src: str) -> str:
    """An actor's row key: ``sensor|source address``."""
    return f"{sensor}|{src}"


def actor_partition(sensor: str, src: str, partitions: int) -> int:
    """The partition of an actor (the same in every process)."""
    return zlib.crc32(actor_key(sensor, src).encode()) % partitions


def is_attempt(proto: int, dport: int, packets: int, flags: int) -> bool:
    """A connection attempt: a TCP SYN without an ACK from its source (unanswered, refused or reset), or an
    ICMP echo request."""
    if proto == TCP:
        return bool(flags & SYN) and not flags & ACK
    return proto in (ICMP, ICMP6) and dport in ECHO


def initiates(proto: int, sport: int, dport: int, flags: int) -> bool:
    """Whether a flow's source opened the conversation: an attempt, else the side whose port is the
    higher (clients take ephemeral ports, services listen on low ones)."""
    if proto == TCP and flags & SYN and not flags & ACK:
        return True
    return dport < sport if proto in (TCP, UDP) else proto in (ICMP, ICMP6) and dport in ECHO


def wanted(src_inside: bool, dst_inside: bool, proto: int, sport: int, dport: int, packets: int,
           flags: int) -> bool:
    """Whether the detectors read a flow record: attempts, small UDP probes, and flows a source opens to
    a service where passwords are guessed, to DNS, or from inside to the outside."""
    if is_attempt(proto, dport, packets, flags):
        return True
    if not initiates(proto, sport, dport, flags):
        return False
    if proto == UDP and packets <= 2:
        return True
    return dport in AUTH_PORTS or dport == 53 or (src_inside and not dst_inside)


#: Rows per entity-flows message at most (about 60 bytes each): a scan's window is cut into several.
MESSAGE_ROWS = 8000
ENTITY_FLOWS_VERSION = 1


class EntityRows:
    """The records of one closed (sensor, window) the detectors read, grouped by the partition of their actor
    (:func:`actor_partition`), as entity-flows messages: ``{"v", "sensor", "window", "windowLengthMs",
    "origin": flows partition, "part": index, "actors": {source: [row of OBS_FIELDS, ...]}}``."""

    def __init__(self, sensor: str, partitions: int) -> None:
        self.sensor, self.partitions = sensor, partitions
        self.by_part: dict[int, dict[str, list[list]]] = {}
        self._part: dict[str, int] = {}

    def add(self, src: str, dst: str, src_inside: bool, dst_inside: bool, proto: int, sport: int, dport: int,
            c: list) -> None:
        """One record (``c``: packets, bytes, first, last, flags, ...), if the detectors read it."""
        if not wanted(src_inside, dst_inside, proto, sport, dport, c[0], c[4]):
            return
        part = self._part.get(src)
        if part is None:
            part = self._part[src] = actor_partition(self.sensor, src, self.partitions)
        self.by_part.setdefault(part, {}).setdefault(src, []).append(
            [dst, proto, sport, dport, c[0], c[1], c[2], c[3], c[4], dst_inside])

    def messages(self, w_ms: int, window_ms: int, origin: int) -> list[tuple[int, dict]]:
        """(partition, message) for every partition with rows, each message under :data:`MESSAGE_ROWS` rows."""
        out = []
        for part in sorted(self.by_part):
            actors: dict[str, list] = {}
            size = 0
            for src, rows in self.by_part[part].items():
                for i in range(0, len(rows), MESSAGE_ROWS):
                    if size >= MESSAGE_ROWS:
                        out.append((part, actors))
                        actors, size = {}, 0
                    piece = rows[i:i + MESSAGE_ROWS]
                    actors.setdefault(src, []).extend(piece)
                    size += len(piece)
            if actors:
                out.append((part, actors))
        self.by_part = {}
        return [(part, {"v": ENTITY_FLOWS_VERSION, "sensor": self.sensor, "window": w_ms, "windowLengthMs": window_ms,
                        "origin": origin, "part": i, "actors": actors}) for i, (part, actors) in enumerate(out)]


# -------------------------------------------------------------------------------------------------
# Sketches

_INV_POW2 = [2.0 ** -r for r in range(65)]


class Distinct:
    """A distinct count: exact up to :data:`EXACT` items, then a HyperLogLog of ``2 ** HLL_P`` registers.
    ``examples`` keeps the first few items for an alert's evidence."""

    __slots__ = ("exact", "regs", "examples", "_n")

    def __init__(self, exact: list[int] | None = None, regs: bytearray | None = None,
                 examples: list[str] | None = None) -> None:
        self.exact: set[int] | None = set(exact or ()) if regs is None else None
        self.regs = regs
        self.examples = examples or []
        self._n: float | None = None        #: the sketch's estimate, until a register changes

    def add(self, h: int, item: str) -> None:
        if self.exact is not None:
            if h in self.exact:
                return
            if len(self.examples) < 8:
                self.examples.append(item)
            self.exact.add(h)
            if len(self.exact) > EXACT:
                self.regs = bytearray(1 << HLL_P)
                for x in self.exact:
                    self._reg(x)
                self.exact = None
            return
        self._reg(h)

    def _reg(self, h: int) -> None:
        regs = self.regs
        assert regs is not None
        idx = h & ((1 << HLL_P) - 1)
        rest = h >> HLL_P
        rank = 1
        while rest & 1 == 0 and rank < 64 - HLL_P:
            rest >>= 1
            rank += 1
        if rank > regs[idx]:
            regs[idx] = rank
            self._n = None

    def count(self) -> float:
        if self.exact is not None:
            return float(len(self.exact))
        if self._n is None:
            regs = self.regs
            assert regs is not None
            m = len(regs)
            est = 0.7213 / (1 + 1.079 / m) * m * m / sum(_INV_POW2[r] for r in regs)
            zeros = regs.count(0)
            if est <= 2.5 * m and zeros:
                est = m * math.log(m / zeros)          # linear counting for small sets
            self._n = est
        return self._n

    def to_json(self) -> list:
        return [sorted(self.exact) if self.exact is not None else None,
                self.regs.hex() if self.regs is not None else None, self.examples]

    @classmethod
    def from_json(cls, j: list) -> Distinct:
        return cls(j[0], bytearray.fromhex(j[1]) if j[1] is not None else None, j[2])


class Horizon:
    """Counts per key over a sliding horizon of ``length_ms`` of capture time, estimated from the current
    tumbling bucket and the last one: ``current + last * (share of the last bucket still in the horizon)``.
    A key's value is a :class:`Distinct` (``distinct=True``) or a number. At most :data:`MAX_KEYS` keys per
    bucket: a new key in a full bucket evicts its smallest quarter."""

    def __init__(self, length_ms: int, distinct: bool) -> None:
        self.length_ms = length_ms
        self.distinct = distinct
        self.start = -1
        self.cur: dict[str, Any] = {}
        self.last: dict[str, float] = {}       #: the previous bucket's final counts

    def roll(self, t_ms: int) -> None:
        """Move to the bucket of ``t_ms`` (times before the current bucket count in it)."""
        start = t_ms - t_ms % self.length_ms
        if start <= self.start:
            return
        self.last = {k: self.value(v) for k, v in self.cur.items()} if start == self.start + self.length_ms else {}
        self.cur, self.start = {}, start

    def value(self, v) -> float:
        return v.count() if self.distinct else float(v)

    def _slot(self, key: str):
        v = self.cur.get(key)
        if v is None:
            if len(self.cur) >= MAX_KEYS:      # the smallest quarter goes: one sort per MAX_KEYS // 4 new keys
                values = {k: self.value(x) for k, x in self.cur.items()}
                for k in sorted(values, key=values.__getitem__)[:MAX_KEYS // 4]:
                    del self.cur[k]
            v = self.cur[key] = Distinct() if self.distinct else 0.0
        return v

    def add(self, key: str, h: int, item: str) -> None:
        self._slot(key).add(h, item)

    def count(self, key: str, n: float) -> None:
        self._slot(key)
        self.cur[key] += n

    def estimate(self, key: str, t_ms: int) -> float:
        cur = self.cur.get(key)
        now = self.value(cur) if cur is not None else 0.0
        share = max(0.0, 1.0 - (t_ms - self.start) / self.length_ms)
        return now + self.last.get(key, 0.0) * share

    def to_json(self) -> dict:
        return {"s": self.start, "c": {k: (v.to_json() if self.distinct else v) for k, v in self.cur.items()},
                "l": self.last}

    def load(self, j: dict) -> Horizon:
        self.start, self.last = j["s"], j["l"]
        self.cur = {k: (Distinct.from_json(v) if self.distinct else v) for k, v in j["c"].items()}
        return self


@dataclass
class History:
    """An actor's usual high of one measure per bucket: the largest bucket value seen, fading with a half-life of
    a week of capture time (a host quiet at night and busy by day is judged by its busy buckets), and how
    many buckets it has seen."""

    peak: float = 0.0
    n: int = 0
    start: int = -1          #: the bucket being filled
    value: float = 0.0
    half_life_ms: int = 7 * DAY_MS

    def roll(self, t_ms: int, length_ms: int) -> None:
        start = t_ms - t_ms % length_ms
        if self.start < 0:
            self.start = start
        if start <= self.start:
            return
        gone = (start - self.start) // length_ms
        self.peak = max(self.peak, self.value) * 0.5 ** (gone * length_ms / self.half_life_ms)
        self.n += gone
        self.start, self.value = start, 0.0

    def high(self) -> float:
        """The usual high: the fading peak of earlier buckets."""
        return self.peak

    def to_json(self) -> list:
        return [self.peak, self.n, self.start, self.value]

    @classmethod
    def from_json(cls, j: list) -> History:
        return cls(*j)


# -------------------------------------------------------------------------------------------------
# Findings

class Finding(NamedTuple):
    """What a detector found about an entity in a window: ``score`` is the measure over its threshold (1 at the
    threshold), ``title`` one line for a person, ``evidence`` what made it."""

    type: str
    entity: str
    t_ms: int
    score: float
    threshold: float
    title: str
    evidence: dict
    habitual: bool = False


@dataclass(frozen=True)
class EntityConfig:
    """Thresholds of the detectors (module docstring). Sources outside the site (the internet's background
    of scanners) must go ``outside_factor`` times as far before a scan is found."""

    hscan_fast: float = 20.0          #: hosts in 5 minutes, one port
    hscan_slow: float = 30.0          #: hosts in an hour, one port
    vscan_fast: float = 15.0          #: ports of one host in 5 minutes
    vscan_slow: float = 40.0          #: ports of one host in an hour
    brute_fast: float = 30.0          #: short connections to one service in 10 minutes
    brute_slow: float = 120.0         #: in an hour
    outside_factor: float = 4.0
    beacon_score: float = 0.9         #: RITA-like regularity score in [0, 1]
    beacon_min: int = 20              #: connections before a beacon is judged
    beacon_span_ms: int = 30 * 60_000  #: over at least this much time
    dns_packets: float = 150.0        #: DNS packets in 10 minutes, at least
    dns_packet_bytes: float = 90.0    #: of this many bytes each on average (a lookup's query: 60-80)
    dns_factor: float = 2.0           #: and this many times the host's usual high
    exfil_bytes: float = 300e6        #: bytes to one new upload destination in 30 minutes, at least
    exfil_known_bytes: float = 1e9    #: to an address the host uploaded to on earlier days
    exfil_factor: float = 3.0         #: and this many times the host's usual high per address
    slow_bytes: float = 150e6         #: bytes to one new outside address over 12 hours
    slow_spread: float = 0.6          #: no hour of which holds more than this share
    new_ms: int = DAY_MS              #: an address is new for this long after the host first talked to it
    steady_bytes: float = 6e6         #: a run of uploading to a new address: at least this many bytes
    steady_span_ms: int = 10 * 60_000  #: over at least this long (three 5-minute windows)
    steady_share: float = 0.6         #: none of its records holding more than this share (not one burst)
    steady_rate: float = 12e6         #: bytes an hour, at least, over the run (not a day of small requests)
    long_ms: int = 4 * 3_600_000      #: one connection to an address new to the host open this long
    habit_days: int = 2               #: earlier days on which a (type, entity) fired before it is habitual


FAST, HOUR, TEN, BURST = 5 * 60_000, 3_600_000, 10 * 60_000, 30 * 60_000
MAX_UPLOADS = 64         #: upload destinations remembered per inside host
STEADY_GAP = 10 * 60_000  #: records to one address at most this far apart are one run of uploading
LONG_GAP = 30 * 60_000    #: a connection with no record for longer is taken as closed
OPEN_CONNS = 4            #: connections per outside address followed for their length


class Seen:
    """The outside addresses an inside host sent a megabyte or more to on a day, and the last such day: its
    upload destinations (at most :data:`MAX_UPLOADS`, the least recent goes). An address not among them on an
    earlier day is *new* to the host's uploads."""

    def __init__(self, days: dict[str, int] | None = None) -> None:
        self.days: dict[str, int] = days or {}

    @staticmethod
    def _key(addr: str) -> str:
        return format(zlib.crc32(addr.encode()), "x")

    def known(self, addr: str, t_ms: int) -> bool:
        """Whether the host uploaded to ``addr`` on a day before ``t_ms``'s."""
        return self.days.get(self._key(addr), t_ms // DAY_MS) < t_ms // DAY_MS

    def uploaded(self, addr: str, t_ms: int) -> None:
        key = self._key(addr)
        if key not in self.days and len(self.days) >= MAX_UPLOADS:
            del self.days[min(self.days, key=self.days.__getitem__)]
        self.days[key] = t_ms // DAY_MS

    def to_json(self) -> dict:
        return self.days

    @classmethod
    def from_json(cls, j: dict) -> Seen:
        return cls(dict(j))


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def _dur(ms: float) -> str:
    return f"{ms / 3_600_000:.1f} h" if ms >= 5_400_000 else f"{ms / 60_000:.0f} min"


def _quantile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``xs``, interpolated linearly between order statistics (numpy's default)."""
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bowley(xs: list[float], floor: float) -> float:
    """Bowley's (quartile) skewness of sorted ``xs``, 0 for a symmetric spread. A spread between the quartiles
    narrower than ``floor`` counts as ``floor`` wide: the skew of a tight spread is noise, not a lack of
    regularity."""
    q1, q2, q3 = _quantile(xs, 0.25), _quantile(xs, 0.5), _quantile(xs, 0.75)
    return (q1 + q3 - 2 * q2) / max(q3 - q1, floor, 1e-9)


def beacon_score(starts: list[int], sizes: list[int]) -> tuple[float, dict]:
    """RITA-like regularity of connections: the mean of four scores in [0, 1]: intervals' and sizes'
    1 - |Bowley skewness| (quartile spreads under 10 % of the median interval, or 32 bytes, count as that
    wide), intervals' 1 - MADM / median, and sizes' 1 - MADM / 128 (bytes). Returns the score and its
    evidence. Plain Python on at most :data:`BEACON_RING` connections: a pair is judged every 5 minutes."""
    t = sorted(set(starts))
    d = sorted(float(b - a) for a, b in zip(t, t[1:]) if b - a >= 1000)   # within a second: one burst
    if len(d) < 3:
        return 0.0, {}
    s = sorted(float(x) for x in sizes)
    mid = _quantile(d, 0.5)
    madm = _quantile(sorted(abs(x - mid) for x in d), 0.5)
    smid = _quantile(s, 0.5)
    smadm = _quantile(sorted(abs(x - smid) for x in s), 0.5)
    parts = [1 - abs(bowley(d, 0.1 * mid)), max(0.0, 1 - madm / mid) if mid > 0 else 0.0,
             1 - abs(bowley(s, 32.0)), max(0.0, 1 - smadm / 128)]
    return sum(parts) / 4, {"connections": len(t), "medianIntervalS": round(mid / 1000, 2),
                            "intervalMadS": round(madm / 1000, 2), "medianBytes": smid,
                            "bytesMad": smadm, "spanMs": int(t[-1] - t[0]),
                            "scores": [round(p, 3) for p in parts]}


# -------------------------------------------------------------------------------------------------
# One actor

@dataclass
class Pair:
    """What an inside host sent to one outside address: a space-saving weight, when it was first seen,
    connection times and sizes (the last :data:`BEACON_RING`), bytes per 30 minutes (``ten``: the current
    bucket, ``ten_last`` the one before) and per hour (the last 12)."""

    weight: float = 0.0
    first: int = 0
    starts: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    ten_start: int = -1
    ten: float = 0.0
    ten_last: float = 0.0
    hours: list[float] = field(default_factory=lambda: [0.0] * 12)
    hour_start: int = -1
    dport: int = 0
    proto: int = 0
    new: bool = False         #: the host had not talked to this address on an earlier day
    conns: int = 0            #: connections seen
    judged: int = -1          #: capture time its regularity was last judged
    verdict: list = field(default_factory=list)   #: [score, evidence] of that judgement, if a beacon
    #: the current run of uploading: [first time, last time, bytes, largest record's bytes, records]; records
    #: at most :data:`STEADY_GAP` apart continue it
    run: list = field(default_factory=lambda: [-1, -1, 0.0, 0.0, 0])
    #: connections followed for their length: source port -> [first time, last time, bytes] (at most
    #: :data:`OPEN_CONNS`, the shortest-lived goes first)
    open: dict = field(default_factory=dict)
    flagged: int = -1         #: capture time of its last exfiltration finding

    def to_json(self) -> list:
        return [self.weight, self.first, self.starts, self.sizes, self.ten_start, self.ten, self.ten_last,
                self.hours, self.hour_start, self.dport, self.proto, self.new, self.conns, self.judged,
                self.verdict, self.run, self.open, self.flagged]

    @classmethod
    def from_json(cls, j: list) -> Pair:
        return cls(*j)

    def add(self, t: int, last: int, nbytes: int, new_conn: bool, sport: int) -> None:
        run = self.run
        if run[1] < 0 or t - run[1] > STEADY_GAP:
            run[:] = [t, max(t, last), 0.0, 0.0, 0]
        run[1] = max(run[1], last, t)
        run[2] += nbytes
        run[3] = max(run[3], nbytes)
        run[4] += 1
        self._follow(str(sport), t, last, nbytes)
        start = t - t % BURST
        if start > self.ten_start:
            self.ten_last = self.ten if start == self.ten_start + BURST else 0.0
            self.ten_start, self.ten = start, 0.0
        self.ten += nbytes
        h = t - t % HOUR
        if h > self.hour_start:
            shift = 12 if self.hour_start < 0 else min(12, (h - self.hour_start) // HOUR)
            self.hours = self.hours[shift:] + [0.0] * shift
            self.hour_start = h
        self.hours[-1] += nbytes
        if new_conn:
            self.conns += 1
            self.starts.append(t)
            self.sizes.append(nbytes)
            del self.starts[:-BEACON_RING], self.sizes[:-BEACON_RING]

    def _follow(self, sport: str, t: int, last: int, nbytes: int) -> None:
        """A record of the connection from ``sport``: it continues the one followed if it starts within
        :data:`LONG_GAP` of that one's last record."""
        c = self.open.get(sport)
        if c is not None and t - c[1] <= LONG_GAP:
            c[1], c[2] = max(c[1], last), c[2] + nbytes
            return
        if c is None and len(self.open) >= OPEN_CONNS:
            # the dead go first, then the shortest-lived: a connection open for hours is kept
            gone = min(self.open, key=lambda k: (t - self.open[k][1] <= LONG_GAP, self.open[k][1] - self.open[k][0]))
            del self.open[gone]
        self.open[sport] = [t, max(t, last), float(nbytes)]

    def longest(self, t: int) -> tuple[str, list] | None:
        """The connection followed longest that is still open at ``t`` (its source port and [first, last,
        bytes]), if any."""
        live = [(k, c) for k, c in self.open.items() if t - c[1] <= LONG_GAP]
        return max(live, key=lambda kc: kc[1][1] - kc[1][0]) if live else None

    def ten_estimate(self, t: int) -> float:
        return self.ten + self.ten_last * max(0.0, 1.0 - (t - self.ten_start) / BURST)


class Actor:
    """Everything the detectors keep of one actor (a sensor's source address): see the module docstring."""

    def __init__(self, sensor: str, src: str, inside: bool) -> None:
        self.sensor, self.src, self.inside = sensor, src, inside
        self.hscan = [Horizon(FAST, True), Horizon(HOUR, True)]
        self.vscan = [Horizon(FAST, True), Horizon(HOUR, True)]
        self.brute = [Horizon(TEN, False), Horizon(HOUR, False)]
        self.dns = Horizon(TEN, False)
        self.dns_usual = History()
        self.resolvers: dict[str, int] = {}     #: DNS flows per resolver in the DNS horizon's bucket
        self.resolvers_start = -1
        self.pairs: dict[str, Pair] = {}
        self.pair_usual = History()          #: the largest bytes to one address per 30 minutes
        self.known = Seen()
        self.habits: dict[str, list[int]] = {}
        self.decay_hour = -1                 #: pair weights halve every hour of capture time
        self.last_ms = 0
        self.seen: list[str] = []            #: the last messages applied (a repeat after a crash is skipped)
        self.reported: dict[str, int] = {}   #: (type|entity) -> the last window a finding was made in

    # -- observing
    def observe(self, cfg: EntityConfig, w_ms: int, rows: list[list]) -> list[Finding]:
        """One window's records of this actor (rows of :data:`OBS_FIELDS`, any order): what its detectors
        find, for window ``w_ms``."""
        if not rows:
            return []
        t_end = max(r[6] for r in rows)
        self.last_ms = max(self.last_ms, t_end)
        for hz in (*self.hscan, *self.vscan, *self.brute, self.dns):
            hz.roll(t_end)
        self.dns_usual.roll(t_end, TEN)
        self.pair_usual.roll(t_end, BURST)
        scans = [r for r in rows if is_attempt(r[1], r[3], r[4], r[8])
                 or (r[1] == UDP and r[4] <= 2 and not TRACEROUTE[0] <= r[3] <= TRACEROUTE[1])]
        touched: dict[str, set[str]] = {"horizontal-scan": set(), "vertical-scan": set(), "brute-force": set()}
        if scans:
            # 63-bit hashes, the same in every process: the flowId's hash (app/records.py)
            hs = flow_ids([f"{r[0]}|{r[1]}|{r[3]}" for r in scans] + [str(r[0]) for r in scans])
            n = len(scans)
            for i, r in enumerate(scans):
                dst, proto, dport = r[0], r[1], r[3]
                port = port_name(dport, proto) if proto in (TCP, UDP) else ("icmp" if proto == ICMP else "icmp6")
                if proto != UDP:
                    touched["horizontal-scan"].add(port)
                    for hz in self.hscan:
                        hz.add(port, hs[n + i], str(dst))
                if proto in (TCP, UDP):
                    touched["vertical-scan"].add(str(dst))
                    for hz in self.vscan:
                        hz.add(str(dst), hs[i], port)
        touched_pairs: set[str] = set()
        dns_found = False
        for r in rows:
            dst, proto, sport, dport, packets, nbytes, first, last, flags, dst_inside = r
            if proto == TCP and dport in AUTH_PORTS and flags & SYN and packets <= 60:
                touched["brute-force"].add(f"{dst} {dport}")
                for hz in self.brute:
                    hz.count(f"{dst} {dport}", 1)
            if dport == 53 and proto in (TCP, UDP):
                self.dns.count("packets", packets)
                self.dns.count("bytes", nbytes)
                self.dns.count("flows", 1)
                self.dns_usual.value += packets
                if self.resolvers_start != self.dns.start:
                    self.resolvers, self.resolvers_start = {}, self.dns.start
                if len(self.resolvers) < 16 or str(dst) in self.resolvers:
                    self.resolvers[str(dst)] = self.resolvers.get(str(dst), 0) + 1
                dns_found = True
            if self.inside and not dst_inside and initiates(proto, sport, dport, flags):
                self._pair(str(dst), first, last, nbytes, proto, sport, dport, flags)
                touched_pairs.add(str(dst))
        found = self._scans(cfg, w_ms, t_end, touched) + self._brute(cfg, w_ms, t_end, touched["brute-force"])
        if dns_found and self.inside:
            found += self._dns(cfg, w_ms, t_end)
        for dst in touched_pairs:
            if dst in self.pairs:
                found += self._pair_findings(cfg, w_ms, t_end, dst)
        fresh = []
        for f in found:          # one finding per (type, entity) and window, however many messages bring it
            key = f"{f.type}|{f.entity}"
            if self.reported.get(key, -1) < w_ms:
                self.reported[key] = w_ms
                fresh.append(self._habit(f))
        for key in [k for k, t in self.reported.items() if t < w_ms - HOUR]:
            del self.reported[key]
        return fresh

    def _pair(self, dst: str, t: int, last: int, nbytes: int, proto: int, sport: int, dport: int,
              flags: int) -> None:
        p = self.pairs.get(dst)
        if p is None:
            floor = 0.0
            if len(self.pairs) >= MAX_PAIRS:   # space-saving: the lightest quarter goes, its weight stays
                light = sorted(self.pairs, key=lambda k: self.pairs[k].weight)[:MAX_PAIRS // 4]
                floor = self.pairs[light[-1]].weight
                for k in light:
                    del self.pairs[k]
            p = self.pairs[dst] = Pair(weight=floor, first=t, dport=dport, proto=proto,
                                       new=not self.known.known(dst, t))
        hour = t // HOUR
        if hour > self.decay_hour:                       # old weight fades, hour by hour
            if self.decay_hour >= 0:
                fade = 0.5 ** min(hour - self.decay_hour, 30)
                for q in self.pairs.values():
                    q.weight *= fade
            self.decay_hour = hour
        p.weight += 1 + nbytes / 1e6
        new_conn = proto != TCP or bool(flags & SYN)
        periodic = proto in (TCP, UDP) and dport in PERIODIC_BY_DESIGN
        p.add(t, last, nbytes, new_conn and not periodic, sport)
        self.pair_usual.value = max(self.pair_usual.value, p.ten)
        if nbytes and sum(p.hours) >= 1e6:
            self.known.uploaded(dst, t)

    # -- detectors
    def _factor(self, cfg: EntityConfig) -> float:
        return 1.0 if self.inside else cfg.outside_factor

    def _scans(self, cfg: EntityConfig, w: int, t: int, touched: dict[str, set[str]]) -> list[Finding]:
        """At most one finding per class: the actor is what is about, its strongest key (a port of a horizontal
        scan, a target of a vertical one) leads the title, the others follow in the evidence."""
        out = []
        k = self._factor(cfg)
        for kind, hzs, limits in (("horizontal-scan", self.hscan, (cfg.hscan_fast, cfg.hscan_slow)),
                                  ("vertical-scan", self.vscan, (cfg.vscan_fast, cfg.vscan_slow))):
            hits = []
            for key in touched[kind]:
                ests = [hz.estimate(key, t) for hz in hzs]
                score = max(e / (lim * k) for e, lim in zip(ests, limits))
                if score >= 1:
                    hits.append((score, key, ests))
            if not hits:
                continue
            hits.sort(key=lambda h: (-h[0], h[1]))
            score, key, ests = hits[0]
            cur = hzs[1].cur.get(key) or hzs[0].cur.get(key)
            examples = cur.examples if cur is not None else []
            n = max(ests)
            span = "5 min" if ests[0] / limits[0] >= ests[1] / limits[1] else "1 h"
            more = [{"key": h[1], "count": round(max(h[2]))} for h in hits[1:6]]
            if kind == "horizontal-scan":
                title = f"horizontal scan of {n:,.0f} hosts on {key} from {self.src}"
                ev = {"hosts": round(n), "port": key, "exampleHosts": examples, "otherPorts": more}
            else:
                title = f"vertical scan of {n:,.0f} ports of {key} from {self.src}"
                ev = {"ports": round(n), "target": key, "examplePorts": examples, "otherTargets": more}
            if len(hits) > 1:
                title += f" (and {len(hits) - 1} more {'ports' if kind == 'horizontal-scan' else 'hosts'})"
            ev.update({"within": span, "last5min": round(ests[0]), "lastHour": round(ests[1])})
            out.append(Finding(kind, self.src, w, score, limits[0] * k, title, ev))
        return out

    def _brute(self, cfg: EntityConfig, w: int, t: int, touched: set[str]) -> list[Finding]:
        out = []
        for key in sorted(touched):
            ten, hour = (hz.estimate(key, t) for hz in self.brute)
            score = max(ten / cfg.brute_fast, hour / cfg.brute_slow)
            if score < 1:
                continue
            dst, port = key.rsplit(" ", 1)
            name = port_name(int(port), TCP)
            within = "10 min" if ten / cfg.brute_fast >= hour / cfg.brute_slow else "1 h"
            out.append(Finding("brute-force", f"{self.src} > {dst} {name}", w, score, cfg.brute_fast,
                               f"brute force: {max(ten, hour):,.0f} short connections to {dst} on {name} "
                               f"from {self.src} within {within}",
                               {"target": dst, "port": name, "last10min": round(ten), "lastHour": round(hour)}))
        return out

    def _dns(self, cfg: EntityConfig, w: int, t: int) -> list[Finding]:
        packets = self.dns.estimate("packets", t)
        nbytes = self.dns.estimate("bytes", t)
        usual = self.dns_usual.high() if self.dns_usual.n >= 6 * 24 else 0.0   # after a day
        need = max(cfg.dns_packets, cfg.dns_factor * usual)
        if packets < need or nbytes < cfg.dns_packet_bytes * packets:
            return []
        resolvers = self.resolvers
        flows = self.dns.estimate("flows", t)
        return [Finding("dns-tunnel", f"{self.src} dns", w, packets / need, need,
                        f"DNS tunnel? {packets:,.0f} DNS packets of {nbytes / max(packets, 1):,.0f} bytes from "
                        f"{self.src} to {len(resolvers)} resolver{'s' if len(resolvers) != 1 else ''} in 10 min "
                        f"(usually at most {usual:,.0f})",
                        {"packets": round(packets), "flows": round(flows), "bytes": round(nbytes),
                         "bytesPerPacket": round(nbytes / max(packets, 1), 1), "usualHigh": round(usual, 1),
                         "resolvers": dict(sorted(resolvers.items(), key=lambda kv: -kv[1])[:5])})]

    def _pair_findings(self, cfg: EntityConfig, w: int, t: int, dst: str) -> list[Finding]:
        p = self.pairs[dst]
        out = []
        what = f"{self.src} > {dst}"
        svc = port_name(p.dport, p.proto) if p.proto in (TCP, UDP) else str(p.proto)
        # bursts of bytes to one address, against the host's usual largest per address
        burst = p.ten_estimate(t)
        usual = self.pair_usual.high() if self.pair_usual.n >= 2 * 24 else 0.0  # after a day
        fresh = p.new and t - p.first < cfg.new_ms
        need = max(cfg.exfil_bytes if fresh else cfg.exfil_known_bytes, cfg.exfil_factor * usual)
        new = "a new address " if fresh else ""
        if burst >= need:
            out.append(Finding("exfiltration", what, w, burst / need, need,
                               f"exfiltration? {_fmt_bytes(burst)} from {self.src} to {new}{dst} ({svc}) in 30 min "
                               f"(usually at most {_fmt_bytes(usual)} to one address)",
                               {"bytes30min": round(burst), "usualHigh": round(usual), "service": svc,
                                "newAddress": fresh, "firstSeenMs": p.first,
                                "bytesPerHour": [round(b) for b in p.hours]}))
        # slow: a steady run of uploading to a new address (minutes), or bytes over hours spread over the hours
        # (not one burst)
        total = sum(p.hours)
        hours = sum(1 for b in p.hours if b > 0)
        r_first, r_last, r_bytes, r_max, r_records = p.run
        r_ms = r_last - r_first
        steady = (r_bytes / cfg.steady_bytes if r_ms >= cfg.steady_span_ms and r_records >= 3
                  and r_max <= cfg.steady_share * r_bytes and r_bytes * HOUR >= cfg.steady_rate * r_ms else 0.0)
        spread = (total / cfg.slow_bytes if hours >= 3 and max(p.hours) <= cfg.slow_spread * total else 0.0)
        if fresh and burst < need and max(steady, spread) >= 1:
            ev = {"bytes12h": round(total), "service": svc, "firstSeenMs": p.first,
                  "bytesPerHour": [round(b) for b in p.hours], "runBytes": round(r_bytes),
                  "runMs": r_last - r_first, "runRecords": r_records}
            if steady >= spread:
                title = (f"slow exfiltration? a steady upload of {_fmt_bytes(r_bytes)} from {self.src} to a new "
                         f"address {dst} ({svc}) over {_dur(r_last - r_first)}")
                out.append(Finding("slow-exfiltration", what, w, steady, cfg.steady_bytes, title, ev))
            else:
                out.append(Finding("slow-exfiltration", what, w, spread, cfg.slow_bytes,
                                   f"slow exfiltration? {_fmt_bytes(total)} from {self.src} to a new address {dst} "
                                   f"({svc}) over {hours} h", ev))
        if out:
            p.flagged = t
        # a long connection to an address the host had not talked to before it opened (RITA's long
        # connections), unless the bytes it carries were found above
        # (a pair younger than a long connection cannot have one: its connections began after it did)
        conn = p.longest(t) if t - p.flagged > DAY_MS and t - p.first >= cfg.long_ms - LONG_GAP else None
        if conn is not None:
            sport, (c_first, c_last, c_bytes) = conn
            open_ms = c_last - c_first
            if open_ms >= cfg.long_ms and p.first >= c_first - LONG_GAP:
                out.append(Finding("long-connection", what, w, open_ms / cfg.long_ms, cfg.long_ms,
                                   f"long connection from {self.src}:{sport} to {dst} ({svc}), new to the host, open "
                                   f"for {_dur(open_ms)} with {_fmt_bytes(c_bytes)} sent",
                                   {"openMs": open_ms, "firstMs": c_first, "lastMs": c_last,
                                    "bytesSent": round(c_bytes), "sourcePort": int(sport), "service": svc,
                                    "firstSeenMs": p.first}))
        # beacons: regular connections, judged at most every 5 minutes of capture time
        if len(p.starts) >= cfg.beacon_min and max(p.starts) - min(p.starts) >= cfg.beacon_span_ms:
            if t - p.judged >= FAST:
                p.judged = t
                score, ev = beacon_score(p.starts, p.sizes)
                # once a beacon, it stays one while its score holds near the threshold (no flapping)
                bar = cfg.beacon_score - (0.1 if p.verdict else 0.0)
                p.verdict = [score, ev] if score >= bar and ev else []
            if p.verdict:
                score, ev = p.verdict
                out.append(Finding("beacon", what, w, max(score / cfg.beacon_score, 1.0), cfg.beacon_score,
                                   f"beacon from {self.src} to {dst} ({svc}): a connection every "
                                   f"{ev['medianIntervalS']:,.0f} s (±{ev['intervalMadS']:,.1f} s) of about "
                                   f"{ev['medianBytes']:,.0f} bytes, {ev['connections']} seen over "
                                   f"{_dur(ev['spanMs'])}",
                                   {**ev, "service": svc, "intervalsS": [round((b - a) / 1000, 1) for a, b in
                                                                         zip(p.starts[-16:], p.starts[-15:])]}))
        return out

    def _habit(self, f: Finding) -> Finding:
        """Remember the day a (type, entity) fired; one that fired on ``habit_days`` earlier days of the last
        week is habitual."""
        key = f"{f.type}|{f.entity}"
        day = f.t_ms // DAY_MS
        days = [d for d in self.habits.get(key, []) if day - 7 <= d]
        earlier = [d for d in days if d < day]
        if day not in days:
            days.append(day)
        self.habits[key] = days[-4:]
        if len(self.habits) > MAX_HABITS:
            oldest = min(self.habits, key=lambda k: self.habits[k][-1])
            del self.habits[oldest]
        return f._replace(habitual=True) if len(earlier) >= 2 else f

    # -- state
    def to_json(self) -> dict:
        return {"s": self.sensor, "a": self.src, "in": self.inside, "t": self.last_ms,
                "h": [hz.to_json() for hz in self.hscan], "v": [hz.to_json() for hz in self.vscan],
                "b": [hz.to_json() for hz in self.brute], "d": self.dns.to_json(), "du": self.dns_usual.to_json(),
                "p": {k: p.to_json() for k, p in self.pairs.items()}, "pu": self.pair_usual.to_json(),
                "k": self.known.to_json(),
                "hab": self.habits, "r": [self.resolvers_start, self.resolvers], "dh": self.decay_hour,
                "seen": self.seen, "rep": self.reported}

    @classmethod
    def from_json(cls, j: dict) -> Actor:
        a = cls(j["s"], j["a"], j["in"])
        a.last_ms = j["t"]
        for hz, hj in zip((*a.hscan, *a.vscan, *a.brute), (*j["h"], *j["v"], *j["b"])):
            hz.load(hj)
        a.dns.load(j["d"])
        a.dns_usual = History.from_json(j["du"])
        a.pairs = {k: Pair.from_json(v) for k, v in j["p"].items()}
        a.pair_usual = History.from_json(j["pu"])
        a.known = Seen.from_json(j["k"])
        a.habits = j["hab"]
        a.resolvers_start, a.resolvers = j["r"]
        a.decay_hour, a.seen, a.reported = j["dh"], j["seen"], j["rep"]
        return a

    def first_time(self, mark: str) -> bool:
        """Whether a message (``mark``: its window, origin partition and part) is new to this actor; remembers
        it. The flows agent may send a window's records again after a crash: they are counted once."""
        if mark in self.seen:
            return False
        self.seen.append(mark)
        del self.seen[:-128]
        return True


def finding_record(sensor: str, f: Finding, window_ms: int) -> dict:
    """A finding as the entities agent sends it to attention control."""
    return {"sensor": sensor, "type": f.type, "entity": f.entity, "windowStartMs": f.t_ms,
            "windowLengthMs": window_ms, "score": round(f.score, 4), "threshold": f.threshold, "title": f.title,
            "evidence": f.evidence, "habitual": f.habitual}
