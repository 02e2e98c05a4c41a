"""Flow aggregation: decoded packets to the partial flows (*parts*) of a chunk, per (window, flow key).

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

import socket
from dataclasses import dataclass
from collections.abc import Iterable

import numpy as np

from app.flows.aggregate import Grouper, pack_small, unpack_small
from app.flows.decode import OK, Packets
from app.records import flow_key, partition_for

#: ``[window_start_ms, key, packets, bytes, first_ms, last_ms, tcp_flags]``
Part = list


@dataclass
class Aggregate:
    """Flows as columns: one entry per (window, flow key), in first-seen order."""

    w: np.ndarray        #: window start, ms
    ver: np.ndarray
    src: np.ndarray      #: (m, 16) uint8
    dst: np.ndarray      #: (m, 16) uint8
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

    def __len__(self) -> int:
        return len(self.w)


class Aggregator:
    """Accumulates decoded packets (or other aggregates) into flows per (window, flow key)."""

    def __init__(self, window_ms: int, inner_tunnels: bool = False):
        self.window_ms = window_ms
        self.inner_tunnels = inner_tunnels
        self.grouper = Grouper()

    def add_packets(self, pk: Packets) -> None:
        ts_ms = pk.ts_ns // 1_000_000
        w = ts_ms - ts_ms % self.window_ms if self.window_ms > 0 else np.zeros_like(ts_ms)
        small = pack_small(pk.ver, pk.proto, pk.sport, pk.dport, pk.vlan, pk.tos)
        self.grouper.add(np.nonzero(pk.status == OK)[0], w, small, pk.src.view(np.uint64), pk.dst.view(np.uint64),
                         np.ones(len(ts_ms), np.int64), pk.nbytes, ts_ms, ts_ms, pk.flags)

    def add_aggregate(self, agg: Aggregate) -> None:
        small = pack_small(agg.ver, agg.proto, agg.sport, agg.dport, agg.vlan, agg.tos)
        self.grouper.add(np.arange(len(agg)), agg.w, small, np.ascontiguousarray(agg.src).view(np.uint64),
                         np.ascontiguousarray(agg.dst).view(np.uint64), agg.packets, agg.nbytes, agg.first_ms,
                         agg.last_ms, agg.flags)

    def result(self) -> Aggregate:
        g = self.grouper
        n = g.n
        ver, proto, sport, dport, vlan, tos = unpack_small(g.small[:n])
        return Aggregate(g.w[:n].copy(), ver, g.a[:n].copy().view(np.uint8), g.b[:n].copy().view(np.uint8), proto,
                         sport, dport, vlan, tos, g.packets[:n].copy(), g.nbytes[:n].copy(), g.first[:n].copy(),
                         g.last[:n].copy(), g.flags[:n].copy())


_TEXT: dict[bytes, str] = {}   # packed address -> text; a site's addresses repeat in every chunk


def _text(addr: bytes) -> str:
    t = _TEXT.get(addr)
    if t is None:
        if len(_TEXT) > 500_000:
            _TEXT.clear()
        t = _TEXT[addr] = socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)
    return t


def _texts(ver: np.ndarray, addrs: np.ndarray) -> list[str]:
    """The text of every row's address (``addrs``: (m, 16) uint8, IPv4 in the first 4 bytes), each distinct
    address converted once."""
    if not len(ver):
        return []
    rows_ = np.empty((len(ver), 17), np.uint8)
    rows_[:, :16] = addrs
    rows_[:, 16] = ver
    uniq, inv = np.unique(rows_.view(np.dtype((np.void, 17))).ravel(), return_inverse=True)
    names = [_text(u[:4] if u[16] == 4 else u[:16]) for u in map(bytes, uniq)]
    return [names[i] for i in inv.tolist()]


def parts(sensor: str, pk: Packets, window_ms: int, *more: Packets) -> list[Part]:
    """Partial flows of one decoded chunk (and of its inner-tunnel pass, if given), as wire-ready lists
    ``[window_ms, flow key, packets, bytes, first_ms, last_ms, flags]``."""
    agg = Aggregator(window_ms)
    for p in (pk, *more):
        agg.add_packets(p)
    a = agg.result()
    keys = [flow_key(sensor, s, d, pr, sp, dp, v, t) for s, d, pr, sp, dp, v, t in
            zip(_texts(a.ver, a.src), _texts(a.ver, a.dst), a.proto.tolist(), a.sport.tolist(), a.dport.tolist(),
                a.vlan.tolist(), a.tos.tolist())]
    return [[w, k, p, b, f, last, fl] for w, k, p, b, f, last, fl in
            zip(a.w.tolist(), keys, a.packets.tolist(), a.nbytes.tolist(), a.first_ms.tolist(), a.last_ms.tolist(),
                a.flags.tolist())]


def split_by_partition(items: Iterable[Part], partitions: int) -> dict[int, list[Part]]:
    """Parts by the partition of their flow key (:func:`app.records.partition_for`)."""
    out: dict[int, list[Part]] = {}
    for part in items:
        out.setdefault(partition_for(part[1], partitions), []).append(part)
    return out
