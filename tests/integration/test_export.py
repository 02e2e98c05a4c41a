"""NetFlow v5 and IPFIX against a real collector: Debian's nfcapd on loopback, read back with nfdump.

Per flow key, the packets and bytes nfdump reads from what nfcapd stored must equal
Flowsight's own records for the same captures (IPv6 flows are not in NetFlow v5,
and are counted as skipped).
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from app.cli import pcap2flows
from app.export import netflow
from tests import reference
from tests.nfdump import collected, key
from tests.conftest import AUTH

pytestmark = pytest.mark.integration

FILES = ["real/zeek-wikipedia.pcap", "real/ndpi-iphone.pcap", "real/chrissanders-http_espn.pcapng",
         "real/ndpi-whatsapp.pcap", "real/zeek-http-methods.pcap"]


def ours(records: list[dict], v4_only: bool) -> dict:
    out = defaultdict(lambda: [0, 0])
    for r in records:
        if v4_only and "sourceIPv4Address" not in r:
            continue
        src = r.get("sourceIPv4Address") or r["sourceIPv6Address"]
        dst = r.get("destinationIPv4Address") or r["destinationIPv6Address"]
        k = key(src, dst, r["protocolIdentifier"], r["sourceTransportPort"], r["destinationTransportPort"])
        out[k][0] += r["packetDeltaCount"]
        out[k][1] += r["octetDeltaCount"]
    return dict(out)


@pytest.mark.parametrize("version", ["v5", "ipfix"])
def test_collector_reads_exactly_our_totals(nfcapd, version):
    port, flowdir, stop = nfcapd
    paths = [str(reference.pcaps_dir() / f) for f in FILES]
    records = [r for batch in pcap2flows.records_of_files(paths, 60) for r in batch]
    ex = netflow.Exporter(v5=[("127.0.0.1", port)] if version == "v5" else [],
                         ipfix=[("127.0.0.1", port)] if version == "ipfix" else [])
    for lo in range(0, len(records), 30):
        ex.send(records[lo:lo + 30])
        time.sleep(0.002)                  # UDP on loopback: do not outrun the collector
    time.sleep(0.5)
    log = stop()
    want = ours(records, v4_only=version == "v5")
    got = collected(flowdir)
    assert "Sequence Errors: 0" in log, log
    assert got == want, f"{len(got)} keys collected, {len(want)} expected; first differences: " + str(
        [(k, got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)][:5])
    v6 = sum(1 for r in records if "sourceIPv6Address" in r)
    assert v6 > 0, "the captures should include IPv6 flows"
    assert ex.skipped == (v6 if version == "v5" else 0)


async def test_worker_exports_every_flow_to_an_ipfix_and_a_v5_collector(deployment, nfcapd, tmp_path):
    import aiohttp

    from tests.conftest import upload
    from tests.integration.test_pipeline import sensor_of

    port, flowdir, stop = nfcapd
    w = deployment(FLOWSIGHT_IPFIX=f"127.0.0.1:{port}", FLOWSIGHT_NETFLOW_V5=f"127.0.0.1:{port}").start()
    paths = [str(reference.pcaps_dir() / f) for f in FILES[:3]]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for rel, path in zip(FILES, paths):
            status, answer = await upload(s, w.url, open(path, "rb").read(), sensor=sensor_of(rel))
            assert status == 202, answer
        want_records = [r for batch in pcap2flows.records_of_files(paths, 60) for r in batch]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            async with s.get(w.url + "/v1/health") as r:
                sent = (await r.json())["progress"].get("export", {}).get("records", 0)
            if sent >= len(want_records):
                break
            await asyncio.sleep(1)
        async with s.get(w.url + "/metrics") as r:
            metrics = await r.text()
    v6 = sum(1 for r in want_records if "sourceIPv6Address" in r)
    assert f"flowsight_export_v5_skipped_ipv6_total {float(v6)}" in metrics
    await asyncio.sleep(1)
    log = stop()
    got = collected(flowdir)
    # both collectors are one nfcapd here: every IPv4 flow twice (v5 and IPFIX), every IPv6 flow once
    want = defaultdict(lambda: [0, 0])
    for k, (pk, by) in ours(want_records, v4_only=False).items():
        times = 2 if ":" not in k[0] else 1
        want[k] = [pk * times, by * times]
    assert got == dict(want), [(k, got.get(k), want.get(k)) for k in set(got) | set(want)
                               if got.get(k) != want.get(k)][:5]
    assert "Sequence Errors: 0" in log, log


async def test_export_turned_on_later_starts_from_then_not_from_the_retained_topic(deployment, nfcapd):
    """Turning export on for a worker with data once replayed the whole retained flows topic to the
    collector (5,519 datagrams at once). It starts from then on; after a restart, from where it stopped."""
    import aiohttp

    from tests.conftest import drain, upload
    port, flowdir, stop = nfcapd
    w = deployment()
    w.start()
    old, new = (str(reference.pcaps_dir() / f) for f in FILES[:2])
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, open(old, "rb").read(), sensor="before")
        assert status == 202, answer
        await drain(s, w.url, None, lambda got: sum(r["packetDeltaCount"] for r in got
                                                    if r["flowsight"]["sensor"] == "before") >= answer["packets"] // 2)
    w.stop()
    w.env["FLOWSIGHT_IPFIX"] = f"127.0.0.1:{port}"
    w.start()
    want = [r for batch in pcap2flows.records_of_files([new], 60) for r in batch]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, open(new, "rb").read(), sensor="after")
        assert status == 202, answer
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            async with s.get(w.url + "/v1/health") as r:
                progress = (await r.json())["progress"].get("export", {})
            if progress.get("records", 0) >= len(want):
                break
            await asyncio.sleep(1)
    await asyncio.sleep(1)
    stop()
    assert progress.get("skipped_before_start", 0) > 0
    assert collected(flowdir) == ours(want, v4_only=False)     # the new capture's flows, and nothing older
