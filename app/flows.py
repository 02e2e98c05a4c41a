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

from app.decode import OK, Packets

#: Separates the fields of a flow key string.
SEP = "|"
#: ``[window_start_ms, key, packets, bytes, first_ms, last_ms, tcp_flags]``
Part = list

_KEY_DTYPE = np.dtype([("w", ">i8"), ("ver", "u1"), ("src", "V16"), ("dst", "V16"), ("proto", "u1"),
                       ("sport", ">u2"), ("dport", ">u2"), ("vlan", ">u2"), ("tos", "u1")])


@dataclass
class Aggregate:
    """Flows as columns: one entry per (window, flow key), sorted by window then key."""

    keys: np.ndarray     #: structured array of _KEY_DTYPE
    packets: np.ndarray
    nbytes: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def _group(keys: np.ndarray, packets, nbytes, first_ms, last_ms, flags) -> Aggregate:
    # big-endian fields make the bytes sort like the numbers; np.concatenate turns them native
    keys = np.ascontiguousarray(keys.astype(_KEY_DTYPE, copy=False))
    raw = keys.view(np.dtype((np.void, _KEY_DTYPE.itemsize)))
    uniq, inv = np.unique(raw, return_inverse=True)
    inv = inv.ravel()
    m = len(uniq)
    first = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inv, first_ms)
    last = np.full(m, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inv, last_ms)
    fl = np.zeros(m, dtype=np.uint16)
    np.bitwise_or.at(fl, inv, flags)
    return Aggregate(uniq.view(_KEY_DTYPE), np.bincount(inv, weights=packets, minlength=m).astype(np.int64),
                     np.bincount(inv, weights=nbytes, minlength=m).astype(np.int64), first, last, fl)


def aggregate_arrays(pk: Packets, window_ms: int) -> Aggregate:
    """Sum packets per (window, flow key), as columns."""
    ok = np.nonzero(pk.status == OK)[0]
    ts_ms = pk.ts_ns[ok] // 1_000_000
    keys = np.zeros(len(ok), dtype=_KEY_DTYPE)
    keys["w"] = ts_ms - ts_ms % window_ms if window_ms > 0 else 0
    keys["ver"] = pk.ver[ok]
    keys["src"] = pk.src[ok].view("V16").ravel()
    keys["dst"] = pk.dst[ok].view("V16").ravel()
    keys["proto"] = pk.proto[ok]
    keys["sport"] = pk.sport[ok]
    keys["dport"] = pk.dport[ok]
    keys["vlan"] = pk.vlan[ok]
    keys["tos"] = pk.tos[ok]
    return _group(keys, np.ones(len(ok), np.int64), pk.nbytes[ok], ts_ms, ts_ms, pk.flags[ok])


def combine(aggs: list[Aggregate]) -> Aggregate:
    """Merge aggregates of several chunks into one (sums, min/max times, OR of flags)."""
    if len(aggs) == 1:
        return aggs[0]
    cat = lambda name: np.concatenate([getattr(a, name) for a in aggs])  # noqa: E731
    return _group(cat("keys"), cat("packets"), cat("nbytes"), cat("first_ms"), cat("last_ms"), cat("flags"))


def rows(agg: Aggregate):
    """``(window_start_ms, (ver, src, dst, proto, sport, dport, vlan, tos), packets, bytes, first_ms, last_ms,
    flags)`` per flow; addresses are packed bytes (4 or 16)."""
    u = agg.keys
    cols = [u[c].tolist() for c in ("w", "ver", "src", "dst", "proto", "sport", "dport", "vlan", "tos")]
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
