"""Upload real captures to a real worker on a real broker, long-poll the flows, compare with dpkt.

Each capture is uploaded under its own sensor name, so per-sensor totals compare
with that file's independent flow table. Records are de-duplicated by flowId, as
the egress contract tells consumers to.
"""
from __future__ import annotations

import asyncio
import gzip
import os
import re
import signal
from collections import defaultdict

import aiohttp
import pytest

from app.api import cursor as cursors
from app.records import record_key
from tests import reference
from tests.conftest import AUTH, drain, upload

pytestmark = pytest.mark.integration

FILES = ["real/zeek-wikipedia.pcap", "real/chrissanders-http_espn.pcapng", "real/ndpi-whatsapp.pcap",
         "real/zeek-ssh.pcap", "real/ndpi-alexa-app.pcapng"]


def sensor_of(rel: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", rel.split("/")[-1])[:60]


def per_sensor(records: list[dict]) -> dict[str, dict[tuple, list[int]]]:
    seen: set[int] = set()
    out: dict[str, dict[tuple, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for rec in records:
        if rec["flowId"] in seen:
            continue
        seen.add(rec["flowId"])
        sensor, *key = record_key(rec)
        row = out[sensor][tuple(key)]
        row[0] += rec["packetDeltaCount"]
        row[1] += rec["octetDeltaCount"]
    return {s: dict(v) for s, v in out.items()}


def expected(rels: list[str]) -> dict[str, dict[tuple, list[int]]]:
    base = reference.pcaps_dir()
    return {sensor_of(r): reference.flow_table(base / r) for r in rels}


def packets_of(exp) -> int:
    return sum(v[0] for t in exp.values() for v in t.values())


def total_packets(records) -> int:
    return sum(v[0] for t in per_sensor(records).values() for v in t.values())


async def test_uploads_come_back_as_exact_flows_and_a_repeat_upload_changes_nothing(deployment):
    exp = expected(FILES)
    w = deployment(FLOWSIGHT_CHUNK_BYTES=str(256 * 1024)).start()
    base = reference.pcaps_dir()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for i, rel in enumerate(FILES):
            body = (base / rel).read_bytes()
            status, answer = await upload(s, w.url, body, sensor=sensor_of(rel), method="PUT" if i % 2 else "POST",
                                          content_type="application/vnd.tcpdump.pcap" if i % 2 else
                                          "application/octet-stream")
            assert status == 202, answer
            assert answer["sensor"] == sensor_of(rel) and answer["bytes"] == len(body)
            assert answer["chunks"] >= 1 and answer["packets"] > 0
        target = packets_of(exp)
        records, cursor = await drain(s, w.url, None, lambda got: total_packets(got) >= target)
        assert per_sensor(records) == exp
        assert all(r["flowsight"]["window"] % 60_000 == 0 for r in records)

        # the same records again, 25 at a time: an answer may end inside a batch of records, and its
        # cursor goes on from there, with nothing repeated or lost
        paged, cur, inside = [], None, 0
        while True:
            params = {"timeout": "2", "limit": "25", **({"cursor": cur} if cur else {})}
            async with s.get(w.url + "/v1/flows", params=params) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            assert len(body["records"]) <= 25
            if not body["records"]:
                break
            paged += body["records"]
            cur = body["cursor"]
            inside += any(isinstance(v, tuple) for v in cursors.decode(cur).values())
        assert sorted(r["flowId"] for r in paged) == sorted(r["flowId"] for r in records)
        assert inside > 0
        assert {"sourceIPv4Address", "octetDeltaCount", "flowStartMilliseconds"} <= set(records[0]) | {
            "sourceIPv4Address"}

        # the same bytes again: the same block id and chunks, so nothing new is counted
        body = (base / FILES[0]).read_bytes()
        status, answer = await upload(s, w.url, body, sensor=sensor_of(FILES[0]))
        assert (status, answer["duplicate"]) == (200, True), answer
        more, _ = await drain(s, w.url, cursor, lambda got: True, quiet_s=6)
        assert more == []
    assert w.errors() == [], w.log_tail()


async def health(s: aiohttp.ClientSession, url: str) -> dict:
    async with s.get(url + "/v1/health") as r:
        return await r.json()


async def test_two_workers_share_the_decoding_of_one_upload_and_its_repeat_is_a_duplicate(deployment):
    """A block's chunks are dealt over the partitions, so each of two workers decodes part of one upload.
    The chunks decoded on the other worker are reported to the block's own row: a repeat sent to either
    worker is a 200 duplicate and counts nothing."""
    rel = "real/ndpi-1kxun.pcap"  # 2.5 MB: ten chunks of 256 KiB, on every partition (8)
    settings = {"FLOWSIGHT_CHUNK_BYTES": str(256 * 1024)}
    w1 = deployment(**settings).start()
    w2 = deployment(**settings)
    w2.start(wait_partitions=False)
    exp = expected([rel])
    n = int(w1.env["FLOWSIGHT_PARTITIONS"])
    body = (reference.pcaps_dir() / rel).read_bytes()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for _ in range(120):  # until the two share the chunk partitions
            states = [await health(s, w.url) for w in (w1, w2)]
            mine = [sum(a.split(":")[0].endswith("pcap-chunks") for a in h.get("assigned", [])) for h in states]
            if all(h.get("status") == "ok" for h in states) and min(mine) > 0 and sum(mine) == n:
                break
            await asyncio.sleep(1)
        assert min(mine) > 0 and sum(mine) == n, mine
        status, answer = await upload(s, w1.url, body, sensor=sensor_of(rel), block_id="one-upload")
        assert status == 202 and answer["chunks"] >= 8, answer
        records, cursor = await drain(s, w1.url, None, lambda got: per_sensor(got) == exp)
        assert per_sensor(records) == exp
        decoded = [(await health(s, w.url))["progress"].get("decode", {}).get("chunks", 0) for w in (w1, w2)]
        assert min(decoded) > 0 and sum(decoded) == answer["chunks"], decoded
        for _ in range(30):  # the reports of the other lanes reach the block's row soon after
            status, again = await upload(s, w2.url, body, sensor=sensor_of(rel), block_id="one-upload")
            assert status in (200, 202), again
            if status == 200:
                break
            await asyncio.sleep(1)
        assert (status, again["duplicate"], again["chunks"]) == (200, True, answer["chunks"]), again
        status, again = await upload(s, w1.url, body, sensor=sensor_of(rel), block_id="one-upload")
        assert (status, again["duplicate"], again["chunks"]) == (200, True, answer["chunks"]), again
        more, _ = await drain(s, w1.url, cursor, lambda got: True, quiet_s=6)
        assert more == []
    assert w1.errors() == [] and w2.errors() == [], w1.log_tail() + w2.log_tail()


async def test_restarting_the_worker_between_uploads_loses_nothing(deployment):
    """Also with a smaller chunk size after the restart: a block sent again is cut as it was first, so
    its chunk indexes name the same packets and nothing is counted twice."""
    first, second = FILES[1], FILES[3]
    base = reference.pcaps_dir()
    w = deployment(FLOWSIGHT_CHUNK_BYTES=str(512 * 1024)).start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, (base / first).read_bytes(), sensor=sensor_of(first))
        assert status == 202
        assert answer["chunks"] >= 2, "the capture must span several chunks of the smaller size"
        records, cursor = await drain(s, w.url, None, lambda got: total_packets(got) >= packets_of(expected([first])))
        w.stop(signal.SIGTERM)
        w.env["FLOWSIGHT_CHUNK_BYTES"] = str(256 * 1024)
        w.start()
        status, again = await upload(s, w.url, (base / first).read_bytes(), sensor=sensor_of(first))
        assert (status, again["duplicate"], again["chunks"]) == (200, True, answer["chunks"]), again
        status, _ = await upload(s, w.url, (base / second).read_bytes(), sensor=sensor_of(second))
        assert status == 202
        exp = expected([first, second])
        more, _ = await drain(s, w.url, cursor, lambda got: total_packets(records + got) >= packets_of(exp))
    assert per_sensor(records + more) == exp


def bad_bodies() -> list[tuple[str, bytes, int, str]]:
    base = reference.SHARED
    wiki = (base / "real" / "zeek-wikipedia.pcap").read_bytes() if base.exists() else b""
    cases = [
        ("empty body", b"", 400, "empty"),
        ("random bytes", os.urandom(4096), 400, "magic"),
        ("cut inside the file header", wiki[:20], 400, "short-header"),
        ("gzip file", gzip.compress(wiki), 400, "gzip"),
    ]
    if base.exists():
        for path in sorted((base / "broken").iterdir()):
            cases.append((f"broken/{path.name}", path.read_bytes(), 0, ""))
    return cases


async def test_bad_input_gets_a_clear_4xx_and_the_worker_keeps_serving(deployment):
    """Rule for broken/: a damaged container (bad magic, short header, cut short, impossible record
    length or timestamp, gzip) or an unsupported link type gets a 4xx with a reason; a well-formed
    container whose packets carry broken IP headers is accepted, and those packets count as skipped."""
    reference.pcaps_dir()
    w = deployment(FLOWSIGHT_CHUNK_BYTES=str(256 * 1024), FLOWSIGHT_MAX_UPLOAD_BYTES=str(512 * 1024)).start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        big = (reference.SHARED / "real" / "chrissanders-http_espn.pcapng").read_bytes()  # 684,660 bytes
        status, answer = await upload(s, w.url, big, sensor="bad")
        assert status == 413 and "limit of 524288 bytes" in answer["error"], answer
        for name, body, want, words in bad_bodies():
            status, answer = await upload(s, w.url, body, sensor="bad")
            if want:
                assert status == want and words in answer["error"], (name, status, answer)
                continue
            try:
                from app.capture import pcap
                idx = pcap.index(body)
                # cut inside its last record: its whole packets are taken (as pcap2flows and tshark read them)
                damaged = idx.error is not None and not (idx.error.kind == "truncated" and idx.packets)
            except pcap.CaptureError:
                damaged = True
            if damaged or len(body) > 512 * 1024:
                assert 400 <= status < 500 and answer["error"], (name, status, answer)
            else:
                assert status in (202, 415), (name, status, answer)
                if status == 415:
                    assert "link type" in answer["error"]
        async with s.post(w.url + "/v1/captures", data=b"x", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415 and "Content-Type" in (await r.json())["error"]
        async with s.get(w.url + "/v1/flows", params={"cursor": "not-a-cursor", "timeout": "0"}) as r:
            assert r.status == 400
        async with s.get(w.url + "/v1/health") as r:
            assert r.status == 200
        good = "real/zeek-wikipedia.pcap"
        status, _ = await upload(s, w.url, (reference.SHARED / good).read_bytes(), sensor=sensor_of(good))
        assert status == 202
        exp = expected([good])
        name = sensor_of(good)
        records, _ = await drain(s, w.url, None, lambda got: per_sensor(got).get(name) == exp[name])
    assert {k: v for k, v in per_sensor(records).items() if k != "bad"} == exp
    assert w.errors() == [], w.log_tail()
