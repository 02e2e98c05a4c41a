"""The detectors per entity on a real broker, on real attacks: scans, a brute force and DNS tunnels from the shared
captures, each after a warm-up of ordinary traffic on its own sensor, raise an alert of their class that names
their source; the warm-up raises none.

Each capture's sensor first gets 30 minutes of ordinary conversations (seeded) ending a minute before the
capture's first packet, from inside hosts that include the attack's source, then the capture itself. A capture
too small to meet the shipped thresholds (Zeek's ssh guessing trace has 12 attempts) is not among them.
"""
from __future__ import annotations

import random
import time

import aiohttp
import dpkt
import pytest

from tests.conftest import AUTH, upload
from tests.pcapgen import ipv4_tcp, pcap
from tests.reference import pcaps_dir

pytestmark = pytest.mark.integration

#: capture -> (class of the alert, the source it names)
ATTACKS = {
    "attack/chrissanders-synscan.pcapng": ("vertical-scan", "172.16.0.8"),
    "attack/esnet-masscan-tcp_0_1000.pcap": ("vertical-scan", "172.31.15.102"),
    "attack/esnet-masscan-udp_0_1000.pcap": ("vertical-scan", "172.31.15.102"),
    "attack/zeek-ftp-bruteforce.pcap": ("brute-force", "192.168.56.1"),
    "attack/ndpi-dns_exfiltration.pcap": ("dns-tunnel", "192.168.220.56"),
    "attack/ndpi-dns-tunnel-iodine.pcap": ("dns-tunnel", "10.0.2.30"),
}


def first_time(path) -> float:
    """The capture time (s) of a capture's first packet."""
    with open(path, "rb") as f:
        ng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        return min(ts for ts, _ in (dpkt.pcapng.Reader(f) if ng else dpkt.pcap.Reader(f)))


def warm_up(first_s: float, source: str, seed: int) -> bytes:
    """30 one-minute windows of ordinary TCP conversations ending a minute before ``first_s``; ``source`` is
    one of the talkers."""
    rng = random.Random(seed)
    t0 = first_s - 31 * 60
    pkts = []
    for w in range(30):
        for k in range(20):
            t = t0 + w * 60 + rng.random() * 55
            c = source if k == 0 else f"10.0.{rng.randint(1, 4)}.{rng.randint(1, 250)}"
            s, sp, dp = f"198.51.100.{rng.randint(1, 40)}", rng.randint(32768, 60999), rng.choice((443, 80))
            pkts += [(t, ipv4_tcp(c, s, sp, dp, dpkt.tcp.TH_SYN)),
                     (t + 0.01, ipv4_tcp(s, c, dp, sp, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)),
                     (t + 0.02, ipv4_tcp(c, s, sp, dp, dpkt.tcp.TH_ACK, payload=b"q" * rng.randint(50, 900))),
                     (t + 0.05, ipv4_tcp(s, c, dp, sp, dpkt.tcp.TH_ACK | dpkt.tcp.TH_FIN, payload=b"r" * 600))]
    pkts.sort(key=lambda p: p[0])
    return pcap(pkts)


async def test_real_attacks_raise_alerts_about_their_source(deployment):
    root = pcaps_dir()
    w = deployment(FLOWSIGHT_WINDOW_S="60").start()
    sensors = {}
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for i, (name, (kind, source)) in enumerate(ATTACKS.items()):
            data = (root / name).read_bytes()
            first_s = first_time(root / name)
            sensor = f"atk{i}"
            sensors[sensor] = (name, kind, source)
            status, answer = await upload(s, w.url, warm_up(first_s, source, i), sensor=sensor, block_id="warm")
            assert status == 202, answer
            status, answer = await upload(s, w.url, data, sensor=sensor, block_id="attack")
            assert status == 202, answer

        def missing(alerts):
            return [(sensor, kind, source) for sensor, (_, kind, source) in sensors.items()
                    if not any(a["sensor"] == sensor and a["type"] == kind and a["entity"].split(" ")[0] == source
                               for a in alerts)]

        got, cursor = [], None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and missing(got):
            async with s.get(w.url + "/v1/alerts", params={"timeout": "5", **({"cursor": cursor} if cursor else {})}) \
                    as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            cursor, got = body["cursor"], got + body["records"]
        async with s.get(w.url + "/v1/health") as r:
            health = await r.json()
    assert not missing(got), f"missing {missing(got)}; alerts: {[(a['sensor'], a['type'], a['entity']) for a in got]}" \
                             f"\n{w.log_tail()}"
    entity_alerts = [a for a in got if a["rung"] == "entity"]
    for a in entity_alerts:
        name, kind, source = sensors[a["sensor"]]
        assert a["entity"].split(" ")[0] == source, (name, a["title"])      # nothing about the warm-up's talkers
        assert a["title"] and a["evidence"] and a["score"] >= 1
    scan = next(a for a in entity_alerts if a["sensor"] == "atk1" and a["type"] == "vertical-scan")
    # raised in the scan's first window, when it crossed the threshold; its target is masscan's
    assert scan["evidence"]["ports"] >= 15 and scan["evidence"]["target"] == "198.124.152.15", scan
    assert scan["title"].startswith(f"vertical scan of {scan['evidence']['ports']:,} ports of 198.124.152.15")
    assert health["entities"]["findings"] >= len(ATTACKS) and health["entities"]["rows"] > 0, health["entities"]
    assert not w.errors(), w.log_tail()
