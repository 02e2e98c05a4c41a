"""An independent flow table for tests: a plain per-packet dpkt loop, nothing shared with app.flows.decode.

Keys are ``(src, dst, proto, sport, dport, vlan, tos)`` with text addresses; values
``[packets, bytes]`` with bytes = IP total length, following the rules DESIGN.md
states (ICMP type/code in the destination port; later fragments take the ports of
a first fragment with the same src, dst, proto and IP id, else 0).
"""
from __future__ import annotations

import os
import socket
import struct
from collections import defaultdict
from pathlib import Path

import dpkt
import pytest

SHARED = Path(os.environ.get("FLOWSIGHT_PCAPS", Path(__file__).resolve().parents[2] / "shared" / "pcaps"))


def pcaps_dir() -> Path:
    """The shared capture corpus. Where it is missing: a failure under CI (which must never pass by skipping),
    and on a developer's machine without ../shared a skip that says so, as the project's rules ask."""
    if (SHARED / "MANIFEST.tsv").exists():
        return SHARED
    msg = f"the shared capture corpus is missing at {SHARED} (set FLOWSIGHT_PCAPS to its folder)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    else:
        pytest.skip(msg)
    raise AssertionError("unreachable")


def _reader(f):
    magic = f.read(4)
    f.seek(0)
    return dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)


def _ip_of(linktype: int, buf: bytes):
    """(ip object, outer vlan id) for a frame, or (None, 0)."""
    vlan = 0
    if linktype == 1:
        eth = dpkt.ethernet.Ethernet(buf)
        # the outer tag comes first on the wire (dpkt's vlan_tags order is not reliable for 3 tags)
        if len(buf) >= 16 and struct.unpack("!H", buf[12:14])[0] in (0x8100, 0x88A8, 0x9100):
            vlan = struct.unpack("!H", buf[14:16])[0] & 0xFFF
        data = eth.data
    elif linktype == 113:
        data = dpkt.sll.SLL(buf).data
    elif linktype in (101, 12, 14, 228, 229):
        v = buf[0] >> 4 if buf else 0
        data = dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
    elif linktype in (9, 50):
        rest = buf[2:] if buf[:2] == b"\xff\x03" else buf
        proto, rest = struct.unpack("!H", rest[:2])[0], rest[2:]
        data = dpkt.ip.IP(rest) if proto == 0x21 else dpkt.ip6.IP6(rest) if proto == 0x57 else None
    elif linktype in (0, 108):
        rest = buf[4:]
        v = rest[0] >> 4 if rest else 0
        data = dpkt.ip.IP(rest) if v == 4 else dpkt.ip6.IP6(rest) if v == 6 else None
    else:
        return None, 0
    if isinstance(data, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return data, vlan
    return None, 0


def ip_packets(path: str | Path):
    """(IP packet, outer VLAN id) of every frame of a capture that dpkt reads as IP."""
    with open(path, "rb") as f:
        reader = _reader(f)
        linktype = reader.datalink()
        for _ts, buf in reader:
            try:
                ip, vlan = _ip_of(linktype, buf)
            except (dpkt.dpkt.UnpackError, IndexError, struct.error):
                continue
            if ip is not None:
                yield ip, vlan


def flow_table(path: str | Path) -> dict[tuple, list[int]]:
    firsts: dict[tuple, tuple[int, int]] = {}
    later: list[tuple] = []
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for ip, vlan in ip_packets(path):
        if isinstance(ip, dpkt.ip.IP):
            src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
            proto, tos, nbytes, ipid = ip.p, ip.tos, ip.len, ip.id
            offset, more = ip.offset, bool(ip.mf)
        else:
            src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
            proto, tos, nbytes = ip.p, ip.fc, 40 + ip.plen
            frag = ip.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT) if hasattr(ip, "extension_hdrs") else None
            ipid = frag.id if frag else 0
            offset, more = (frag.frag_off, bool(frag.m_flag)) if frag else (0, False)
        sport = dport = 0
        l4 = ip.data
        if offset == 0:
            if proto in (6, 17, 132) and isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP, dpkt.sctp.SCTP)):
                sport, dport = l4.sport, l4.dport
            elif proto in (6, 17, 132) and isinstance(l4, bytes) and len(l4) >= 4:
                sport, dport = struct.unpack("!HH", l4[:4])
            elif proto in (1, 58):
                raw = bytes(l4) if not isinstance(l4, bytes) else l4
                if len(raw) >= 2:
                    dport = raw[0] * 256 + raw[1]
        key = (src, dst, proto, sport, dport, vlan, tos)
        if offset == 0 and more:
            firsts[(src, dst, proto, ipid)] = (sport, dport)
        if offset > 0:
            later.append((key, (src, dst, proto, ipid), nbytes))
            continue
        out[key][0] += 1
        out[key][1] += nbytes
    for key, fk, nbytes in later:
        ports = firsts.get(fk, (0, 0))
        k = key[:3] + ports + key[5:]
        out[k][0] += 1
        out[k][1] += nbytes
    return dict(out)


def tshark_packets(path: str | Path) -> dict[tuple, int]:
    """Packets per directed (src, dst, proto, sport, dport) from the tshark reference flow table.

    Only TCP and UDP stream rows: tshark counts a reassembled datagram's fragments
    apart, so files with fragments are compared on their other flows only.
    """
    import gzip

    ref = SHARED / "reference" / (Path(path).name + ".tshark-flows.tsv")
    opener = open
    if not ref.exists():
        ref = ref.with_suffix(ref.suffix + ".gz")
        opener = gzip.open
    out: dict[tuple, int] = defaultdict(int)
    with opener(ref, "rt") as f:
        for line in f:
            if line.startswith("#") or line.startswith("l4\t"):
                continue
            c = line.rstrip("\n").split("\t")
            if c[0] not in ("tcp", "udp"):
                continue
            # tshark's ip_proto column is the first IPv6 next header (0, 43, 44...); a flow is keyed by
            # its transport protocol, which the row type gives
            a, pa, b, pb, proto = c[2], int(c[3]), c[4], int(c[5]), 6 if c[0] == "tcp" else 17
            if int(c[7]):
                out[(a, b, proto, pa, pb)] += int(c[7])
            if int(c[9]):
                out[(b, a, proto, pb, pa)] += int(c[9])
    return dict(out)


def icmp_quotes(path: str | Path) -> dict[tuple, int]:
    """ICMP/ICMPv6 errors per quoted (src, dst, proto, sport, dport) of a UDP datagram.

    tshark files such an error under the quoted stream; a NetFlow meter counts it as ICMP.
    """
    out: dict[tuple, int] = defaultdict(int)
    for ip, _vlan in ip_packets(path):
        try:
            icmp = ip.data
            if not isinstance(icmp, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
                continue
            inner = bytes(icmp.data)[4:]  # skip the unused/MTU word
            if isinstance(icmp, dpkt.icmp.ICMP) and icmp.type in (3, 4, 5, 11, 12) and inner[:1] and inner[0] >> 4 == 4:
                q = dpkt.ip.IP(inner)
                fam = socket.AF_INET
            elif isinstance(icmp, dpkt.icmp6.ICMP6) and icmp.type in (1, 2, 3, 4) and inner[:1] and inner[0] >> 4 == 6:
                q = dpkt.ip6.IP6(inner)
                fam = socket.AF_INET6
            else:
                continue
            l4 = bytes(q.data) if not isinstance(q.data, bytes) else q.data
            # tshark 4.0 files a quoted UDP datagram under its udp.stream; quoted TCP gets no tcp.stream
            if q.p == 17 and len(l4) >= 8:
                sport, dport = struct.unpack("!HH", l4[:4])
                out[(socket.inet_ntop(fam, q.src), socket.inet_ntop(fam, q.dst), q.p, sport, dport)] += 1
        except (dpkt.dpkt.UnpackError, IndexError, struct.error, AttributeError):
            continue
    return dict(out)


_NDPI_ROW = None


def ndpi_packets(path: str | Path) -> dict[tuple, int] | None:
    """Packets per directed (src, dst, proto, sport, dport) from nDPI's expected ndpiReader output, if any."""
    import ipaddress
    import re

    global _NDPI_ROW
    _NDPI_ROW = _NDPI_ROW or re.compile(
        r"^\s+\d+\s+(TCP|UDP)\s+(\S+?):(\d+)\s+<?->\s+(\S+?):(\d+)\s.*?\[(\d+) pkts/\d+ bytes <?->\s+(\d+) pkts/")
    ref = SHARED / "reference" / (Path(path).name + ".ndpi-result.txt")
    if not ref.exists():
        return None
    out: dict[tuple, int] = defaultdict(int)
    for line in ref.read_text(errors="replace").splitlines():
        m = _NDPI_ROW.match(line)
        if not m:
            continue
        l4, a, pa, b, pb, ab, ba = m.groups()
        # nDPI prints IPv6 with a lone zero group compressed ("6::c2a0"), which RFC 5952 does not
        a, b = (str(ipaddress.ip_address(x.strip("[]"))) for x in (a, b))
        proto = 6 if l4 == "TCP" else 17
        if int(ab):
            out[(a, b, proto, int(pa), int(pb))] += int(ab)
        if int(ba):
            out[(b, a, proto, int(pb), int(pa))] += int(ba)
    return dict(out)
