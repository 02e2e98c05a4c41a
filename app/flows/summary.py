"""Window summaries: what the scoring models need of one window of closed flow records.

Pure code (no Faust). The flows agent summarises the records it closes on its
partition; the scoring agent merges the summaries of every partition. Sums merge
exactly. Distinct destination ports merge exactly (as sets). Per-host figures
(flows into a destination, bytes sent by an inside host) are kept exact per
partition and cut to the top ``TOP_HOSTS`` when sent: a host that matters is at
the top of every partition, because flows spread over partitions by a hash of
their key, so the merged top is exact for it.

Metrics of a window, per sensor (see :data:`METRICS`):
``flows``, ``packets``, ``bytes``; ``failed``: TCP flows that sent SYN but never
an ACK, i.e. connection attempts that got no SYN-ACK or were reset;
``dports``: distinct destination ports of TCP and UDP flows; ``fanin``: the most
flows into one destination address. Per inside host: bytes it sent.

Evidence, for an alert to show what made it: the failed attempts per destination,
per source and per destination port (a SYN flood's victim, its sources, its port),
cut to the top ``TOP_HOSTS`` like the per-host figures.
"""
from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from app.records import port_name

METRICS = ("flows", "packets", "bytes", "failed", "dports", "fanin")
TOP_HOSTS = 256
TOP_FLOWS = 5
SYN, RST, ACK = 0x02, 0x04, 0x10
DEFAULT_HOME = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


class Home:
    """Inside networks: the hosts whose outgoing bytes are modelled one by one."""

    def __init__(self, nets=DEFAULT_HOME):
        self.nets = [ipaddress.ip_network(n) for n in nets]
        # (address length in bytes, mask, network) as integers: a test is two integer operations
        self._int_nets = [(n.max_prefixlen // 8, int(n.netmask), int(n.network_address)) for n in self.nets]
        self._cache: dict[str, bool] = {}

    def __contains__(self, addr: str) -> bool:
        hit = self._cache.get(addr)
        if hit is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            try:
                raw = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
            except OSError:
                raise ValueError(f"not an IP address: {addr!r}") from None
            ip = int.from_bytes(raw, "big")
            hit = self._cache[addr] = any(len(raw) == n and ip & mask == net for n, mask, net in self._int_nets)
        return hit


class TopFlow(NamedTuple):
    """One of a window's biggest flows (a JSON array on the wire, in this order)."""

    bytes: int
    packets: int
    src: str
    dst: str
    proto: int
    sport: int
    dport: int


@dataclass
class Summary:
    """One sensor's window on one or more partitions; ``merge`` adds another partition's."""

    flows: int = 0
    packets: int = 0
    bytes: int = 0
    failed: int = 0
    dports: set = field(default_factory=set)
    dst_flows: Counter = field(default_factory=Counter)
    src_bytes: Counter = field(default_factory=Counter)
    top: list[TopFlow] = field(default_factory=list)   #: the biggest flows, biggest first
    failed_dst: Counter = field(default_factory=Counter)    #: failed attempts per destination address
    failed_src: Counter = field(default_factory=Counter)    #: failed attempts per source address
    failed_port: Counter = field(default_factory=Counter)   #: failed attempts per destination port (``80/tcp``)

    def add(self, src: str, dst: str, proto: int, sport: int, dport: int, packets: int, nbytes: int,
            flags: int, inside: bool) -> None:
        self.flows += 1
        self.packets += packets
        self.bytes += nbytes
        if proto == 6 and flags & SYN and not flags & ACK:
            self.failed += 1
            self.failed_dst[dst] += 1
            self.failed_src[src] += 1
            self.failed_port[port_name(dport, proto)] += 1
        if proto in (6, 17):
            self.dports.add(dport)
        self.dst_flows[dst] += 1
        if inside:
            self.src_bytes[src] += nbytes
        if len(self.top) < TOP_FLOWS or nbytes > self.top[-1].bytes:
            self.top.append(TopFlow(nbytes, packets, src, dst, proto, sport, dport))
            self.top.sort(key=lambda f: -f.bytes)
            del self.top[TOP_FLOWS:]

    def merge(self, other: Summary) -> None:
        self.flows += other.flows
        self.packets += other.packets
        self.bytes += other.bytes
        self.failed += other.failed
        self.dports |= other.dports
        self.dst_flows.update(other.dst_flows)
        self.src_bytes.update(other.src_bytes)
        self.top = sorted(self.top + other.top, key=lambda f: -f.bytes)[:TOP_FLOWS]
        self.failed_dst.update(other.failed_dst)
        self.failed_src.update(other.failed_src)
        self.failed_port.update(other.failed_port)

    def metrics(self) -> np.ndarray:
        fanin = max(self.dst_flows.values()) if self.dst_flows else 0
        return np.array([self.flows, self.packets, self.bytes, self.failed, len(self.dports), fanin], float)

    def to_json(self) -> dict:
        return {"flows": self.flows, "packets": self.packets, "bytes": self.bytes, "failed": self.failed,
                "dports": sorted(self.dports), "dst_flows": dict(self.dst_flows.most_common(TOP_HOSTS)),
                "src_bytes": dict(self.src_bytes.most_common(TOP_HOSTS)), "top": [list(f) for f in self.top],
                **({"failed_dst": dict(self.failed_dst.most_common(TOP_HOSTS)),
                    "failed_src": dict(self.failed_src.most_common(TOP_HOSTS)),
                    "failed_port": dict(self.failed_port.most_common(TOP_HOSTS))} if self.failed else {})}

    @classmethod
    def from_json(cls, d: dict) -> Summary:
        return cls(d["flows"], d["packets"], d["bytes"], d["failed"], set(d["dports"]), Counter(d["dst_flows"]),
                   Counter(d["src_bytes"]), [TopFlow(*f) for f in d["top"]], Counter(d.get("failed_dst", {})),
                   Counter(d.get("failed_src", {})), Counter(d.get("failed_port", {})))


def summarize_columns(src: np.ndarray, dst: np.ndarray, proto: np.ndarray, dport: np.ndarray,
                      packets: np.ndarray, nbytes: np.ndarray, flags: np.ndarray, inside: np.ndarray) -> tuple:
    """Vectorised metrics of one window from flow columns (hosts as integer ids).

    Returns (metrics as in :data:`METRICS`, inside source ids, their bytes): what
    :meth:`Summary.metrics` and ``src_bytes`` give for the same records.
    """
    n = len(src)
    if n == 0:
        return np.zeros(len(METRICS)), np.zeros(0, np.int64), np.zeros(0)
    failed = int(np.count_nonzero((proto == 6) & ((flags & SYN) != 0) & ((flags & ACK) == 0)))
    tu = (proto == 6) | (proto == 17)
    dports = len(np.unique(dport[tu]))
    fanin = int(np.bincount(dst).max())
    m = np.array([n, packets.sum(), nbytes.sum(), failed, dports, fanin], float)
    s_in = src[inside]
    hosts, inv = np.unique(s_in, return_inverse=True)
    hb = np.bincount(inv, weights=nbytes[inside].astype(float), minlength=len(hosts))
    return m, hosts, hb
