"""Group rows by (window, flow key) in one compiled pass: an open-addressing hash table.

Pure code (no Faust). Exact: a hash only picks the slot, and every candidate is
compared field by field. Groups come out in the order their first row was seen,
so the result is deterministic for the same input.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@njit(inline="always")
def _mix(h, v):
    h = (h ^ np.uint64(v)) * _M2
    return h ^ (h >> np.uint64(31))


@njit(inline="always")
def _final(h):
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


@njit(inline="always")
def _hash(i, w, ver, src, dst, proto, sport, dport, vlan, tos):
    h = _M1
    h = _mix(h, w[i])
    h = _mix(h, (np.uint64(ver[i]) << np.uint64(56)) | (np.uint64(proto[i]) << np.uint64(48)) |
             (np.uint64(sport[i]) << np.uint64(32)) | (np.uint64(dport[i]) << np.uint64(16)) | np.uint64(vlan[i]))
    h = _mix(h, tos[i])
    for k in range(16):
        h = _mix(h, (np.uint64(src[i, k]) << np.uint64(8)) | np.uint64(dst[i, k]))
    return _final(h)


@njit(inline="always")
def _same(i, j, w, ver, src, dst, proto, sport, dport, vlan, tos):
    if w[i] != w[j] or ver[i] != ver[j] or proto[i] != proto[j] or sport[i] != sport[j] or \
            dport[i] != dport[j] or vlan[i] != vlan[j] or tos[i] != tos[j]:
        return False
    for k in range(16):
        if src[i, k] != src[j, k] or dst[i, k] != dst[j, k]:
            return False
    return True


@njit(cache=True, nogil=True)
def group(sel, w, ver, src, dst, proto, sport, dport, vlan, tos, packets, nbytes, first, last, flags):
    """Aggregate rows ``sel`` (indexes). Returns (representative row per group, packets, bytes, first, last,
    flags) of each group, in first-seen order."""
    n = sel.shape[0]
    cap = 16
    while cap < 2 * n:
        cap *= 2
    mask = np.uint64(cap - 1)
    slots = np.full(cap, -1, dtype=np.int64)
    rep = np.empty(n, dtype=np.int64)
    g_p = np.zeros(n, dtype=np.int64)
    g_b = np.zeros(n, dtype=np.int64)
    g_f = np.empty(n, dtype=np.int64)
    g_l = np.empty(n, dtype=np.int64)
    g_fl = np.zeros(n, dtype=np.uint16)
    m = 0
    for t in range(n):
        i = sel[t]
        s = _hash(i, w, ver, src, dst, proto, sport, dport, vlan, tos) & mask
        while True:
            g = slots[s]
            if g < 0:
                slots[s] = m
                rep[m] = i
                g_f[m] = first[i]
                g_l[m] = last[i]
                g = m
                m += 1
                break
            if _same(rep[g], i, w, ver, src, dst, proto, sport, dport, vlan, tos):
                break
            s = (s + np.uint64(1)) & mask
        g_p[g] += packets[i]
        g_b[g] += nbytes[i]
        if first[i] < g_f[g]:
            g_f[g] = first[i]
        if last[i] > g_l[g]:
            g_l[g] = last[i]
        g_fl[g] |= flags[i]
    return rep[:m], g_p[:m], g_b[:m], g_f[:m], g_l[:m], g_fl[:m]


@njit(cache=True, nogil=True)
def key_ids(w, ver, src, dst, proto, sport, dport, vlan, tos, salt):
    """A deterministic 63-bit id per row from its window and flow key (the same in every process)."""
    n = w.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = np.int64(_mix(_hash(i, w, ver, src, dst, proto, sport, dport, vlan, tos), salt) >> np.uint64(1))
    return out
