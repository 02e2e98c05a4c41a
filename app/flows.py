"""Flow aggregation: decoded packets to per-(window, flow key) partial flows, and their merging.

Pure code (no Faust). A flow is unidirectional (NetFlow semantics): its key is
(sensor, source address, destination address, protocol, source port,
destination port, outer VLAN id, ToS). Windows are tumbling windows of capture
time: ``window_start_ms = ts_ms - ts_ms % window_ms``; a window length of 0 puts
the whole capture in one window starting at 0.

A partial flow (a *part*) is the list
``[window_start_ms, key, packets, bytes, first_ms, last_ms, tcp_flags]``; parts of
the same (window, key) merge by adding counts, taking min/max of the times and
OR-ing the flags, in any order.
"""
from __future__ import annotations

import hashlib
import socket
import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from app.aggregate import group
from app.decode import OK, Packets

#: Separates the fields of a flow key string.
SEP = "|"
#: ``[window_start_ms, key, packets, bytes, first_ms, last_ms, tcp_flags]``
Part = list


@dataclass
class Aggregate:
    """Flows as columns: one entry per (window, flow key), in first-seen order."""

    w: np.ndarray        #: window start, ms
    ver: np.ndarray
    src: np.ndarray      #: (m, 16)
    dst: np.ndarray      #: (m, 16)
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    vlan: np.ndarray
    tos: np.ndarray
    packets: np.ndarray
    nbytes: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    flags: np.ndarray

    KEY = ("w", "ver", "src", "dst", "proto", "sport", "dport", "vlan", "tos")
    SUMS = ("packets", "nbytes", "first_ms", "last_ms", "flags")

    def __len__(self) -> int:
        return len(self.w)


def _grouped(cols: dict[str, np.ndarray], sel: np.ndarray) -> Aggregate:
    rep, p, b, f, last, fl = group(sel, *(cols[k] for k in Aggregate.KEY), *(cols[k] for k in Aggregate.SUMS))
    return Aggregate(*(cols[k][rep] for k in Aggregate.KEY), p, b, f, last, fl)


def aggregate_arrays(pk: Packets, window_ms: int) -> Aggregate:
    """Sum packets per (window, flow key), as columns."""
    ts_ms = pk.ts_ns // 1_000_000
    cols = {"w": ts_ms - ts_ms % window_ms if window_ms > 0 else np.zeros_like(ts_ms), "ver": pk.ver,
            "src": pk.src, "dst": pk.dst, "proto": pk.proto, "sport": pk.sport, "dport": pk.dport, "vlan": pk.vlan,
            "tos": pk.tos, "packets": np.ones(len(ts_ms), np.int64), "nbytes": pk.nbytes, "first_ms": ts_ms,
            "last_ms": ts_ms, "flags": pk.flags}
    return _grouped(cols, np.nonzero(pk.status == OK)[0])


def combine(aggs: list[Aggregate]) -> Aggregate:
    """Merge aggregates of several chunks into one (sums, min/max times, OR of flags)."""
    if len(aggs) == 1:
        return aggs[0]
    cols = {k: np.concatenate([getattr(a, k) for a in aggs]) for k in Aggregate.KEY + Aggregate.SUMS}
    return _grouped(cols, np.arange(len(cols["w"])))


def rows(agg: Aggregate):
    """``(window_start_ms, (ver, src, dst, proto, sport, dport, vlan, tos), packets, bytes, first_ms, last_ms,
    flags)`` per flow; addresses are packed bytes (4 or 16)."""
    cols = [agg.w.tolist(), agg.ver.tolist(), [bytes(r) for r in agg.src], [bytes(r) for r in agg.dst],
            agg.proto.tolist(), agg.sport.tolist(), agg.dport.tolist(), agg.vlan.tolist(), agg.tos.tolist()]
    nums = [agg.packets.tolist(), agg.nbytes.tolist(), agg.first_ms.tolist(), agg.last_ms.tolist(),
            agg.flags.tolist()]
    for w, ver, src, dst, proto, sport, dport, vlan, tos, p, b, f, last, fl in zip(*cols, *nums):
        n = 4 if ver == 4 else 16
        yield w, (ver, src[:n], dst[:n], proto, sport, dport, vlan, tos), p, b, f, last, fl


def aggregate(pk: Packets, window_ms: int) -> list[tuple[int, tuple, int, int, int, int, int]]:
    """Sum packets per (window, flow key); see :func:`rows` for the tuple shape."""
    return list(rows(aggregate_arrays(pk, window_ms)))


def key_string(sensor: str, key: tuple) -> str:
    """``sensor|src|dst|proto|sport|dport|vlan|tos`` with addresses in text form."""
    ver, src, dst, proto, sport, dport, vlan, tos = key
    fam = socket.AF_INET if ver == 4 else socket.AF_INET6
    return SEP.join((sensor, socket.inet_ntop(fam, src), socket.inet_ntop(fam, dst), str(proto), str(sport),
                     str(dport), str(vlan), str(tos)))


def parts(sensor: str, pk: Packets, window_ms: int) -> list[Part]:
    """Partial flows of one decoded chunk, as wire-ready lists."""
    return [[w, key_string(sensor, key), p, b, f, last, fl] for w, key, p, b, f, last, fl in aggregate(pk, window_ms)]


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a flow key (the same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions


def split_by_partition(items: Iterable[Part], partitions: int) -> dict[int, list[Part]]:
    out: dict[int, list[Part]] = {}
    for part in items:
        out.setdefault(partition_for(part[1], partitions), []).append(part)
    return out


def merge(row: list[int] | None, part: Part) -> list[int]:
    """Merge a part's counts into ``[packets, bytes, first_ms, last_ms, flags]``."""
    _, _, p, b, f, last, fl = part
    if row is None:
        return [p, b, f, last, fl]
    return [row[0] + p, row[1] + b, min(row[2], f), max(row[3], last), row[4] | fl]


def flow_id(*fields: object) -> int:
    """A deterministic unsigned 63-bit id: the same inputs give the same id in any process."""
    h = hashlib.blake2b(SEP.join(map(str, fields)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


#: IPFIX flowEndReason values used here (RFC 5102).
END_ACTIVE_TIMEOUT = 2   # the capture-time window ended
END_FORCED = 4           # flushed: the capture went idle (end of capture)


def record(window_ms: int, key: str, counts: list[int], window_len_ms: int, *, end_reason: int,
           late: bool = False, blocks: Iterable[str] = (), fid: int | None = None) -> dict:
    """One flow record with IPFIX information element names (DESIGN.md, record formats)."""
    sensor, src, dst, proto, sport, dport, vlan, tos = key.split(SEP)
    v6 = ":" in src
    packets, nbytes, first, last, flags = counts
    rec = {
        "sourceIPv6Address" if v6 else "sourceIPv4Address": src,
        "destinationIPv6Address" if v6 else "destinationIPv4Address": dst,
        "sourceTransportPort": int(sport),
        "destinationTransportPort": int(dport),
        "protocolIdentifier": int(proto),
        "ipClassOfService": int(tos),
        "vlanId": int(vlan),
        "flowStartMilliseconds": first,
        "flowEndMilliseconds": last,
        "packetDeltaCount": packets,
        "octetDeltaCount": nbytes,
        "tcpControlBits": flags,
        "flowEndReason": end_reason,
        "flowId": fid if fid is not None else flow_id(window_ms, key),
        "flowsight": {"sensor": sensor, "window": window_ms, "windowLengthMs": window_len_ms, "late": late,
                      "blockIds": sorted(blocks)},
    }
    return rec


def record_key(rec: dict) -> tuple:
    """The flow key of a record: (sensor, src, dst, proto, sport, dport, vlan, tos)."""
    src = rec.get("sourceIPv4Address") or rec.get("sourceIPv6Address")
    dst = rec.get("destinationIPv4Address") or rec.get("destinationIPv6Address")
    return (rec["flowsight"]["sensor"], src, dst, rec["protocolIdentifier"], rec["sourceTransportPort"],
            rec["destinationTransportPort"], rec["vlanId"], rec["ipClassOfService"])
