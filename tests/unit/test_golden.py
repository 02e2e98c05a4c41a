"""Per-flow-key packet and byte totals of the decoder against independent references, on real captures."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import records
from tests import flowtools as ft
from app.capture import pcap
from app.flows import decode
from tests import reference

SHARED = reference.SHARED


def ours(path: Path) -> dict[tuple, list[int]]:
    data = path.read_bytes()
    pk = decode.decode(data, pcap.index(data))
    out = {}
    for _w, key, packets, nbytes, _f, _l, _fl in ft.aggregate(pk, 0):
        k = ft.key_string("s", key).split(records.SEP)[1:]
        out[(k[0], k[1], *map(int, k[2:]))] = [packets, nbytes]
    return out


def corpus(*folders: str) -> list[Path]:
    found = sorted(p for d in folders for p in (SHARED / d).glob("*") if p.is_file())
    return found or [pytest.param(None, id="corpus-missing")]


@pytest.mark.parametrize("path", corpus("real", "attack"), ids=lambda p: p.name if p else "missing")
def test_totals_equal_dpkt_reference(path):
    reference.pcaps_dir()
    assert ours(path) == reference.flow_table(path)


@pytest.mark.parametrize("path", corpus("real"), ids=lambda p: p.name if p else "missing")
def test_packets_equal_tshark_streams(path):
    """tshark keys streams by 5-tuple without VLAN or ToS, and files an ICMP error under the stream it
    quotes: so sum ours over VLAN and ToS, and add the ICMP errors quoting each 5-tuple."""
    reference.pcaps_dir()
    mine: dict[tuple, int] = {}
    for (src, dst, proto, sport, dport, _vlan, _tos), (packets, _b) in ours(path).items():
        if proto in (6, 17):
            mine[(src, dst, proto, sport, dport)] = mine.get((src, dst, proto, sport, dport), 0) + packets
    for key, n in reference.icmp_quotes(path).items():
        mine[key] = mine.get(key, 0) + n
    theirs = reference.tshark_packets(path)
    assert theirs, "the tshark reference has no TCP/UDP rows"
    assert mine == theirs


def test_vlan_outer_tag_is_kept():
    path = reference.pcaps_dir() / "edge" / "zeek-vlan-qinqinq.pcap"
    vlans = {k[5] for k in ours(path)}
    assert vlans == {30}  # tcpdump -e prints "vlan 30, ... vlan 20, ... vlan 10": 30 is outermost


def test_vlan_collisions_are_separate_flows():
    """The same 5-tuple untagged, single- and double-tagged: three flow keys, where tshark shows one stream."""
    path = reference.pcaps_dir() / "edge" / "zeek-vlan-collisions.pcap"
    per_5tuple: dict[tuple, set[int]] = {}
    for k in ours(path):
        per_5tuple.setdefault(k[:5], set()).add(k[5])
    assert max(len(v) for v in per_5tuple.values()) >= 2


@pytest.mark.parametrize("path", [p for p in corpus("real", "attack", "edge") if p is None or
                                  (isinstance(p, Path) and p.name.startswith("ndpi-"))],
                         ids=lambda p: p.name if p else "missing")
def test_packets_equal_ndpi_expected_results(path):
    """nDPI's expected ndpiReader flows: packets per direction of each TCP/UDP 5-tuple. nDPI follows
    tunnels to the inner flow, so tunnel packets count as their innermost flow here (as in edge tests)."""
    from tests.unit.test_golden_edge import innermost, streams

    reference.pcaps_dir()
    theirs = reference.ndpi_packets(path)
    assert theirs is not None, "every nDPI capture has an expected result file"
    pk, _ = innermost(path.read_bytes())
    assert streams(pk) == theirs
