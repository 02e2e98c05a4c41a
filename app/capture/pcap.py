"""Capture files: recognise pcap and pcapng, index their packet records, cut them into chunks.

Pure code (no Faust). The record walk runs in compiled code (numba); nothing here
loops over packets in Python.

Errors are reported as :class:`CaptureError` (the only exception this module
raises) or, for damage after some good records, as ``Index.error``: the packets
before the damage stay readable. Error kinds, a closed set:

``empty``               no bytes at all
``gzip``                a gzip file; decompress it first
``bad-magic``           not a pcap or pcapng file
``short-header``        the file header is cut short
``bad-header``          the file header holds impossible values
``truncated``           the file ends inside a record (for example an upload cut off)
``bad-record-length``   a record header gives an impossible length
``bad-timestamp``       a timestamp fraction out of range (microseconds >= 10^6, nanoseconds >= 10^9)
``bad-block``           a pcapng block with a bad length, or a packet for an undeclared interface
"""
from __future__ import annotations

from typing import Literal

from dataclasses import dataclass

import numpy as np
from numba import njit

PCAP_US_LE = b"\xd4\xc3\xb2\xa1"
PCAP_US_BE = b"\xa1\xb2\xc3\xd4"
PCAP_NS_LE = b"\x4d\x3c\xb2\xa1"
PCAP_NS_BE = b"\xa1\xb2\x3c\x4d"
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP = b"\x1f\x8b"

#: Largest packet record accepted whatever the snaplen says (libpcap's limit).
MAX_RECORD = 262144 * 4
MAX_INTERFACES = 65536
#: Captures up to this size are walked once into arrays sized for the most records they can hold.
SINGLE_PASS_BYTES = 16 << 20

ERR_NONE, ERR_TRUNCATED, ERR_RECORD_LENGTH, ERR_TIMESTAMP, ERR_BLOCK = 0, 1, 2, 3, 4
ERROR_KINDS = {ERR_TRUNCATED: "truncated", ERR_RECORD_LENGTH: "bad-record-length",
               ERR_TIMESTAMP: "bad-timestamp", ERR_BLOCK: "bad-block"}


class CaptureError(ValueError):
    """A capture that cannot be read (further). ``kind`` is one of the module's error kinds."""

    def __init__(self, kind: str, offset: int, detail: str):
        self.kind, self.offset, self.detail = kind, offset, detail
        super().__init__(f"{kind} at byte {offset}: {detail}")


@dataclass
class Index:
    """Where each packet of a capture lies. Arrays have one entry per readable packet."""

    format: str                 #: "pcap" or "pcapng"
    record_start: np.ndarray    #: byte offset of each packet's record (or block) header
    data_off: np.ndarray        #: byte offset of each packet's first captured byte
    caplen: np.ndarray          #: captured bytes of each packet
    wirelen: np.ndarray         #: bytes of each packet on the wire
    ts_ns: np.ndarray           #: capture time of each packet, ns since the Unix epoch
    iface: np.ndarray           #: interface number of each packet (file-wide, across sections)
    if_linktype: np.ndarray     #: link type of each interface
    if_snaplen: np.ndarray      #: snaplen of each interface
    end: int                    #: offset just past the last readable block
    header_off: np.ndarray      #: pcapng: offsets of SHB/IDB blocks; pcap: [0]
    header_len: np.ndarray      #: their lengths
    header_section: np.ndarray  #: their section numbers
    section: np.ndarray         #: section number of each packet
    error: CaptureError | None  #: damage found after the readable packets, if any

    @property
    def packets(self) -> int:
        return len(self.data_off)

    def slice(self, lo: int, hi: int) -> Index:
        """The packets lo..hi-1 of this index, over the same bytes (interfaces and headers kept)."""
        cut = lambda a: a[lo:hi]
        return Index(self.format, cut(self.record_start), cut(self.data_off), cut(self.caplen), cut(self.wirelen),
                     cut(self.ts_ns), cut(self.iface), self.if_linktype, self.if_snaplen, self.end, self.header_off,
                     self.header_len, self.header_section, cut(self.section), self.error)


@njit(inline="always")
def _u16(b, o, be):
    if be:
        return (np.int64(b[o]) << 8) | np.int64(b[o + 1])
    return (np.int64(b[o + 1]) << 8) | np.int64(b[o])


@njit(inline="always")
def _u32(b, o, be):
    if be:
        return (np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8) | np.int64(b[o + 3])
    return (np.int64(b[o + 3]) << 24) | (np.int64(b[o + 2]) << 16) | (np.int64(b[o + 1]) << 8) | np.int64(b[o])


@njit(cache=True, nogil=True)
def _walk_pcap(buf, be, nano, snaplen, cap, rec, data, caplen, wirelen, ts):
    size = buf.shape[0]
    off = 24
    n = 0
    limit = max(snaplen, MAX_RECORD)
    frac_max = 1000000000 if nano else 1000000
    mult = 1 if nano else 1000
    while off < size:
        if off + 16 > size:
            return n, ERR_TRUNCATED, off
        sec = _u32(buf, off, be)
        frac = _u32(buf, off + 4, be)
        incl = _u32(buf, off + 8, be)
        orig = _u32(buf, off + 12, be)
        if incl > limit:
            return n, ERR_RECORD_LENGTH, off
        if frac >= frac_max:
            return n, ERR_TIMESTAMP, off
        if off + 16 + incl > size:
            return n, ERR_TRUNCATED, off
        if n < cap:
            rec[n] = off
            data[n] = off + 16
            caplen[n] = incl
            wirelen[n] = max(orig, incl)
            ts[n] = sec * 1000000000 + frac * mult
        n += 1
        off += 16 + incl
    return n, ERR_NONE, off


@njit(cache=True, nogil=True)
def _ts_to_ns(t, pow2, exp):
    if pow2:
        return (t >> exp) * 1000000000 + (((t & ((np.int64(1) << exp) - 1)) * 1000000000) >> exp)
    if exp <= 9:
        scale = np.int64(1)
        for _ in range(9 - exp):
            scale *= 10
        return t * scale
    div = np.int64(1)
    for _ in range(exp - 9):
        div *= 10
    return t // div


@njit(cache=True, nogil=True)
def _walk_pcapng(buf, cap, hcap, rec, data, caplen, wirelen, ts, iface, sect,
                 if_lt, if_snap, if_pow2, if_exp, if_off, hoff, hlen, hsec):
    """Walk pcapng blocks. Returns (packets, interfaces, header blocks, error kind, error/end offset)."""
    size = buf.shape[0]
    off = 0
    n = 0
    nif = 0
    nh = 0
    be = False
    section = -1
    if_base = 0
    last_ts = np.int64(0)
    while off < size:
        if off + 12 > size:
            return n, nif, nh, ERR_TRUNCATED, off
        btype = _u32(buf, off, be)
        if btype == 0x0A0D0D0A:
            bom = _u32(buf, off + 8, False)
            if bom == 0x1A2B3C4D:
                be = False
            elif bom == 0x4D3C2B1A:
                be = True
            else:
                return n, nif, nh, ERR_BLOCK, off
            section += 1
            if_base = nif
        blen = _u32(buf, off + 4, be)
        if blen < 12 or blen % 4 != 0:
            return n, nif, nh, ERR_BLOCK, off
        if off + blen > size:
            return n, nif, nh, ERR_TRUNCATED, off
        if _u32(buf, off + blen - 4, be) != blen:
            return n, nif, nh, ERR_BLOCK, off
        if section < 0:
            return n, nif, nh, ERR_BLOCK, off
        if btype == 0x0A0D0D0A or btype == 1:
            if nh < hcap:
                hoff[nh] = off
                hlen[nh] = blen
                hsec[nh] = section
            nh += 1
        if btype == 1:
            if blen < 20 or nif >= if_lt.shape[0]:
                return n, nif, nh, ERR_BLOCK, off
            if_lt[nif] = _u16(buf, off + 8, be)
            if_snap[nif] = _u32(buf, off + 12, be)
            if_pow2[nif] = False
            if_exp[nif] = 6
            if_off[nif] = 0
            o = off + 16
            while o + 4 <= off + blen - 4:
                code = _u16(buf, o, be)
                olen = _u16(buf, o + 2, be)
                if code == 0:
                    break
                if o + 4 + olen > off + blen - 4:
                    break
                if code == 9 and olen >= 1:
                    v = np.int64(buf[o + 4])
                    if_pow2[nif] = (v & 0x80) != 0
                    if_exp[nif] = v & 0x7F
                    if if_exp[nif] > 62 or (not if_pow2[nif] and if_exp[nif] > 18):
                        return n, nif, nh, ERR_BLOCK, off
                elif code == 14 and olen >= 8:
                    if_off[nif] = (_u32(buf, o + 4, be) << 32) | _u32(buf, o + 8, be) if be else \
                        (_u32(buf, o + 8, be) << 32) | _u32(buf, o + 4, be)
                o += 4 + ((olen + 3) // 4) * 4
            nif += 1
        elif btype == 6 or btype == 2:
            if blen < 32:
                return n, nif, nh, ERR_BLOCK, off
            if btype == 6:
                ifid = _u32(buf, off + 8, be)
            else:
                ifid = _u16(buf, off + 8, be)
            g = if_base + ifid
            if g >= nif:
                return n, nif, nh, ERR_BLOCK, off
            incl = _u32(buf, off + 20, be)
            orig = _u32(buf, off + 24, be)
            if incl > blen - 32:
                return n, nif, nh, ERR_RECORD_LENGTH, off
            raw = (_u32(buf, off + 12, be) << 32) | _u32(buf, off + 16, be)
            t = _ts_to_ns(raw, if_pow2[g], if_exp[g]) + if_off[g] * 1000000000
            if n < cap:
                rec[n] = off
                data[n] = off + 28
                caplen[n] = incl
                wirelen[n] = max(orig, incl)
                ts[n] = t
                iface[n] = g
                sect[n] = section
            last_ts = t
            n += 1
        elif btype == 3:
            if blen < 16 or if_base >= nif:
                return n, nif, nh, ERR_BLOCK, off
            orig = _u32(buf, off + 8, be)
            incl = min(orig, blen - 16)
            if if_snap[if_base] > 0:
                incl = min(incl, if_snap[if_base])
            if n < cap:
                rec[n] = off
                data[n] = off + 12
                caplen[n] = incl
                wirelen[n] = max(orig, incl)
                ts[n] = last_ts
                iface[n] = if_base
                sect[n] = section
            n += 1
        off += blen
    return n, nif, nh, ERR_NONE, off


def as_bytes_array(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    """A plain uint8 array over the bytes, without copying (np.memmap included)."""
    if isinstance(data, np.ndarray):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def check_header(head: bytes) -> str:
    """Name the format of a capture from its first bytes, or raise CaptureError."""
    if len(head) == 0:
        raise CaptureError("empty", 0, "the body is empty; send a pcap or pcapng file")
    magic = head[:4]
    if head[:2] == GZIP:
        raise CaptureError("gzip", 0, "this is a gzip file; decompress it (gunzip) and send the pcap inside")
    if magic in (PCAP_US_LE, PCAP_US_BE, PCAP_NS_LE, PCAP_NS_BE):
        if len(head) < 24:
            raise CaptureError("short-header", len(head), f"a pcap file header is 24 bytes, this file has {len(head)}")
        be = magic in (PCAP_US_BE, PCAP_NS_BE)
        major = int.from_bytes(head[4:6], "big" if be else "little")
        if major != 2:
            raise CaptureError("bad-header", 4, f"pcap version {major} is not 2")
        return "pcap"
    if magic == PCAPNG_SHB:
        if len(head) < 28:
            raise CaptureError("short-header", len(head), "a pcapng section header block is at least 28 bytes")
        if head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise CaptureError("bad-header", 8, "the pcapng byte-order magic is wrong")
        return "pcapng"
    raise CaptureError("bad-magic", 0,
                       f"magic number {magic.hex()} is neither pcap (a1b2c3d4, a1b23c4d) nor pcapng (0a0d0d0a)")


def pcap_linktype(buf: np.ndarray) -> tuple[int, int, bool, bool]:
    """(link type, snaplen, big-endian, nanosecond) of a classic pcap file header."""
    magic = bytes(buf[:4])
    be = magic in (PCAP_US_BE, PCAP_NS_BE)
    nano = magic in (PCAP_NS_LE, PCAP_NS_BE)
    order: Literal["big", "little"] = "big" if be else "little"
    snaplen = int.from_bytes(bytes(buf[16:20]), order)
    # the upper bits of the link-type field carry FCS flags (pcap-linktype(7))
    linktype = int.from_bytes(bytes(buf[20:24]), order) & 0x0FFFFFFF
    return linktype, snaplen, be, nano


def index(data: bytes | memoryview | np.ndarray) -> Index:
    """Index every readable packet of a capture. Raises CaptureError only for an unreadable file header."""
    buf = as_bytes_array(data)
    fmt = check_header(bytes(buf[:28]))
    def z(n: int, t: type = np.int64) -> np.ndarray:
        return np.zeros(n, dtype=t)

    if fmt == "pcap":
        linktype, snaplen, be, nano = pcap_linktype(buf)
        args = (buf, be, nano, snaplen)
        if len(buf) <= SINGLE_PASS_BYTES:  # at most one record per 16 bytes: allocate that, walk once
            cap = (len(buf) - 24) // 16 + 1
            e = lambda: np.empty(cap, np.int64)
            rec, dat, cl, wl, ts = e(), e(), e(), e(), e()
            n, err, end = _walk_pcap(*args, cap, rec, dat, cl, wl, ts)
            rec, dat, cl, wl, ts = rec[:n], dat[:n], cl[:n], wl[:n], ts[:n]
        else:  # count first, so a big file does not reserve len/16 entries
            n, _, _ = _walk_pcap(*args, 0, z(0), z(0), z(0), z(0), z(0))
            rec, dat, cl, wl, ts = z(n), z(n), z(n), z(n), z(n)
            n, err, end = _walk_pcap(*args, n, rec, dat, cl, wl, ts)
        idx = Index("pcap", rec, dat, cl, wl, ts, z(n, np.int32), np.array([linktype], np.int64),
                    np.array([snaplen], np.int64), end,
                    np.array([0], np.int64), np.array([24], np.int64), z(1, np.int32), z(n, np.int32), None)
    else:
        nif_cap = min(MAX_INTERFACES, len(buf) // 20 + 1)
        ifs = (z(nif_cap), z(nif_cap), z(nif_cap, np.bool_), z(nif_cap), z(nif_cap))
        n, nif, nh, _, _ = _walk_pcapng(buf, 0, 0, z(0), z(0), z(0), z(0), z(0), z(0, np.int32),
                                        z(0, np.int32), *ifs, z(0), z(0), z(0, np.int32))
        rec, dat, cl, wl, ts = z(n), z(n), z(n), z(n), z(n)
        ifc, sec = z(n, np.int32), z(n, np.int32)
        ho, hl, hs = z(nh), z(nh), z(nh, np.int32)
        n, nif, nh, err, end = _walk_pcapng(buf, n, nh, rec, dat, cl, wl, ts, ifc, sec, *ifs, ho, hl, hs)
        idx = Index("pcapng", rec, dat, cl, wl, ts, ifc, ifs[0][:nif].copy(), ifs[1][:nif].copy(),
                    end, ho, hl, hs, sec, None)
    if err != ERR_NONE:
        idx.error = CaptureError(ERROR_KINDS[err], int(end), f"after {n} readable packets")
        idx.end = int(end)
    return idx


@dataclass(frozen=True)
class Chunk:
    """A self-contained capture file holding a run of whole packet records of a bigger one."""

    index: int
    data: bytes
    packets: int
    #: where its packet records lie in the bigger capture: ``[start, stop)``
    span: tuple[int, int] = (0, 0)


@njit(cache=True, nogil=True)
def _plan(record_start, end, prefix_len, chunk_bytes):
    """First packet of each chunk: greedy, so the same file always cuts the same way."""
    n = record_start.shape[0]
    starts = np.empty(n, dtype=np.int64)
    k = 0
    i = 0
    while i < n:
        starts[k] = i
        k += 1
        first = record_start[i]
        j = i + 1
        while j < n and (record_start[j + 1] if j + 1 < n else end) - first + prefix_len[i] <= chunk_bytes:
            j += 1
        i = j
    return starts[:k]


class Chunks:
    """The chunks of an indexed capture, in order: ``len()`` is known before any is built.
    Deterministic: the same bytes and chunk size always give the same chunks."""

    def __init__(self, data: bytes | memoryview | np.ndarray, idx: Index, chunk_bytes: int):
        self.buf = as_bytes_array(data)
        self.idx = idx
        self.chunk_bytes = chunk_bytes
        n = idx.packets
        if n == 0:
            self.starts = np.zeros(0, np.int64)
            return
        if idx.format == "pcap":
            prefix_len = np.full(n, 24, dtype=np.int64)
        else:
            prefix_len = np.zeros(n, dtype=np.int64)
            # header blocks of each packet's section that precede it
            for s in np.unique(idx.section):
                sel = idx.header_section == s
                lens = idx.header_len[sel]
                pk = np.nonzero(idx.section == s)[0]
                cum = np.concatenate(([0], np.cumsum(lens)))
                prefix_len[pk] = cum[np.searchsorted(idx.header_off[sel], idx.record_start[pk], side="left")]
        self.starts = _plan(idx.record_start, idx.end, prefix_len, chunk_bytes)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self):
        buf, idx, starts = self.buf, self.idx, self.starts
        bounds = np.append(idx.record_start[starts], idx.end)
        prefix = bytes(buf[:24])
        for k, i in enumerate(starts):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if idx.format == "pcapng":
                sel = (idx.header_section == idx.section[i]) & (idx.header_off < lo)
                prefix = b"".join(bytes(buf[o:o + ln]) for o, ln in zip(idx.header_off[sel], idx.header_len[sel]))
            npk = int((starts[k + 1] if k + 1 < len(starts) else idx.packets) - i)
            yield Chunk(k, b"".join((prefix, buf[lo:hi])), npk, (lo, hi))


def chunks(data: bytes | memoryview | np.ndarray, idx: Index, chunk_bytes: int) -> Chunks:
    """The chunks of an indexed capture (see :class:`Chunks`)."""
    return Chunks(data, idx, chunk_bytes)
