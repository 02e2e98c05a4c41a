"""Aggregates of flow records, as ``nfdump -s`` gives them: the top N by an element, and traffic over time.
Also the time range of a query. Pure code.

>>> top = Top("dstport")
>>> for port, n in ((22, 3), (443, 10), (22, 4)):
...     top.add({"destinationTransportPort": port, "protocolIdentifier": 6, "packetDeltaCount": n,
...              "octetDeltaCount": 100 * n})
>>> [(row["key"], row["packets"]) for row in top.result(10, "packets")]
[('443/tcp', 10), ('22/tcp', 7)]
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, UTC

import numpy as np

from app.query.filter import Columns, FilterError, TextColumns, Irregular, compile_filter, prefilter, vector
from app.records import port_name, proto_name

METRICS = ("flows", "packets", "bytes")


def _src(r: dict) -> str:
    return r.get("sourceIPv4Address") or r.get("sourceIPv6Address") or ""


def _dst(r: dict) -> str:
    return r.get("destinationIPv4Address") or r.get("destinationIPv6Address") or ""


def _port(field: str) -> Callable[[dict], str]:
    return lambda r: port_name(r[field], r["protocolIdentifier"])


#: What a top-N list can be by: the element of a record it counts (``ip`` and ``port`` count both sides, as
#: nfdump's ``-s ip`` does).
BY: dict[str, Callable[[dict], list[str]]] = {
    "srcip": lambda r: [_src(r)],
    "dstip": lambda r: [_dst(r)],
    "ip": lambda r: [_src(r), _dst(r)] if _src(r) != _dst(r) else [_src(r)],
    "srcport": lambda r: [_port("sourceTransportPort")(r)],
    "dstport": lambda r: [_port("destinationTransportPort")(r)],
    "port": lambda r: list(dict.fromkeys([_port("sourceTransportPort")(r), _port("destinationTransportPort")(r)])),
    "proto": lambda r: [proto_name(r["protocolIdentifier"])],
    "pair": lambda r: [f"{_src(r)} -> {_dst(r)}"],
    "sensor": lambda r: [r["flowsight"]["sensor"]],
}


#: The same from a message's columns (app.records.COLUMNS): the columns of each side's key.
_COLUMN_KEYS: dict[str, list[list[str]]] = {
    "srcip": [["fam", "srchi", "srclo"]], "dstip": [["fam", "dsthi", "dstlo"]],
    "ip": [["fam", "srchi", "srclo"], ["fam", "dsthi", "dstlo"]],
    "srcport": [["sport", "proto"]], "dstport": [["dport", "proto"]], "port": [["sport", "proto"], ["dport", "proto"]],
    "proto": [["proto"]], "pair": [["fam", "srchi", "srclo", "dsthi", "dstlo"]], "sensor": [[]],
}


def _address(fam: int, hi: int, lo: int) -> str:
    """An address's text from its columns, as the records write it (``inet_ntop``)."""
    if fam == 6:
        return socket.inet_ntop(socket.AF_INET6, (hi << 64 | lo).to_bytes(16))
    return socket.inet_ntop(socket.AF_INET, lo.to_bytes(4)) if fam == 4 else ""


def _key_text(by: str, k: tuple) -> str:
    if by in ("srcip", "dstip", "ip"):
        return _address(*k)
    if by in ("srcport", "dstport", "port"):
        return port_name(*k)
    if by == "proto":
        return proto_name(k[0])
    if by == "pair":
        return f"{_address(k[0], k[1], k[2])} -> {_address(k[0], k[3], k[4])}"
    return k[0]


def _tally(sums: dict, key, f: int, p: int, b: int) -> None:
    """Flows, packets and bytes added to a key's sums."""
    s = sums.get(key)
    if s is None:
        sums[key] = [f, p, b]
    else:
        s[0] += f
        s[1] += p
        s[2] += b


def _sum_by(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per group number."""
    out = np.zeros(n, np.int64)
    np.add.at(out, groups, values)
    return out


def _grouped(keys: np.ndarray, counts: list[np.ndarray]) -> tuple[list, list[list[int]]]:
    """The distinct rows of ``keys`` and, for each, the number of its rows and the sum of each of ``counts``
    (exact integers)."""
    uniq, inv, n = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    sums = [np.add.reduceat(c[order], starts).tolist() for c in counts]
    return uniq.tolist(), [n.tolist(), *sums]


class Top:
    """Flows, packets and bytes per value of one element (``by``: a key of :data:`BY`), from records
    (:meth:`add`) or from a message's columns (:meth:`add_columns`) alike."""

    #: rows of packed keys pushed before they are grouped (memory: 32 bytes a row)
    COMPACT_ROWS = 1 << 20

    def __init__(self, by: str):
        if by not in BY:
            raise ValueError(f"by={by!r}: expected one of {', '.join(BY)}")
        self.by, self.key = by, BY[by]
        self.sums: dict[str, list[int]] = {}
        self._col_sums: dict[tuple, list[int]] = {}     # by the columns' key, made text by result()
        self._packed: list[tuple[np.ndarray, ...]] = []  # keys packed in one number: (keys, flows, packets, bytes)
        self._packed_rows = 0
        self.records = 0

    def add_columns(self, c: Columns, keep: np.ndarray) -> None:
        """The records of a message that ``keep`` says, from its columns."""
        a = c.cols[np.flatnonzero(keep)]
        if not len(a):
            return
        self.records += len(a)
        p, b = a["packets"].astype(np.int64), a["bytes"].astype(np.int64)
        sides = _COLUMN_KEYS[self.by]
        for k, names in enumerate(sides):
            if not names:     # the sensor: one for the whole message
                self._merge([(c.sensor()[0],)], [[len(a)], [int(p.sum())], [int(b.sum())]])
                continue
            rows = np.stack([a[n].astype(np.uint64) for n in names], axis=1)
            if k:             # the other side, where it is not the same as the first (``ip``, ``port``)
                first = np.stack([a[n].astype(np.uint64) for n in sides[0]], axis=1)
                other = np.flatnonzero((rows != first).any(axis=1))
                rows, pk, bk = rows[other], p[other], b[other]
            else:
                pk, bk = p, b
            # most keys fit one 64-bit number (IPv4 addresses and pairs, ports, protocols): grouped with the
            # message's others in numpy, many messages at once; the rest (IPv6) by a row of numbers each
            if names[0] == "fam":
                v4 = rows[:, 0] == 4
                packed = rows[v4, 2] if len(names) == 3 else rows[v4, 2] << np.uint64(32) | rows[v4, 4]
                self._push(packed, pk[v4], bk[v4])
                rows, pk, bk = rows[~v4], pk[~v4], bk[~v4]
            else:
                self._push(rows[:, 0] << np.uint64(8) | rows[:, 1] if len(names) == 2 else rows[:, 0], pk, bk)
                rows = rows[:0]
            if len(rows):
                keys = np.ascontiguousarray(rows).view([("", np.uint64)] * len(names)).ravel()
                uniq, sums = _grouped(keys, [pk, bk])
                self._merge(uniq, sums)

    def _push(self, keys: np.ndarray, p: np.ndarray, b: np.ndarray) -> None:
        if len(keys):
            self._packed.append((keys, np.ones(len(keys), np.int64), p, b))
            self._packed_rows += len(keys)
            if self._packed_rows >= self.COMPACT_ROWS:
                self._compact()

    def _compact(self) -> None:
        """The packed keys so far, grouped into one chunk of one distinct key a row."""
        if self._packed_rows:
            keys = np.concatenate([c[0] for c in self._packed])
            uniq, inv = np.unique(keys, return_inverse=True)
            self._packed = [(uniq, *(_sum_by(inv, np.concatenate([c[k] for c in self._packed]), len(uniq))
                                     for k in (1, 2, 3)))]
        self._packed_rows = 0     # rows pushed since the packed keys were last grouped

    def _unpacked(self, k: int) -> str:
        by = self.by
        if by in ("srcip", "dstip", "ip"):
            return _address(4, 0, k)
        if by == "pair":
            return f"{_address(4, 0, k >> 32)} -> {_address(4, 0, k & 0xFFFFFFFF)}"
        return port_name(k >> 8, k & 0xFF) if by in ("srcport", "dstport", "port") else proto_name(k)

    def _merge(self, keys: list, sums: list[list[int]]) -> None:
        for k, f, pk, bk in zip(keys, *sums):
            _tally(self._col_sums, k, f, pk, bk)

    def _text_keys(self) -> None:
        """Fold what came from columns into :attr:`sums`, by the same text keys as records give."""
        self._compact()
        for keys, fs, ps, bs in self._packed:
            for k, f, p, b in zip(keys.tolist(), fs.tolist(), ps.tolist(), bs.tolist()):
                self._col_sums[("packed", k)] = [f, p, b]
        self._packed, self._packed_rows = [], 0
        for k, (f, p, b) in self._col_sums.items():
            key = self._unpacked(k[1]) if k[0] == "packed" else \
                _key_text(self.by, tuple(int(v) for v in k) if self.by != "sensor" else k)
            _tally(self.sums, key, f, p, b)
        self._col_sums = {}

    def add(self, r: dict) -> None:
        self.records += 1
        p, b = r["packetDeltaCount"], r["octetDeltaCount"]
        for k in self.key(r):
            _tally(self.sums, k, 1, p, b)

    def result(self, n: int, metric: str = "bytes") -> list[dict]:
        """The ``n`` biggest by ``metric`` (ties by key), each with all three metrics."""
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")
        i = METRICS.index(metric)
        self._text_keys()
        rows = sorted(self.sums.items(), key=lambda kv: (-kv[1][i], kv[0]))[:n]
        return [{"key": k, "flows": s[0], "packets": s[1], "bytes": s[2]} for k, s in rows]


class Series:
    """Flows, packets and bytes per time bucket of capture time (by each record's start)."""

    def __init__(self, bucket_ms: int):
        if bucket_ms <= 0:
            raise ValueError("a bucket of at least 1 ms")
        self.bucket_ms = bucket_ms
        self.sums: dict[int, list[int]] = {}

    def add_columns(self, c: Columns, keep: np.ndarray) -> None:
        a = c.cols[np.flatnonzero(keep)]
        if not len(a):
            return
        t = a["first"].astype(np.int64)
        uniq, (f, p, b) = _grouped(t - t % self.bucket_ms, [a["packets"].astype(np.int64), a["bytes"].astype(np.int64)])
        for k, fk, pk, bk in zip(uniq, f, p, b):
            _tally(self.sums, k, fk, pk, bk)

    def add(self, r: dict) -> None:
        t = r["flowStartMilliseconds"]
        _tally(self.sums, t - t % self.bucket_ms, 1, r["packetDeltaCount"], r["octetDeltaCount"])

    def result(self) -> list[list[int]]:
        """``[bucket start ms, flows, packets, bytes]`` in time order."""
        return [[t, *s] for t, s in sorted(self.sums.items())]


class Visit:
    """What a search hands each record it keeps to (aggregates: :class:`Top`, :class:`Series`), or, for a
    message with columns, the columns and which of its records it keeps (:meth:`columns`): nothing decoded."""

    def __init__(self, *aggregates: Top | Series | None):
        self.aggregates = [a for a in aggregates if a is not None]

    def __call__(self, r: dict) -> None:
        for a in self.aggregates:
            a.add(r)

    def columns(self, c: Columns, keep: np.ndarray) -> None:
        for a in self.aggregates:
            a.add_columns(c, keep)


def parse_time(text: str, name: str = "time") -> int:
    """Milliseconds since the epoch from ``text``: whole milliseconds, or RFC 3339 / ISO 8601 (a time
    without a zone is UTC; ``2026/12/01.10:00`` as nfdump writes it is accepted too).

    >>> parse_time("1764583200000"), parse_time("2025-12-01T10:00:00Z"), parse_time("2025/12/01.10:00")
    (1764583200000, 1764583200000, 1764583200000)
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    iso = text.replace("/", "-").replace(".", "T", 1) if "/" in text else text
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected milliseconds since the epoch or a time such as "
                         "2026-12-01T10:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def overlaps(r: dict, since_ms: int | None, until_ms: int | None) -> bool:
    """Whether a record's flow overlaps ``[since, until)`` of capture time."""
    return (since_ms is None or r["flowEndMilliseconds"] >= since_ms) and \
        (until_ms is None or r["flowStartMilliseconds"] < until_ms)


@dataclass
class Query:
    """A search of the flows topic: a predicate (app/query/filter.py) and a range of capture time."""

    match: Callable[[dict], bool] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    #: the window length of the flows' Kafka record times (a batch's record time is its window's start)
    window_ms: int = 0
    #: a test of a whole message's bytes that says False only if none of its records can match
    #: (:func:`app.query.filter.prefilter`)
    maybe: Callable[[bytes], bool] | None = None

    @classmethod
    def of(cls, match: Callable[[dict], bool] | None, since_ms: int | None, until_ms: int | None,
           window_ms: int) -> Query:
        return cls(match, since_ms, until_ms, window_ms, prefilter(match) if match is not None else None)

    @classmethod
    def parse(cls, filter_text: str | None, since: str | None, until: str | None, window_ms: int) -> Query:
        """A search as people ask for it (the view's parameters, the command's options); ``ValueError``
        saying what is wrong (:class:`app.query.filter.FilterError`, with its position, for the filter)."""
        since_ms = parse_time(since, "since") if since else None
        until_ms = parse_time(until, "until") if until else None
        if since_ms is not None and until_ms is not None and until_ms <= since_ms:
            raise ValueError("until must be after since")
        try:
            match = compile_filter(filter_text) if filter_text else None
        except RecursionError:
            raise FilterError("nested too deep", 0) from None
        return cls.of(match, since_ms, until_ms, window_ms)

    def skips(self, ts_ms: int) -> bool:
        """Whether a whole batch of record time ``ts_ms`` lies outside the range, unread."""
        if self.window_ms <= 0:
            return False   # one window for a whole capture: record times say nothing
        return (self.since_ms is not None and ts_ms + self.window_ms <= self.since_ms) or \
            (self.until_ms is not None and ts_ms >= self.until_ms)

    def keeps(self, r: dict) -> bool:
        return overlaps(r, self.since_ms, self.until_ms) and (self.match is None or self.match(r))

    def mask(self, cols: Columns | TextColumns) -> np.ndarray | None:
        """Which records of a flows message :meth:`keeps`, all at once, from its columns (its header's, or
        cut out of its text: app/query/filter.py); None if the filter has no columnar form or the message
        does not line up (then each record is decoded and tested)."""
        vec = vector(self.match) if self.match is not None else None
        if vec is None and self.match is not None:
            return None
        try:
            keep = vec(cols) if vec is not None else np.ones(cols.n, dtype=bool)
            if self.since_ms is not None:
                keep &= cols.num("flowEndMilliseconds") >= self.since_ms
            if self.until_ms is not None:
                keep &= cols.num("flowStartMilliseconds") < self.until_ms
            return keep
        except Irregular:
            return None
