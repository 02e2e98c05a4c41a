"""Packet decoding: captured bytes to the header fields a flow key needs.

Pure code (no Faust). One compiled (numba) pass over the packets of an indexed
capture fills column arrays; nothing loops over packets in Python except the
fix-up of IP fragments, which touches fragments only.

Link types: Ethernet (1), Linux cooked v1 (113) and v2 (276), raw IP (101, 12,
14, 228, 229), BSD NULL (0) and LOOP (108), PPP (9), PPP-in-HDLC (50) and
Linux NFLOG (239).
Layer 2.5: 802.1Q / 802.1ad / QinQ tags (the outer VLAN id is kept), MPLS label
stacks carrying IP, PPPoE session frames. IPv4 with options, IPv6 with
hop-by-hop, routing, destination-options, fragment and AH extension headers.
Ports for TCP, UDP, UDP-Lite, SCTP and DCCP; ICMP and ICMPv6 put
``type * 256 + code`` in the destination port, as NetFlow does. Other
protocols get ports 0. Tunnels are counted as flows of their outer header; an
inner-tunnel pass (``decode(..., inner=True)``) gives the flows inside them too:
GRE (with PPTP's enhanced GRE and ERSPAN II/III), VXLAN, Geneve, GTP-U, IP-in-IP,
6in4, 4in6, Teredo, AYIYA and MPLS over UDP.

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

from app.capture.pcap import Index, as_bytes_array

OK, NON_IP, UNSUPPORTED_LINK, TRUNCATED, BAD_IP, UNSUPPORTED_ENCAP, NOT_TUNNEL = range(7)
#: Why a packet gave no flow, by status code (a closed set).
SKIP_REASONS = {
    NON_IP: "non-ip",                          # ARP, LLDP, STP...: not an IP packet
    UNSUPPORTED_LINK: "unsupported-linktype",  # a link type the decoder does not read
    TRUNCATED: "truncated",                    # too few captured bytes for the IP header
    BAD_IP: "bad-ip-header",                   # an IP header with impossible values
    UNSUPPORTED_ENCAP: "unsupported-encapsulation",  # e.g. MPLS carrying Ethernet
    NOT_TUNNEL: "not-a-tunnel",                # inner-tunnel pass only: the packet has no inner flow
}
FRAG_NONE, FRAG_FIRST, FRAG_LATER = 0, 1, 2
SUPPORTED_LINKTYPES = frozenset({0, 1, 9, 12, 14, 50, 101, 108, 113, 228, 229, 239, 276})


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


@njit(inline="always")
def _link(buf, p, end, lt):
    """Skip the link header. Returns (offset, ethertype or -2 for 'IP, by version nibble', status)."""
    if lt == 1:
        if p + 14 > end:
            return p, -1, TRUNCATED
        return p + 14, _be16(buf, p + 12), OK
    if lt == 113:
        if p + 16 > end:
            return p, -1, TRUNCATED
        return p + 16, _be16(buf, p + 14), OK
    if lt == 276:
        if p + 20 > end:
            return p, -1, TRUNCATED
        return p + 20, _be16(buf, p), OK
    if lt == 228:
        return p, 0x0800, OK
    if lt == 229:
        return p, 0x86DD, OK
    if lt == 101 or lt == 12 or lt == 14:
        return p, -2, OK
    if lt == 0 or lt == 108:
        return p + 4, -2, OK
    if lt == 9 or lt == 50:
        return _ppp(buf, p, end)
    if lt == 239:  # NFLOG: a 4-byte header, then TLVs (little-endian length and type); type 9 holds the packet
        q = p + 4
        while q + 4 <= end:
            ln = np.int64(buf[q]) | (np.int64(buf[q + 1]) << 8)
            ty = np.int64(buf[q + 2]) | (np.int64(buf[q + 3]) << 8)
            if ln < 4:
                return p, -1, TRUNCATED
            if ty == 9:
                return q + 4, -2, OK
            q += (ln + 3) // 4 * 4
        return p, -1, NON_IP
    return p, -1, UNSUPPORTED_LINK


@njit(inline="always")
def _ppp(buf, p, end):
    """A PPP frame (optional address/control, 1- or 2-byte protocol) to (offset, ethertype, status)."""
    if p + 2 <= end and buf[p] == 0xFF and buf[p + 1] == 0x03:
        p += 2
    if p + 1 > end:
        return p, -1, TRUNCATED
    if buf[p] & 1:  # protocol field compressed to one byte
        pp = np.int64(buf[p])
        p += 1
    else:
        if p + 2 > end:
            return p, -1, TRUNCATED
        pp = _be16(buf, p)
        p += 2
    if pp == 0x21:
        return p, 0x0800, OK
    if pp == 0x57:
        return p, 0x86DD, OK
    if pp == 0x281 or pp == 0x283:  # MPLS unicast / multicast
        return p, 0x8847, OK
    return p, -1, NON_IP


@njit(inline="always")
def _l25(buf, p, end, etype):
    """VLAN tags, MPLS labels and PPPoE. Returns (offset, ethertype, outer VLAN id or -1, status)."""
    vl = -1
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if p + 4 > end:
                return p, etype, vl, TRUNCATED
            if vl < 0:
                vl = _be16(buf, p) & 0xFFF
            etype = _be16(buf, p + 2)
            p += 4
        elif etype == 0x8847 or etype == 0x8848:
            while True:
                if p + 4 > end:
                    return p, etype, vl, TRUNCATED
                bos = buf[p + 2] & 1
                p += 4
                if bos:
                    break
            etype = -2
        elif etype == 0x8864:
            if p + 8 > end:
                return p, etype, vl, TRUNCATED
            p, etype, st = _ppp(buf, p + 6, end)
            if st != OK:
                return p, etype, vl, st
        else:
            break
    if etype == -2:
        if p + 1 > end:
            return p, etype, vl, TRUNCATED
        v = buf[p] >> 4
        if v == 4:
            etype = 0x0800
        elif v == 6:
            etype = 0x86DD
        else:
            return p, etype, vl, UNSUPPORTED_ENCAP
    return p, etype, vl, OK


@njit(inline="always")
def _tunnel(buf, l4, end, pr, sp, dp):
    """Where the inner packet of a tunnel starts: (offset, ethertype; 0x6558 = an Ethernet frame,
    -2 = IP by version nibble), or (-1, -1) for no tunnel."""
    if l4 < 0:
        return -1, -1
    if pr == 4:
        return l4, 0x0800
    if pr == 41:
        return l4, 0x86DD
    if pr == 47:
        if l4 + 4 > end:
            return -1, -1
        fl = buf[l4]
        ver = buf[l4 + 1] & 7
        pt = _be16(buf, l4 + 2)
        if ver == 1:  # enhanced GRE (PPTP): key always present, ack optional
            q = l4 + 8 + (4 if fl & 0x10 else 0) + (4 if buf[l4 + 1] & 0x80 else 0)
            if pt != 0x880B or q >= end:
                return -1, -1
            q2, et, st = _ppp(buf, q, end)
            return (q2, et) if st == OK else (-1, -1)
        if fl & 0x40:  # source routing: rare and long gone
            return -1, -1
        q = l4 + 4 + (4 if fl & 0x80 else 0) + (4 if fl & 0x20 else 0) + (4 if fl & 0x10 else 0)
        if pt == 0x88BE:  # ERSPAN type II
            return q + 8, 0x6558
        if pt == 0x22EB:  # ERSPAN type III, with its optional sub-header
            if q + 12 > end:
                return -1, -1
            return q + 12 + (8 if buf[q + 11] & 1 else 0), 0x6558
        if pt == 0x0800 or pt == 0x86DD or pt == 0x6558 or pt == 0x8847:
            return q, pt
        return -1, -1
    if pr == 17:
        q = l4 + 8
        if dp == 4789 or dp == 8472:
            return q + 8, 0x6558
        if dp == 6081:
            if q + 8 > end:
                return -1, -1
            pt = _be16(buf, q + 2)
            q2 = q + 8 + (buf[q] & 0x3F) * 4
            if pt == 0x6558 or pt == 0x0800 or pt == 0x86DD:
                return q2, pt
            return -1, -1
        if dp == 2152 or sp == 2152:
            if q + 8 > end or buf[q + 1] != 0xFF:
                return -1, -1
            fl = buf[q]
            q2 = q + 8
            if fl & 0x07:
                if q2 + 4 > end:
                    return -1, -1
                nxt = buf[q2 + 3]
                q2 += 4
                while nxt != 0:
                    if q2 + 1 > end or buf[q2] == 0:
                        return -1, -1
                    ln = np.int64(buf[q2]) * 4
                    if q2 + ln > end:
                        return -1, -1
                    nxt = buf[q2 + ln - 1]
                    q2 += ln
            return q2, -2
        if dp == 6635:  # MPLS over UDP (RFC 7510)
            return q, 0x8847
        if dp == 5072 or sp == 5072:  # AYIYA: identity and signature lengths are in the header
            if q + 8 > end:
                return -1, -1
            q2 = q + 8 + (1 << (buf[q] >> 4)) + (buf[q + 1] >> 4) * 4
            nxt = buf[q + 3]
            if nxt == 41:
                return q2, 0x86DD
            if nxt == 4:
                return q2, 0x0800
            return -1, -1
        if dp == 3544 or sp == 3544:
            if q + 2 <= end and buf[q] == 0 and buf[q + 1] == 1:  # authentication indicator
                if q + 4 > end:
                    return -1, -1
                q += 4 + buf[q + 2] + buf[q + 3] + 9
            if q + 2 <= end and buf[q] == 0 and buf[q + 1] == 0:  # origin indication
                q += 8
            if q + 1 <= end and buf[q] >> 4 == 6:
                return q, 0x86DD
    return -1, -1


@njit(cache=True, nogil=True)
def _decode(buf, data_off, caplen, wirelen, iface, if_lt, inner,
            status, ver, src, dst, proto, sport, dport, tos, vlan, nbytes, flags, frag, ipid, lts):
    """Fill the columns. With ``inner``, follow tunnels to their innermost packet; packets that are
    no tunnel get status NOT_TUNNEL."""
    n = data_off.shape[0]
    for i in range(n):
        start = data_off[i]
        end = start + caplen[i]
        lt = if_lt[iface[i]]
        lts[i] = lt
        p, etype, st = _link(buf, start, end, lt)
        depth = 0
        while True:
            # every output field is set here, so the arrays may come uninitialised
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
            if st != OK:
                break
            p, etype, vl, st = _l25(buf, p, end, etype)
            if st != OK:
                break
            if vl >= 0:
                vlan[i] = vl
            l4 = -1
            if etype == 0x0800:
                if p + 20 > end:
                    st = TRUNCATED
                    break
                ihl = (buf[p] & 15) * 4
                tot = _be16(buf, p + 2)
                if buf[p] >> 4 != 4 or ihl < 20 or (tot != 0 and tot < ihl):
                    st = BAD_IP
                    break
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
                    st = TRUNCATED
                    break
                if buf[p] >> 4 != 6:
                    st = BAD_IP
                    break
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
                st = NON_IP
                break
            if frag[i] == FRAG_LATER:
                l4 = -1
            pr = proto[i]
            if l4 >= 0:
                if pr == 6 or pr == 17 or pr == 132 or pr == 136 or pr == 33:
                    if l4 + 4 <= end:
                        sport[i] = _be16(buf, l4)
                        dport[i] = _be16(buf, l4 + 2)
                    if pr == 6 and l4 + 14 <= end:
                        flags[i] = buf[l4 + 13] | ((buf[l4 + 12] & 1) << 8)
                elif pr == 1 or pr == 58:
                    if l4 + 2 <= end:
                        dport[i] = (np.int64(buf[l4]) << 8) | buf[l4 + 1]
            if not inner or depth >= 4:
                break
            q, et = _tunnel(buf, l4, end, pr, sport[i], dport[i])
            if q < 0:
                break
            depth += 1
            if et == 0x6558:
                if q + 14 > end:
                    st = TRUNCATED
                    continue
                p, etype = q + 14, _be16(buf, q + 12)
            elif et == -2:
                p, etype = q, -2
                if q + 1 > end:
                    st = TRUNCATED
                    continue
                v = buf[q] >> 4
                etype = 0x0800 if v == 4 else (0x86DD if v == 6 else -1)
                if etype < 0:
                    st = UNSUPPORTED_ENCAP
                    continue
            else:
                p, etype = q, et
        if inner and depth == 0 and st == OK:
            st = NOT_TUNNEL
        status[i] = st


def decode(data: bytes | memoryview | np.ndarray, idx: Index, inner: bool = False) -> Packets:
    """Decode every packet of an indexed capture. With ``inner``, decode the innermost packet of each
    tunnel instead (GRE incl. PPTP and ERSPAN, VXLAN, Geneve, GTP-U, IP-in-IP, 6in4, 4in6, Teredo);
    other packets get status NOT_TUNNEL."""
    buf = as_bytes_array(data)
    n = idx.packets
    z = np.empty
    pk = Packets(status=z(n, np.uint8), ver=z(n, np.uint8), src=z((n, 16), np.uint8), dst=z((n, 16), np.uint8),
                 proto=z(n, np.uint8), sport=z(n, np.uint16), dport=z(n, np.uint16), tos=z(n, np.uint8),
                 vlan=z(n, np.uint16), nbytes=z(n, np.int64), flags=z(n, np.uint16), frag=z(n, np.uint8),
                 ipid=z(n, np.uint32), ts_ns=idx.ts_ns, linktype=z(n, np.int32))
    if n:
        _decode(buf, idx.data_off, idx.caplen, idx.wirelen, idx.iface, idx.if_linktype, inner,
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
