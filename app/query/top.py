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


class Top:
    """Flows, packets and bytes per value of one element (``by``: a key of :data:`BY`)."""

    def __init__(self, by: str):
        if by not in BY:
            raise ValueError(f"by={by!r}: expected one of {', '.join(BY)}")
        self.by, self.key = by, BY[by]
        self.sums: dict[str, list[int]] = {}
        self.records = 0

    def add(self, r: dict) -> None:
        self.records += 1
        p, b = r["packetDeltaCount"], r["octetDeltaCount"]
        for k in self.key(r):
            s = self.sums.get(k)
            if s is None:
                self.sums[k] = [1, p, b]
            else:
                s[0] += 1
                s[1] += p
                s[2] += b

    def result(self, n: int, metric: str = "bytes") -> list[dict]:
        """The ``n`` biggest by ``metric`` (ties by key), each with all three metrics."""
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")
        i = METRICS.index(metric)
        rows = sorted(self.sums.items(), key=lambda kv: (-kv[1][i], kv[0]))[:n]
        return [{"key": k, "flows": s[0], "packets": s[1], "bytes": s[2]} for k, s in rows]


class Series:
    """Flows, packets and bytes per time bucket of capture time (by each record's start)."""

    def __init__(self, bucket_ms: int):
        if bucket_ms <= 0:
            raise ValueError("a bucket of at least 1 ms")
        self.bucket_ms = bucket_ms
        self.sums: dict[int, list[int]] = {}

    def add(self, r: dict) -> None:
        t = r["flowStartMilliseconds"]
        t -= t % self.bucket_ms
        s = self.sums.get(t)
        if s is None:
            self.sums[t] = [1, r["packetDeltaCount"], r["octetDeltaCount"]]
        else:
            s[0] += 1
            s[1] += r["packetDeltaCount"]
            s[2] += r["octetDeltaCount"]

    def result(self) -> list[list[int]]:
        """``[bucket start ms, flows, packets, bytes]`` in time order."""
        return [[t, *s] for t, s in sorted(self.sums.items())]


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
