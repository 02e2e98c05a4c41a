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
    from app.capture import pcap
    from app.flows import decode
    from tests import flowtools as ft

    try:
        idx = pcap.index(data)
    except pcap.CaptureError:
        return None
    ft.aggregate_arrays(decode.decode(data, idx), 60_000)
    return idx


def tcp_pcap(ts_us, src, dst, sport, dport, flags, payload_len=None) -> bytes:
    """A classic pcap of IPv4/TCP packets written column-wise (numpy), for captures of millions of packets:
    ``ts_us`` (int64 microseconds), ``src``/``dst`` (uint32 addresses), ports and TCP flags as arrays; each
    frame is 54 bytes on the wire as captured, its IP total length 40 plus ``payload_len`` (not captured)."""
    import numpy as np
    n = len(ts_us)
    rec = np.zeros((n, 16 + 54), np.uint8)
    hdr = rec[:, :16].view("<u4")
    hdr[:, 0] = np.asarray(ts_us, np.int64) // 1_000_000
    hdr[:, 1] = np.asarray(ts_us, np.int64) % 1_000_000
    hdr[:, 2] = 54
    iplen = 40 + (np.zeros(n, np.int64) if payload_len is None else np.asarray(payload_len, np.int64))
    hdr[:, 3] = 14 + iplen
    f = rec[:, 16:]
    f[:, 0:12] = np.frombuffer(b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb", np.uint8)
    f[:, 12:14] = (8, 0)
    f[:, 14] = 0x45
    f[:, 16:18] = np.stack([iplen >> 8, iplen & 255], 1)
    f[:, 22] = 64
    f[:, 23] = 6
    for off, col in ((26, src), (30, dst)):
        f[:, off:off + 4] = np.asarray(col, ">u4").view(np.uint8).reshape(n, 4)
    for off, col in ((34, sport), (36, dport)):
        f[:, off:off + 2] = np.asarray(col, ">u2").view(np.uint8).reshape(n, 2)
    f[:, 46] = 0x50
    f[:, 47] = np.asarray(flags, np.uint8)
    f[:, 48:50] = (0xFF, 0xFF)
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + rec.tobytes()
