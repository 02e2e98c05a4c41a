"""NetFlow v5 and IPFIX (RFC 7011) encoding of flow records, for the collectors analysts already run.

Pure code (no Faust). Both encoders take the JSON flow records of the pipeline
(IPFIX information element names, app/flows/parts.py) and return UDP datagrams.

**NetFlow v5**: a 24-byte header and up to 30 records of 48 bytes per datagram.
IPv4 only: an IPv6 record is counted in ``skipped``. v5 carries times as
milliseconds since the exporter booted, in 32 bits; the fake boot time is
stable: the start of the 2^31 ms (about 24.8 days) epoch that holds the
datagram's first flow, and a datagram never spans two epochs. Counters above 32
bits are split into several records of the same key.

**IPFIX**: one template for IPv4 flows (id 256) and one for IPv6 flows (id 257),
sent in the first message and again every ``template_every`` messages; data
records use the same names as the JSON records. The sequence number counts data
records, as RFC 7011 says.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.records import ipfix_template

V5_MAX = 30
EPOCH_MS = 1 << 31
U32 = (1 << 32) - 1

#: ``template id -> [(name, IE id, length)]``: IPv4 records use 256, IPv6 records 257 (app/records.py)
TEMPLATES = {256: ipfix_template(4), 257: ipfix_template(6)}


def _v5_chunks(rec: dict) -> list[tuple[int, int]]:
    """(packets, bytes) pieces that each fit 32 bits."""
    pk, by = int(rec["packetDeltaCount"]), int(rec["octetDeltaCount"])
    n = max(1, -(-pk // U32), -(-by // U32))
    return [(pk // n + (i < pk % n), by // n + (i < by % n)) for i in range(n)]


@dataclass
class V5Encoder:
    """Encodes records as NetFlow v5 datagrams (IPv4 only; IPv6 records are counted in ``skipped``)."""

    engine_id: int = 0
    sequence: int = 0        #: flows sent so far (the header's flow_sequence)
    skipped: int = 0         #: IPv6 records, which v5 cannot carry

    def encode(self, records: list[dict]) -> list[bytes]:
        rows = []
        for rec in records:
            if "sourceIPv4Address" not in rec:
                self.skipped += 1
                continue
            for pk, by in _v5_chunks(rec):
                rows.append((rec, pk, by))
        rows.sort(key=lambda r: r[0]["flowStartMilliseconds"] // EPOCH_MS)
        out = []
        i = 0
        while i < len(rows):
            epoch = rows[i][0]["flowStartMilliseconds"] // EPOCH_MS
            batch: list = []
            while i < len(rows) and len(batch) < V5_MAX and rows[i][0]["flowStartMilliseconds"] // EPOCH_MS == epoch:
                batch.append(rows[i])
                i += 1
            out.append(self._datagram(batch, epoch * EPOCH_MS))
        return out

    def _datagram(self, batch: list, boot_ms: int) -> bytes:
        now_ms = max(min(r[0]["flowEndMilliseconds"], boot_ms + U32) for r in batch)
        head = struct.pack("!HHIIIIBBH", 5, len(batch), now_ms - boot_ms, now_ms // 1000, (now_ms % 1000) * 1_000_000,
                           self.sequence & U32, 0, self.engine_id, 0)
        self.sequence += len(batch)
        body = b"".join(
            struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH",
                        socket.inet_aton(r["sourceIPv4Address"]), socket.inet_aton(r["destinationIPv4Address"]),
                        b"\0\0\0\0", 0, 0, pk, by,
                        min(r["flowStartMilliseconds"] - boot_ms, U32), min(r["flowEndMilliseconds"] - boot_ms, U32),
                        r["sourceTransportPort"], r["destinationTransportPort"], 0, r["tcpControlBits"] & 0xFF,
                        r["protocolIdentifier"], r["ipClassOfService"], 0, 0, 0, 0, 0)
            for r, pk, by in batch)
        return head + body


@dataclass
class IpfixEncoder:
    """Encodes records as IPFIX messages, with the templates of app/records.py sent again every ``template_every``
    messages."""

    domain: int = 0
    template_every: int = 20
    max_bytes: int = 1400
    sequence: int = 0
    messages: int = 0
    _fmt: dict = field(default_factory=dict)

    def _template_set(self) -> bytes:
        body = b""
        for tid, fields in TEMPLATES.items():
            body += struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", ie, ln) for _, ie, ln in fields)
        return struct.pack("!HH", 2, 4 + len(body)) + body

    @staticmethod
    def _record(tid: int, rec: dict) -> bytes:
        out = []
        for name, _, ln in TEMPLATES[tid]:
            v = rec.get(name, 0)
            if name.endswith(("IPv4Address", "IPv6Address")):
                out.append(ipaddress.ip_address(v).packed)
            else:
                out.append(int(v).to_bytes(ln, "big"))
        return b"".join(out)

    def encode(self, records: list[dict], export_s: int | None = None) -> list[bytes]:
        """Messages for ``records``; ``export_s`` defaults to the last flow end (capture time)."""
        by_tid: dict[int, list[bytes]] = {256: [], 257: []}
        for rec in records:
            tid = 256 if "sourceIPv4Address" in rec else 257
            by_tid[tid].append(self._record(tid, rec))
        t = export_s if export_s is not None else max((r["flowEndMilliseconds"] for r in records), default=0) // 1000
        msgs = []
        for tid, recs in by_tid.items():
            i = 0
            while i < len(recs):
                tmpl = self._template_set() if self.messages % self.template_every == 0 else b""
                room = self.max_bytes - 16 - len(tmpl) - 4
                n = max(1, min(len(recs) - i, room // len(recs[i])))
                data = b"".join(recs[i:i + n])
                sets = tmpl + struct.pack("!HH", tid, 4 + len(data)) + data
                msgs.append(struct.pack("!HHIII", 10, 16 + len(sets), t, self.sequence & U32, self.domain) + sets)
                self.sequence += n
                self.messages += 1
                i += n
        return msgs


def parse_collectors(spec: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 hosts in brackets) -> [(host, port)]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(f"{item!r}: expected host:port")
        out.append((host.strip("[]"), int(port)))
    return out


class Exporter:
    """Encodes records and sends the datagrams to every collector over UDP."""

    def __init__(self, v5: Sequence[tuple[str, int]] = (), ipfix: Sequence[tuple[str, int]] = ()):
        self.v5, self.ipfix = V5Encoder(), IpfixEncoder()
        self.targets: list[tuple[V5Encoder | IpfixEncoder, list[tuple[str, int]]]] = [(self.v5, list(v5)),
                                                                                      (self.ipfix, list(ipfix))]
        self.socks: dict[int, socket.socket] = {}
        self.datagrams = 0
        self.errors = 0

    def _sock(self, host: str) -> socket.socket:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        if fam not in self.socks:
            self.socks[fam] = socket.socket(fam, socket.SOCK_DGRAM)
        return self.socks[fam]

    def send(self, records: list[dict]) -> None:
        for enc, collectors in self.targets:
            if not collectors or not records:
                continue
            for msg in enc.encode(records):
                for host, port in collectors:
                    try:
                        self._sock(host).sendto(msg, (host, port))
                        self.datagrams += 1
                    except OSError:
                        self.errors += 1

    @property
    def skipped(self) -> int:
        return self.v5.skipped

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
