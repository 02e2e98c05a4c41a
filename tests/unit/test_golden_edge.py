"""Golden tests over every capture in edge/: link types, encapsulations, fragments and tunnels.

Rule A (most files): with tunnel packets counted as their innermost flow and all
other packets as their outer flow (the inner-tunnel pass), per-5-tuple TCP/UDP
packet counts equal tshark's stream table (which uses the innermost layer), after
the stated tshark differences of test_golden (VLAN merged, quoted UDP in ICMP
errors, protocol from the transport layer).

Rule B (files listed in DIFFERS, each with its reason): tshark reassembles IP
fragments (it counts only the completing frame in a stream) or decodes the
tunnel quoted inside an ICMP error, so its table is not ours by design. There,
our outer flows must equal the independent dpkt flow table exactly (packets and
bytes, with the same fragment rule), and a tunnel file must yield inner flows.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from app import records
from tests import flowtools as ft
from app.capture import pcap
from app.flows import decode
from tests import reference

FRAGMENTS = "tshark reassembles the fragments and counts only the completing frame in the stream"
QUOTED = "tshark decodes the tunnel quoted inside ICMP errors and files them under the inner stream"
DIFFERS = {
    "tcpdump-afs.pcap": FRAGMENTS,
    "zeek-ipv4-fragmented-1.pcap": FRAGMENTS,
    "zeek-ipv4-fragmented-3.pcap": FRAGMENTS,
    "zeek-ipv6-fragmented-dns.pcap": FRAGMENTS,
    "sv-frag-eth-vlan-ipv6-tcp.pcap": FRAGMENTS,
    "zeek-tunnels-gtp1-fragmentation.pcap": FRAGMENTS + " (outer GTP-U datagrams are fragmented)",
    "sv-eth-ip-gre-ppp-max-ip-packet.pcap": FRAGMENTS + " (the PPP payload is fragmented inside GRE)",
    "ndpi-6in4tunnel.pcap": FRAGMENTS + " (IPv6 fragments inside the 6in4 tunnel)",
    "tcpdump-geneve.pcap": QUOTED,
    "tcpdump-vxlan.pcap": QUOTED,
    "tcpdump-mpls-over-udp.pcap": QUOTED,
    "zeek-erspan.pcap": QUOTED,
    "zeek-tunnels-Teredo.pcap": QUOTED + " (Teredo bubbles and ICMPv6 inside)",
    "zeek-tunnels-ayiya3.pcap": QUOTED,
    "zeek-tunnels-gre-sample.pcap": QUOTED,
}
TUNNELS = {"tcpdump-geneve.pcap", "tcpdump-vxlan.pcap", "tcpdump-mpls-over-udp.pcap", "zeek-erspan.pcap",
           "zeek-tunnels-Teredo.pcap", "zeek-tunnels-ayiya3.pcap", "zeek-tunnels-gre-sample.pcap",
           "zeek-tunnels-gtp1-fragmentation.pcap", "ndpi-6in4tunnel.pcap"}


def edge_files() -> list:
    found = sorted(p for p in (reference.SHARED / "edge").glob("*") if p.is_file())
    return found or [pytest.param(None, id="corpus-missing")]


def innermost(data: bytes) -> tuple[decode.Packets, int]:
    """Packets decoded with tunnels replaced by their innermost packet; and how many were tunnels."""
    idx = pcap.index(data)
    outer, inner = decode.decode(data, idx), decode.decode(data, idx, inner=True)
    tun = inner.status != decode.NOT_TUNNEL
    merged = {}
    for name, col in outer.__dict__.items():
        other = getattr(inner, name)
        if isinstance(col, np.ndarray) and len(col) == len(tun) and col.shape == other.shape:
            merged[name] = np.where(tun[:, None] if col.ndim == 2 else tun, other, col)
        else:
            merged[name] = col
    return decode.Packets(**merged), int(tun.sum())


def streams(pk: decode.Packets) -> dict[tuple, int]:
    out: dict[tuple, int] = defaultdict(int)
    for _w, key, packets, _b, _f, _l, _fl in ft.aggregate(pk, 0):
        k = ft.key_string("s", key).split(records.SEP)[1:]
        if int(k[2]) in (6, 17):
            out[(k[0], k[1], int(k[2]), int(k[3]), int(k[4]))] += packets
    return dict(out)


@pytest.mark.parametrize("path", edge_files(), ids=lambda p: p.name if p else "missing")
def test_edge_capture(path: Path):
    reference.pcaps_dir()
    data = path.read_bytes()
    pk, tunnels = innermost(data)
    if path.name in DIFFERS:
        from tests.unit.test_golden import ours
        assert ours(path) == reference.flow_table(path), DIFFERS[path.name]
        if path.name in TUNNELS:
            assert tunnels > 0, "the inner-tunnel pass found no tunnel"
        return
    mine = streams(pk)
    for key, n in reference.icmp_quotes(path).items():
        mine[key] = mine.get(key, 0) + n
    assert mine == reference.tshark_packets(path)


def test_every_differing_file_exists():
    reference.pcaps_dir()
    names = {p.name for p in (reference.SHARED / "edge").iterdir()}
    assert set(DIFFERS) <= names and TUNNELS <= set(DIFFERS)
