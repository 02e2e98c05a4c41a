"""Tiny capture writers for tests: known packets in, exact expectations out."""
from __future__ import annotations

import io
from decimal import Decimal
import socket
import struct

import dpkt


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, flags: int = dpkt.tcp.TH_ACK, payload: bytes = b"",
             tos: int = 0, vlan: int | None = None) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, tos=tos, data=tcp)
    ip.len = len(bytes(ip))
    return _ether(bytes(ip), 0x0800, vlan)


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(bytes(udp))
    ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                       nxt=17, hlim=64, data=udp)
    ip6.plen = len(bytes(udp))
    return _ether(bytes(ip6), 0x86DD, None)


def _ether(l3: bytes, etype: int, vlan: int | None) -> bytes:
    head = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", etype) + l3


def pcap(packets: list[tuple[float, bytes]], nano: bool = False, big_endian: bool = False, snaplen: int = 65535,
         linktype: int = 1) -> bytes:
    """A classic pcap file of (timestamp, frame) pairs."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = io.BytesIO()
    out.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    for ts, frame in packets:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        cap = frame[:snaplen]
        out.write(struct.pack(e + "IIII", sec, frac, len(cap), len(frame)) + cap)
    return out.getvalue()


def pcapng(packets: list[tuple[float, bytes]], tsresol: int | None = None) -> bytes:
    """A little-endian pcapng file with one Ethernet interface (if_tsresol 10^-tsresol if given)."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
    idb = block(1, struct.pack("<HHI", 1, 0, 65535) + opts)
    res = 10 ** (tsresol if tsresol is not None else 6)
    out = shb + idb
    for ts, frame in packets:
        t = int(Decimal(repr(ts)) * res)  # exact: a float product loses nanoseconds
        out += block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    return out


def read_through(data: bytes):
    """Index, decode and aggregate a capture, as the pipeline does; ``None`` for an unreadable header.
    Raises whatever else the reader raises (a test that calls it wants nothing else)."""
    from app import capture, decode, flows

    try:
        idx = capture.index(data)
    except capture.CaptureError:
        return None
    flows.aggregate_arrays(decode.decode(data, idx), 60_000)
    return idx
