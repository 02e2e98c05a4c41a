"""Packet decoding: captured bytes to the header fields a flow key needs.

Pure code (no Faust). One compiled (numba) pass over the packets of an indexed
capture fills column arrays; nothing loops over packets in Python except the
fix-up of IP fragments, which touches fragments only.

Link types: Ethernet (1), Linux cooked v1 (113) and v2 (276), raw IP (101, 12,
14, 228, 229), BSD NULL (0) and LOOP (108), PPP (9) and PPP-in-HDLC (50).
Layer 2.5: 802.1Q / 802.1ad / QinQ tags (the outer VLAN id is kept), MPLS label
stacks carrying IP, PPPoE session frames. IPv4 with options, IPv6 with
hop-by-hop, routing, destination-options, fragment and AH extension headers.
Ports for TCP, UDP, UDP-Lite, SCTP and DCCP; ICMP and ICMPv6 put
``type * 256 + code`` in the destination port, as NetFlow does. Other
protocols get ports 0. Tunnels are counted as flows of their outer header.

Fragments: a non-first fragment takes the ports of its first fragment when that
is in the same chunk (matched on source, destination, protocol and IP id);
otherwise its ports are 0.

Bytes: the IP total length (IPv6: 40 + payload length), so a snaplen-truncated
capture still counts true bytes. A zero length field (TSO, jumbograms) falls back
to the wire length less the link header.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from app.capture import Index, as_bytes_array

OK, NON_IP, UNSUPPORTED_LINK, TRUNCATED, BAD_IP, UNSUPPORTED_ENCAP = range(6)
#: Why a packet gave no flow, by status code (a closed set).
SKIP_REASONS = {
    NON_IP: "non-ip",                          # ARP, LLDP, STP...: not an IP packet
    UNSUPPORTED_LINK: "unsupported-linktype",  # a link type the decoder does not read
    TRUNCATED: "truncated",                    # too few captured bytes for the IP header
    BAD_IP: "bad-ip-header",                   # an IP header with impossible values
    UNSUPPORTED_ENCAP: "unsupported-encapsulation",  # e.g. MPLS carrying Ethernet
}
FRAG_NONE, FRAG_FIRST, FRAG_LATER = 0, 1, 2
SUPPORTED_LINKTYPES = frozenset({0, 1, 9, 12, 14, 50, 101, 108, 113, 228, 229, 276})


@dataclass
class Packets:
    """Decoded header fields, one entry per packet (meaningful where ``status == OK``)."""

    status: np.ndarray   #: OK or a skip reason code
    ver: np.ndarray      #: IP version, 4 or 6
    src: np.ndarray      #: (n, 16) source address; IPv4 in the first 4 bytes
    dst: np.ndarray      #: (n, 16) destination address
    proto: np.ndarray    #: IP protocol number
    sport: np.ndarray    #: source port, 0 where there is none
    dport: np.ndarray    #: destination port, or ICMP type * 256 + code
    tos: np.ndarray      #: IPv4 ToS byte / IPv6 traffic class
    vlan: np.ndarray     #: outer VLAN id, 0 when untagged
    nbytes: np.ndarray   #: IP total length in bytes
    flags: np.ndarray    #: TCP control bits (9 bits, NS included)
    frag: np.ndarray     #: FRAG_NONE, FRAG_FIRST or FRAG_LATER
    ipid: np.ndarray     #: IP identification (IPv6: fragment header id)
    ts_ns: np.ndarray    #: capture time, ns since the Unix epoch
    linktype: np.ndarray  #: link type of each packet

    def skipped(self) -> dict[str, int]:
        codes, counts = np.unique(self.status[self.status != OK], return_counts=True)
        return {SKIP_REASONS[int(c)]: int(k) for c, k in zip(codes, counts)}

    def unsupported_linktypes(self) -> dict[int, int]:
        lt, counts = np.unique(self.linktype[self.status == UNSUPPORTED_LINK], return_counts=True)
        return {int(a): int(b) for a, b in zip(lt, counts)}


@njit(inline="always")
def _be16(b, o):
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@njit(inline="always")
def _be32(b, o):
    return (np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8) | np.int64(b[o + 3])


@njit(cache=True, nogil=True)
def _decode(buf, data_off, caplen, wirelen, iface, if_lt,
            status, ver, src, dst, proto, sport, dport, tos, vlan, nbytes, flags, frag, ipid, lts):
    n = data_off.shape[0]
    for i in range(n):
        # every output field is set here, so the arrays may come uninitialised
        status[i] = OK
        ver[i] = 0
        proto[i] = 0
        sport[i] = 0
        dport[i] = 0
        tos[i] = 0
        vlan[i] = 0
        nbytes[i] = 0
        flags[i] = 0
        frag[i] = FRAG_NONE
        ipid[i] = 0
        for k in range(16):
            src[i, k] = 0
            dst[i, k] = 0
        start = data_off[i]
        p = start
        end = start + caplen[i]
        lt = if_lt[iface[i]]
        lts[i] = lt
        etype = -1
        if lt == 1:
            if p + 14 > end:
                status[i] = TRUNCATED
                continue
            etype = _be16(buf, p + 12)
            p += 14
        elif lt == 113:
            if p + 16 > end:
                status[i] = TRUNCATED
                continue
            etype = _be16(buf, p + 14)
            p += 16
        elif lt == 276:
            if p + 20 > end:
                status[i] = TRUNCATED
                continue
            etype = _be16(buf, p)
            p += 20
        elif lt == 0 or lt == 108 or lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
            if lt == 0 or lt == 108:
                p += 4
            if p + 1 > end:
                status[i] = TRUNCATED
                continue
            v = buf[p] >> 4
            if lt == 228:
                etype = 0x0800
            elif lt == 229:
                etype = 0x86DD
            elif v == 4:
                etype = 0x0800
            elif v == 6:
                etype = 0x86DD
            else:
                status[i] = NON_IP
                continue
        elif lt == 9 or lt == 50:
            if p + 2 <= end and buf[p] == 0xFF and buf[p + 1] == 0x03:
                p += 2
            if p + 2 > end:
                status[i] = TRUNCATED
                continue
            pp = _be16(buf, p)
            p += 2
            etype = 0x0800 if pp == 0x21 else (0x86DD if pp == 0x57 else -1)
        else:
            status[i] = UNSUPPORTED_LINK
            continue
        tagged = False
        bad = 0
        while True:
            if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
                if p + 4 > end:
                    bad = TRUNCATED
                    break
                if not tagged:
                    vlan[i] = _be16(buf, p) & 0xFFF
                    tagged = True
                etype = _be16(buf, p + 2)
                p += 4
            elif etype == 0x8847 or etype == 0x8848:
                while True:
                    if p + 4 > end:
                        bad = TRUNCATED
                        break
                    bos = buf[p + 2] & 1
                    p += 4
                    if bos:
                        break
                if bad:
                    break
                if p + 1 > end:
                    bad = TRUNCATED
                    break
                v = buf[p] >> 4
                if v == 4:
                    etype = 0x0800
                elif v == 6:
                    etype = 0x86DD
                else:
                    bad = UNSUPPORTED_ENCAP
                    break
            elif etype == 0x8864:
                if p + 8 > end:
                    bad = TRUNCATED
                    break
                pp = _be16(buf, p + 6)
                p += 8
                etype = 0x0800 if pp == 0x21 else (0x86DD if pp == 0x57 else -1)
            else:
                break
        if bad:
            status[i] = bad
            continue
        l4 = -1
        if etype == 0x0800:
            if p + 20 > end:
                status[i] = TRUNCATED
                continue
            if buf[p] >> 4 != 4:
                status[i] = BAD_IP
                continue
            ihl = (buf[p] & 15) * 4
            tot = _be16(buf, p + 2)
            if ihl < 20 or (tot != 0 and tot < ihl):
                status[i] = BAD_IP
                continue
            ver[i] = 4
            tos[i] = buf[p + 1]
            nbytes[i] = tot if tot != 0 else wirelen[i] - (p - start)
            ipid[i] = _be16(buf, p + 4)
            fo = _be16(buf, p + 6)
            if fo & 0x1FFF:
                frag[i] = FRAG_LATER
            elif fo & 0x2000:
                frag[i] = FRAG_FIRST
            proto[i] = buf[p + 9]
            for k in range(4):
                src[i, k] = buf[p + 12 + k]
                dst[i, k] = buf[p + 16 + k]
            l4 = p + ihl
        elif etype == 0x86DD:
            if p + 40 > end:
                status[i] = TRUNCATED
                continue
            if buf[p] >> 4 != 6:
                status[i] = BAD_IP
                continue
            ver[i] = 6
            tos[i] = ((buf[p] & 15) << 4) | (buf[p + 1] >> 4)
            plen = _be16(buf, p + 4)
            nbytes[i] = 40 + plen if plen != 0 else wirelen[i] - (p - start)
            for k in range(16):
                src[i, k] = buf[p + 8 + k]
                dst[i, k] = buf[p + 24 + k]
            nh = np.int64(buf[p + 6])
            q = p + 40
            while nh == 0 or nh == 43 or nh == 60 or nh == 44 or nh == 51:
                if q + 8 > end:
                    q = -1
                    break
                if nh == 44:
                    fo = _be16(buf, q + 2)
                    ipid[i] = _be32(buf, q + 4)
                    nh = np.int64(buf[q])
                    q += 8
                    if fo >> 3:
                        frag[i] = FRAG_LATER
                        break
                    if fo & 1:
                        frag[i] = FRAG_FIRST
                elif nh == 51:
                    ln = (np.int64(buf[q + 1]) + 2) * 4
                    nh = np.int64(buf[q])
                    q += ln
                else:
                    ln = (np.int64(buf[q + 1]) + 1) * 8
                    nh = np.int64(buf[q])
                    q += ln
            proto[i] = nh
            l4 = q
        else:
            status[i] = NON_IP
            continue
        if l4 < 0 or frag[i] == FRAG_LATER:
            continue
        pr = proto[i]
        if pr == 6 or pr == 17 or pr == 132 or pr == 136 or pr == 33:
            if l4 + 4 <= end:
                sport[i] = _be16(buf, l4)
                dport[i] = _be16(buf, l4 + 2)
            if pr == 6 and l4 + 14 <= end:
                flags[i] = buf[l4 + 13] | ((buf[l4 + 12] & 1) << 8)
        elif pr == 1 or pr == 58:
            if l4 + 2 <= end:
                dport[i] = (np.int64(buf[l4]) << 8) | buf[l4 + 1]


def decode(data: bytes | memoryview | np.ndarray, idx: Index) -> Packets:
    """Decode every packet of an indexed capture."""
    buf = as_bytes_array(data)
    n = idx.packets
    z = np.empty
    pk = Packets(status=z(n, np.uint8), ver=z(n, np.uint8), src=z((n, 16), np.uint8), dst=z((n, 16), np.uint8),
                 proto=z(n, np.uint8), sport=z(n, np.uint16), dport=z(n, np.uint16), tos=z(n, np.uint8),
                 vlan=z(n, np.uint16), nbytes=z(n, np.int64), flags=z(n, np.uint16), frag=z(n, np.uint8),
                 ipid=z(n, np.uint32), ts_ns=idx.ts_ns, linktype=z(n, np.int32))
    if n:
        _decode(buf, idx.data_off, idx.caplen, idx.wirelen, idx.iface, idx.if_linktype,
                pk.status, pk.ver, pk.src, pk.dst, pk.proto, pk.sport, pk.dport, pk.tos, pk.vlan,
                pk.nbytes, pk.flags, pk.frag, pk.ipid, pk.linktype)
        _join_fragments(pk)
    return pk


def _join_fragments(pk: Packets) -> None:
    """Give later fragments the ports of their first fragment (same src, dst, proto, IP id)."""
    later = np.nonzero((pk.frag == FRAG_LATER) & (pk.status == OK))[0]
    if len(later) == 0:
        return
    first = np.nonzero((pk.frag == FRAG_FIRST) & (pk.status == OK))[0]
    ports = {}
    for i in first:
        ports[(pk.src[i].tobytes(), pk.dst[i].tobytes(), int(pk.proto[i]), int(pk.ipid[i]))] = \
            (pk.sport[i], pk.dport[i])
    for i in later:
        hit = ports.get((pk.src[i].tobytes(), pk.dst[i].tobytes(), int(pk.proto[i]), int(pk.ipid[i])))
        if hit is not None:
            pk.sport[i], pk.dport[i] = hit
