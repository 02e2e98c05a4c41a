"""Seeded synthetic traffic: a pcap file and the exact flow table it holds.

Pure code (no Faust), vectorised with numpy: no Python loop per packet. Used by
the truth tests, the benchmarks and the placebo source.

Traffic is a set of conversations between ``inside`` hosts (10.0.0.0/16 and
fd00::/64) and outside hosts: TCP with a handshake, data and FIN, UDP including
DNS on port 53, and ICMP echo. A share of conversations is IPv6 and a share is
802.1Q-tagged. Each conversation gives two unidirectional flow keys.
The truth table is computed from the generator's own arrays, never by decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08


@dataclass
class Traffic:
    """A synthetic capture and its truth: every flow key with the packets and bytes put in it."""

    pcap: bytes | None           #: the capture, if asked for in memory
    keys: np.ndarray             #: structured array, one row per flow key (see FIELDS)
    packets: np.ndarray          #: packets of each key
    nbytes: np.ndarray           #: IP bytes of each key
    first_ns: np.ndarray         #: first capture time of each key
    last_ns: np.ndarray          #: last capture time of each key
    flags: np.ndarray            #: OR of TCP flags of each key
    pkt_key: np.ndarray          #: key index of every packet, in file order
    pkt_ts_ns: np.ndarray        #: capture time of every packet, in file order
    pkt_bytes: np.ndarray        #: IP bytes of every packet, in file order
    hosts_inside: int
    hosts_outside: int

    def table(self) -> dict[tuple, list[int]]:
        """``(src, dst, proto, sport, dport, vlan, tos) -> [packets, bytes]`` with text addresses."""
        import ipaddress
        out = {}
        for i, k in enumerate(self.keys):
            fam = ipaddress.IPv4Address if k["ver"] == 4 else ipaddress.IPv6Address
            n = 4 if k["ver"] == 4 else 16
            src = str(fam(bytes(k["src"][:n]))) if n == 16 else str(fam(bytes(k["src"][:4])))
            dst = str(fam(bytes(k["dst"][:n]))) if n == 16 else str(fam(bytes(k["dst"][:4])))
            out[(src, dst, int(k["proto"]), int(k["sport"]), int(k["dport"]), int(k["vlan"]), int(k["tos"]))] = \
                [int(self.packets[i]), int(self.nbytes[i])]
        return out


FIELDS = np.dtype([("ver", "u1"), ("src", "u1", 16), ("dst", "u1", 16), ("proto", "u1"), ("sport", "<u2"),
                   ("dport", "<u2"), ("vlan", "<u2"), ("tos", "u1")])


def _put16(buf, pos, val):
    buf[pos] = (val >> 8) & 0xFF
    buf[pos + 1] = val & 0xFF


def _put32(buf, pos, val, little=False):
    val = np.asarray(val, dtype=np.uint64)
    order = (0, 8, 16, 24) if little else (24, 16, 8, 0)
    for k, shift in enumerate(order):
        buf[pos + k] = (val >> np.uint64(shift)) & np.uint64(0xFF)


def generate(seed: int = 1, conversations: int = 1000, packets: int = 20000, inside: int = 200,
             outside: int = 2000, v6_share: float = 0.1, vlan_share: float = 0.1, start_s: int = 1_700_000_000,
             duration_s: float = 300.0, mean_payload: int = 500, in_memory: bool = True,
             path: str | None = None) -> Traffic:
    """Generate traffic; write it to ``path`` and/or keep it in memory."""
    rng = np.random.default_rng(seed)
    C = conversations
    # -- conversations
    v6 = rng.random(C) < v6_share
    kind = rng.choice([TCP, UDP, ICMP], size=C, p=[0.7, 0.25, 0.05])
    vlan = np.where(rng.random(C) < vlan_share, rng.integers(1, 4095, C), 0).astype(np.uint16)
    tos = np.where(rng.random(C) < 0.05, 0xB8, 0).astype(np.uint8)
    h_in = rng.integers(0, inside, C)
    h_out = rng.integers(0, outside, C)
    cport = rng.integers(1024, 65535, C).astype(np.uint16)
    sport_pool = np.array([80, 443, 22, 25, 8080, 993], dtype=np.uint16)
    srv = np.where(kind == UDP, np.where(rng.random(C) < 0.6, 53, rng.integers(1, 65535, C)),
                   rng.choice(sport_pool, C)).astype(np.uint16)
    proto = np.where((kind == ICMP) & v6, ICMP6, kind).astype(np.uint8)
    # -- packets per conversation: heavy-tailed, at least 2 (TCP at least 4: handshake and FIN)
    weights = rng.pareto(1.2, C) + 1
    per = np.maximum(np.round(weights / weights.sum() * packets).astype(np.int64), 2)
    per = np.where(kind == TCP, np.maximum(per, 4), per)
    N = int(per.sum())
    conv = np.repeat(np.arange(C), per)
    rank = np.arange(N) - np.repeat(np.cumsum(per) - per, per)
    # direction: client->server on even ranks, server->client on odd ranks (a request/response rhythm)
    rev = (rank % 2).astype(bool)
    key = conv * 2 + rev
    # -- times: a conversation starts uniformly, packets follow at exponential gaps
    start = rng.uniform(0, duration_s, C)
    gaps = rng.exponential(0.05, N)
    gaps[rank == 0] = 0
    t_rel = start[conv] + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(per) - per] -
                                                       gaps[np.cumsum(per) - per], per))
    ts_ns = (np.int64(start_s) * 1_000_000_000 + (t_rel * 1e9).astype(np.int64))
    order = np.argsort(ts_ns, kind="stable")
    conv, rank, rev, key, ts_ns = conv[order], rank[order], rev[order], key[order], ts_ns[order]
    last_rank = (per - 1)[conv]
    # -- TCP flags
    pk_proto = proto[conv]
    is_tcp = pk_proto == TCP
    flags = np.where(is_tcp, np.where(rank % 3 == 2, PSH | ACK, ACK), 0).astype(np.uint16)
    flags[is_tcp & (rank == 0)] = SYN
    flags[is_tcp & (rank == 1)] = SYN | ACK
    flags[is_tcp & (rank == last_rank) & (rank > 1)] = FIN | ACK
    # -- sizes
    payload = np.where(is_tcp & (rank < 2), 0,
                       np.minimum(rng.exponential(mean_payload, N).astype(np.int64), 1400))
    payload = np.where(pk_proto == UDP, np.maximum(payload, 12), payload)
    l4len = np.where(is_tcp, 20, 8)
    pk_v6 = v6[conv]
    iplen = np.where(pk_v6, 40, 20) + l4len + payload          # what the flow counts
    pk_vlan = vlan[conv]
    l2 = 14 + np.where(pk_vlan > 0, 4, 0)
    caplen = l2 + iplen
    rec_off = np.concatenate(([24], 24 + np.cumsum(16 + caplen)[:-1]))
    total = int(24 + (16 + caplen).sum())
    buf = np.zeros(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"), np.uint8)
    # record headers (little-endian)
    _put32(buf, rec_off, ts_ns // 1_000_000_000, little=True)
    _put32(buf, rec_off + 4, (ts_ns % 1_000_000_000) // 1000, little=True)
    _put32(buf, rec_off + 8, caplen, little=True)
    _put32(buf, rec_off + 12, caplen, little=True)
    # Ethernet (+ 802.1Q)
    eth = rec_off + 16
    buf[eth] = 0x02
    buf[eth + 6] = 0x02
    buf[eth + 11] = 1
    tagged = pk_vlan > 0
    _put16(buf, eth[tagged] + 12, 0x8100)
    _put16(buf, eth[tagged] + 14, pk_vlan[tagged].astype(np.int64))
    ip = eth + l2
    _put16(buf, ip - 2, np.where(pk_v6, 0x86DD, 0x0800))
    # addresses: the client is inside, the server outside; the reverse direction swaps them
    cli4 = (10 << 24) | h_in[conv]
    srv4 = (100 << 24) | (64 << 16) | h_out[conv]
    s4, d4 = np.where(rev, srv4, cli4), np.where(rev, cli4, srv4)
    four = ~pk_v6
    i4 = ip[four]
    buf[i4] = 0x45
    buf[i4 + 1] = tos[conv][four]
    _put16(buf, i4 + 2, iplen[four])
    buf[i4 + 8] = 64
    buf[i4 + 9] = pk_proto[four]
    _put32(buf, i4 + 12, s4[four])
    _put32(buf, i4 + 16, d4[four])
    i6 = ip[pk_v6]
    t6 = tos[conv][pk_v6].astype(np.int64)
    buf[i6] = 0x60 | (t6 >> 4)
    buf[i6 + 1] = (t6 & 0xF) << 4
    _put16(buf, i6 + 4, iplen[pk_v6] - 40)
    buf[i6 + 6] = pk_proto[pk_v6]
    buf[i6 + 7] = 64
    s6_low, d6_low = np.where(rev, srv4, cli4)[pk_v6], np.where(rev, cli4, srv4)[pk_v6]
    for base, low, prefix in ((i6 + 8, s6_low, 0xFD), (i6 + 24, d6_low, 0xFD)):
        buf[base] = prefix
        _put32(buf, base + 12, low)
    # transport
    l4 = ip + np.where(pk_v6, 40, 20)
    sp = np.where(rev, srv[conv], cport[conv]).astype(np.int64)
    dp = np.where(rev, cport[conv], srv[conv]).astype(np.int64)
    ported = (pk_proto == TCP) | (pk_proto == UDP)
    _put16(buf, l4[ported], sp[ported])
    _put16(buf, l4[ported] + 2, dp[ported])
    _put16(buf, l4[pk_proto == UDP] + 4, (l4len + payload)[pk_proto == UDP])
    buf[l4[is_tcp] + 12] = 0x50
    buf[l4[is_tcp] + 13] = flags[is_tcp] & 0xFF
    icmp = (pk_proto == ICMP) | (pk_proto == ICMP6)
    echo_req = np.where(pk_proto == ICMP, 8, 128)
    echo_rep = np.where(pk_proto == ICMP, 0, 129)
    itype = np.where(rev, echo_rep, echo_req)
    buf[l4[icmp]] = itype[icmp]
    sp = np.where(ported, sp, 0)
    dp = np.where(ported, dp, np.where(icmp, itype * 256, 0))
    # -- truth per flow key
    nkeys = 2 * C
    pk_count = np.bincount(key, minlength=nkeys)
    used = np.nonzero(pk_count)[0]
    remap = np.full(nkeys, -1)
    remap[used] = np.arange(len(used))
    k = remap[key]
    m = len(used)
    keys = np.zeros(m, dtype=FIELDS)
    keys["ver"][k] = np.where(pk_v6, 6, 4)
    src_b = np.zeros((N, 16), np.uint8)
    dst_b = np.zeros((N, 16), np.uint8)
    for j, shift in enumerate((24, 16, 8, 0)):
        src_b[four, j] = (s4[four] >> shift) & 0xFF
        dst_b[four, j] = (d4[four] >> shift) & 0xFF
        src_b[pk_v6, 12 + j] = (s6_low >> shift) & 0xFF
        dst_b[pk_v6, 12 + j] = (d6_low >> shift) & 0xFF
    src_b[pk_v6, 0] = 0xFD
    dst_b[pk_v6, 0] = 0xFD
    keys["src"][k] = src_b
    keys["dst"][k] = dst_b
    keys["proto"][k] = pk_proto
    keys["sport"][k] = sp
    keys["dport"][k] = dp
    keys["vlan"][k] = pk_vlan
    keys["tos"][k] = tos[conv]
    nbytes = np.bincount(k, weights=iplen, minlength=m).astype(np.int64)
    first = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(first, k, ts_ns)
    last = np.full(m, np.iinfo(np.int64).min)
    np.maximum.at(last, k, ts_ns)
    fl = np.zeros(m, np.uint16)
    np.bitwise_or.at(fl, k, flags)
    if path is not None:
        buf.tofile(path)
    return Traffic(buf.tobytes() if in_memory else None, keys, np.bincount(k, minlength=m), nbytes, first, last,
                   fl, k, ts_ns, iplen, inside, outside)
