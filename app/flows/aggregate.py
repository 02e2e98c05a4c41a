"""Group rows by (window, flow key) in compiled code: an incremental open-addressing hash table.

Pure code (no Faust). Exact: the hash only picks the slot, and every candidate is
compared on the whole key. A key is six 64-bit words: the window, one word
packing version, protocol, ports, VLAN id and ToS, and two words for each
address. Groups keep the order their first row was seen in, so results are
deterministic for the same input. One :class:`Grouper` can take many batches
(chunks of a file, or the aggregates of several files): each row is inserted once.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def pack_small(ver, proto, sport, dport, vlan, tos) -> np.ndarray:
    """One uint64 per row: IPv6 flag (1 bit), protocol, source port, destination port, VLAN (12 bits), ToS."""
    u = lambda a: np.asarray(a).astype(np.uint64)
    return ((u(ver) == 6).astype(np.uint64) << np.uint64(60)) | (u(proto) << np.uint64(52)) | \
        (u(sport) << np.uint64(36)) | (u(dport) << np.uint64(20)) | ((u(vlan) & np.uint64(0xFFF)) << np.uint64(8)) | \
        u(tos)


def unpack_small(small: np.ndarray):
    """(ver, proto, sport, dport, vlan, tos) columns of packed words."""
    s = small.astype(np.uint64)
    f = lambda shift, mask, t: ((s >> np.uint64(shift)) & np.uint64(mask)).astype(t)
    return (np.where(f(60, 1, np.uint8) == 1, 6, 4).astype(np.uint8), f(52, 0xFF, np.uint8), f(36, 0xFFFF, np.uint16),
            f(20, 0xFFFF, np.uint16), f(8, 0xFFF, np.uint16), f(0, 0xFF, np.uint8))


@njit(inline="always")
def _mix(h, v):
    h = (h ^ np.uint64(v)) * _M2
    return h ^ (h >> np.uint64(31))


@njit(inline="always")
def _hash6(w, sm, a0, a1, b0, b1):
    h = _mix(_mix(_mix(_mix(_mix(_mix(_M1, w), sm), a0), a1), b0), b1)
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


@njit(cache=True, nogil=True)
def _insert(slots, n, gw, gs, ga, gb, gp, gbytes, gf, gl, gfl,
            sel, w, sm, a, b, packets, nbytes, first, last, flags):
    mask = np.uint64(slots.shape[0] - 1)
    for t in range(sel.shape[0]):
        i = sel[t]
        s = _hash6(w[i], sm[i], a[i, 0], a[i, 1], b[i, 0], b[i, 1]) & mask
        while True:
            g = slots[s]
            if g < 0:
                slots[s] = n
                g = n
                gw[g] = w[i]
                gs[g] = sm[i]
                ga[g, 0] = a[i, 0]
                ga[g, 1] = a[i, 1]
                gb[g, 0] = b[i, 0]
                gb[g, 1] = b[i, 1]
                gf[g] = first[i]
                gl[g] = last[i]
                n += 1
                break
            if gw[g] == w[i] and gs[g] == sm[i] and ga[g, 0] == a[i, 0] and ga[g, 1] == a[i, 1] and \
                    gb[g, 0] == b[i, 0] and gb[g, 1] == b[i, 1]:
                if first[i] < gf[g]:
                    gf[g] = first[i]
                if last[i] > gl[g]:
                    gl[g] = last[i]
                break
            s = (s + np.uint64(1)) & mask
        gp[g] += packets[i]
        gbytes[g] += nbytes[i]
        gfl[g] |= flags[i]
    return n


@njit(cache=True, nogil=True)
def _rehash(slots, n, gw, gs, ga, gb):
    mask = np.uint64(slots.shape[0] - 1)
    for g in range(n):
        s = _hash6(gw[g], gs[g], ga[g, 0], ga[g, 1], gb[g, 0], gb[g, 1]) & mask
        while slots[s] >= 0:
            s = (s + np.uint64(1)) & mask
        slots[s] = g


class Grouper:
    """Sums of packets, bytes, min first, max last and OR of flags per key, over any number of batches."""

    w: np.ndarray          #: window start, ms
    small: np.ndarray      #: version, protocol, ports, VLAN and ToS packed in one word
    a: np.ndarray          #: source address as two words
    b: np.ndarray          #: destination address as two words
    packets: np.ndarray
    nbytes: np.ndarray
    first: np.ndarray
    last: np.ndarray
    flags: np.ndarray
    slots: np.ndarray      #: open-addressing hash table of row indexes

    def __init__(self, capacity: int = 1 << 12):
        self.n = 0
        self._alloc(capacity)

    def _alloc(self, cap: int) -> None:
        old = getattr(self, "w", None)
        n = self.n
        new: dict[str, np.ndarray] = {
            "w": np.empty(cap, np.int64), "small": np.empty(cap, np.uint64), "a": np.empty((cap, 2), np.uint64),
            "b": np.empty((cap, 2), np.uint64), "packets": np.zeros(cap, np.int64),
            "nbytes": np.zeros(cap, np.int64), "first": np.empty(cap, np.int64), "last": np.empty(cap, np.int64),
            "flags": np.zeros(cap, np.uint16)}
        if old is not None:
            for k, arr in new.items():
                arr[:n] = getattr(self, k)[:n]
        self.__dict__.update(new)
        size = 1
        while size < 2 * cap:
            size *= 2
        self.slots = np.full(size, -1, np.int64)
        _rehash(self.slots, n, self.w, self.small, self.a, self.b)

    def add(self, sel, w, small, a, b, packets, nbytes, first, last, flags) -> None:
        """Insert rows ``sel`` of the columns (``a``/``b``: (n, 2) uint64 address words)."""
        if self.n + len(sel) > len(self.w):
            self._alloc(max(2 * len(self.w), self.n + len(sel)))
        self.n = _insert(self.slots, self.n, self.w, self.small, self.a, self.b, self.packets, self.nbytes,
                         self.first, self.last, self.flags, sel, w, small, a, b, packets, nbytes, first, last, flags)
