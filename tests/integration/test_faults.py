"""Fault tests on a real broker: retries, cut uploads, conflicting ids, kill -9, disk loss, late data.

Each compares per-flow-key packet and byte totals at egress with the independent dpkt
flow table. Records are de-duplicated by flowId, and a repeated flowId must carry
identical content (the egress contract).
"""
from __future__ import annotations

import asyncio
import shutil
import signal
from collections import defaultdict

import aiohttp
import pytest

from app.records import record_key
from tests import reference
from tests.conftest import AUTH, drain, upload
from tests.integration.test_pipeline import expected, sensor_of

pytestmark = pytest.mark.integration

FILES = ["real/zeek-wikipedia.pcap", "real/ndpi-whatsapp.pcap", "real/chrissanders-http_espn.pcapng",
         "real/ndpi-iphone.pcap", "real/zeek-http-methods.pcap", "real/ndpi-android.pcap"]


def exact(records: list[dict]) -> dict[str, dict[tuple, list[int]]]:
    """Totals per sensor and key, de-duplicated by flowId; a repeat must be identical."""
    seen: dict[int, dict] = {}
    out: dict[str, dict[tuple, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for rec in records:
        prior = seen.get(rec["flowId"])
        if prior is not None:
            assert prior == rec, f"flowId {rec['flowId']} repeated with other content"
            continue
        seen[rec["flowId"]] = rec
        sensor, *key = record_key(rec)
        row = out[sensor][tuple(key)]
        row[0] += rec["packetDeltaCount"]
        row[1] += rec["octetDeltaCount"]
    return {s: dict(v) for s, v in out.items()}


def report(got: dict, exp: dict) -> str:
    """Per sensor: packets at egress vs expected, and a few keys that differ."""
    lines = []
    for sensor in sorted(set(got) | set(exp)):
        g, e = got.get(sensor, {}), exp.get(sensor, {})
        if g == e:
            continue
        bad = [(k, g.get(k), e.get(k)) for k in set(g) | set(e) if g.get(k) != e.get(k)]
        lines.append(f"{sensor}: got {sum(v[0] for v in g.values())} packets, want "
                     f"{sum(v[0] for v in e.values())}; {len(bad)} keys differ, e.g. {bad[:3]}")
    return "\n".join(lines)


def body(rel: str) -> bytes:
    return (reference.pcaps_dir() / rel).read_bytes()


async def cut_upload(url: str, data: bytes, sensor: str, fraction: float = 0.5) -> None:
    """Send the headers and part of the body, then drop the connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"PUT /v1/captures HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"X-Sensor: {sensor}\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    writer.write(head + data[: int(len(data) * fraction)])
    await writer.drain()
    writer.transport.abort()


async def test_retries_cut_uploads_conflicts_and_two_sensors(deployment):
    w = deployment().start()
    a, b = FILES[0], FILES[1]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        # a connection cut at 50% of the body, then the full retry
        await cut_upload(w.url, body(a), sensor_of(a))
        statuses = [(await upload(s, w.url, body(a), sensor=sensor_of(a)))[0] for _ in range(3)]
        assert statuses[0] == 202 and set(statuses[1:]) <= {200, 202}
        # two sensors at once, the same file
        results = await asyncio.gather(*(upload(s, w.url, body(b), sensor=name) for name in ("tap-a", "tap-b")))
        assert [r[0] for r in results] == [202, 202]
        exp = {**expected([a]), "tap-a": expected([b])[sensor_of(b)], "tap-b": expected([b])[sensor_of(b)]}
        records, cursor = await drain(s, w.url, None, lambda got: exact(got) == exp)
        assert exact(records) == exp
        # once decoded, a repeat is a 200 duplicate, and other content under the same id a 409
        status, answer = await upload(s, w.url, body(a), sensor=sensor_of(a))
        assert (status, answer.get("duplicate")) == (200, True), answer
        status, answer = await upload(s, w.url, body(b), sensor=sensor_of(a), block_id=answer["block_id"])
        assert status == 409 and "other content" in answer["error"], answer
        more, _ = await drain(s, w.url, cursor, lambda got: True, quiet_s=6)
        assert more == []
    assert w.errors() == [], w.log_tail()


@pytest.mark.parametrize("standby", ["0", "1"], ids=["restored-from-changelogs", "warm-standby"])
async def test_kill_9_of_one_of_two_workers_loses_nothing_and_it_rejoins(deployment, standby):
    """The survivor takes over the killed worker's table partitions: by default it restores them from
    the changelogs, with FLOWSIGHT_STANDBY_REPLICAS=1 from the copy it kept."""
    settings = {"FLOWSIGHT_SESSION_TIMEOUT_S": "8", "FLOWSIGHT_CHUNK_BYTES": str(256 * 1024),
                "FLOWSIGHT_STANDBY_REPLICAS": standby}
    w1 = deployment(**settings).start()
    w2 = deployment(**settings)
    w2.start(wait_partitions=False)
    exp = expected(FILES)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for i, rel in enumerate(FILES):
            if i == 3:
                w2.stop(signal.SIGKILL)  # in the middle of the stream of uploads
            target = w2 if i < 3 and i % 2 else w1
            for _ in range(60):  # a shipper's retry loop
                status, answer = await upload(s, target.url, body(rel), sensor=sensor_of(rel))
                if status in (200, 202):
                    break
                assert status == 503, answer
                await asyncio.sleep(2)
            assert status in (200, 202), answer
        records, cursor = await drain(s, w1.url, None, lambda got: exact(got) == exp, timeout_s=240)
        assert exact(records) == exp, report(exact(records), exp)
        w2.start(wait_partitions=False)  # rejoins: nothing changes
        more, _ = await drain(s, w1.url, cursor, lambda got: True, quiet_s=15)
        assert exact(records + more) == exp


async def test_a_worker_that_lost_its_disk_rebuilds_from_the_changelogs(deployment):
    w = deployment().start()
    first, second = FILES[0], FILES[2]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        assert (await upload(s, w.url, body(first), sensor=sensor_of(first)))[0] == 202
        exp1 = expected([first])
        records, cursor = await drain(s, w.url, None, lambda got: exact(got) == exp1)
        w.stop()
        shutil.rmtree(w.datadir / "flowsight-data", ignore_errors=True)
        for sub in w.datadir.glob("*-data"):
            shutil.rmtree(sub)
        w.start()
        # the dedupe table came back from Kafka: the same upload is known
        status, answer = await upload(s, w.url, body(first), sensor=sensor_of(first))
        assert (status, answer.get("duplicate")) == (200, True), answer
        assert (await upload(s, w.url, body(second), sensor=sensor_of(second)))[0] == 202
        exp = expected([first, second])
        more, _ = await drain(s, w.url, cursor, lambda got: exact(records + got) == exp)
    assert exact(records + more) == exp


async def test_late_data_is_delivered_late_not_dropped(deployment):
    """A capture whose windows are long closed (the watermark is years ahead) comes out as late records."""
    w = deployment(FLOWSIGHT_IDLE_FLUSH_S="3600").start()
    new, old = "real/ndpi-teams.pcap", "real/zeek-wikipedia.pcap"  # 2020 and 2011
    async with aiohttp.ClientSession(headers=AUTH) as s:
        assert (await upload(s, w.url, body(new), sensor="s"))[0] == 202
        await asyncio.sleep(3)
        assert (await upload(s, w.url, body(old), sensor="s"))[0] == 202
        exp_old = expected([old])[sensor_of(old)]

        def old_part(got):
            return {k: v for k, v in exact(got).get("s", {}).items() if k in exp_old}
        records, _ = await drain(s, w.url, None, lambda got: old_part(got) == exp_old, timeout_s=90)
    assert old_part(records) == exp_old
    late = [r for r in records if r["flowsight"]["late"]]
    assert late and all(r["flowStartMilliseconds"] < 1_400_000_000_000 for r in late)


async def test_kill_9_of_the_worker_a_block_was_just_sent_to_loses_nothing(deployment):
    """Worker 1 accepts uploads whose chunks go to partitions of worker 2, which is killed as soon as they
    are acknowledged, while it fetches or decodes them: the survivor decodes them again, exactly once."""
    import hashlib

    import app.main  # noqa: F401  (agents import the app first)
    from app.topics import block_key, home_partition
    from tests.integration.test_pipeline import health

    settings = {"FLOWSIGHT_SESSION_TIMEOUT_S": "8", "FLOWSIGHT_CHUNK_BYTES": str(256 * 1024)}
    w1 = deployment(**settings).start()
    w2 = deployment(**settings)
    w2.start(wait_partitions=False)
    n = int(w1.env["FLOWSIGHT_PARTITIONS"])
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for _ in range(120):
            states = [await health(s, w.url) for w in (w1, w2)]
            theirs = {int(a.split(":")[1]) for a in states[1].get("assigned", [])
                      if a.split(":")[0].endswith("pcap-chunks")}
            if all(h.get("status") == "ok" for h in states) and 0 < len(theirs) < n:
                break
            await asyncio.sleep(1)
        assert 0 < len(theirs) < n, states
        pool = ["real/ndpi-1kxun.pcap", "real/sv-tls-subjectaltname.pcap", "real/ndpi-opera-vpn.pcapng",
                "real/zeek-ssh.pcap", "real/ndpi-alexa-app.pcapng", "real/ndpi-netflix.pcap",
                "real/ndpi-teams.pcap", "real/ndpi-wechat.pcap", "real/chrissanders-http_espn.pcapng"]
        doomed = [r for r in pool if home_partition(
            block_key(sensor_of(r), hashlib.sha256(body(r)).hexdigest()), n) in theirs][:3]
        assert doomed, "no capture of the pool hashes to the second worker's partitions"
        exp = expected(doomed)
        answers = await asyncio.gather(*[upload(s, w1.url, body(r), sensor=sensor_of(r)) for r in doomed])
        w2.stop(signal.SIGKILL)
        assert [status for status, _ in answers] == [202] * len(doomed), answers
        records, _ = await drain(s, w1.url, None, lambda got: exact(got) == exp, timeout_s=240)
        assert exact(records) == exp, report(exact(records), exp)
    assert w1.errors() == [], w1.log_tail()
