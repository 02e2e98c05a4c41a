"""Searching the flows by capture time and filter, and the top N, on a real worker: three days of one sensor.

- GET /v1/flows with since, until and filter gives exactly the records of the range that an independent
  check keeps, seeks to the range (it reads the records of that day only), pages with its cursor, and says
  when it is complete; a filter that does not parse is a 400 naming the position.
- GET /v1/top gives the top N sources by bytes as an independent count of the same records does, and a
  time series whose sums are the range's.
- faust -A app query and top print the same.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import Counter

import aiohttp
import pytest

from app.records import message_columns
from tests.conftest import AUTH, ROOT, drain, upload
from tests.integration.test_clocks import ordinary
from datetime import UTC

pytestmark = pytest.mark.integration
DAY_S = 86400
T0 = 1_760_000_400 - 1_760_000_400 % DAY_S + 10 * 3600     # 10:00 UTC, some day in October 2025


def in_range(r: dict, since_ms: int, until_ms: int) -> bool:
    return r["flowEndMilliseconds"] >= since_ms and r["flowStartMilliseconds"] < until_ms


def port_443_from_10_1_2(r: dict) -> bool:    # 'dst port 443 and src net 10.1.2.0/24', written out by hand
    return r["destinationTransportPort"] == 443 and r["sourceIPv4Address"].startswith("10.1.2.")


async def test_search_seeks_by_capture_time_filters_pages_and_ranks(deployment):
    # a time index entry every 4 flows messages of a partition (256 on a real site)
    w = deployment(FLOWSIGHT_PLACEBO_SOURCE="false", FLOWSIGHT_FLOWS_INDEX_EVERY="4").start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        sent = 0
        for day in range(3):
            body, n = ordinary(T0 + day * DAY_S, 600, seed=day, per_s=2.0)
            status, _ = await upload(s, w.url, body, sensor="tap-q", block_id=f"day{day}")
            assert status == 202
            sent += n
        everything, _ = await drain(s, w.url, None, lambda got: sum(r["packetDeltaCount"] for r in got) >= sent)
        assert sum(r["packetDeltaCount"] for r in everything) == sent
        since, until = (T0 + DAY_S + 120) * 1000, (T0 + DAY_S + 420) * 1000     # 5 minutes of the second day
        want = sorted(r["flowId"] for r in everything if in_range(r, since, until) and port_443_from_10_1_2(r))
        day2 = [r for r in everything if T0 + DAY_S <= r["flowStartMilliseconds"] // 1000 < T0 + 2 * DAY_S]
        assert len(want) > 10
        # every flows message carries its window's capture time as its Kafka record time: the seek rests on it
        from aiokafka import AIOKafkaConsumer
        c = AIOKafkaConsumer(w.env["FLOWSIGHT_TOPIC_PREFIX"] + "flows", bootstrap_servers=w.env["FLOWSIGHT_BROKER"][8:],
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            stamped, total_bytes = 0, 0
            times: dict[tuple[int, int], int] = {}
            for msgs in (await c.getmany(timeout_ms=5000, max_records=10_000)).values():
                for m in msgs:
                    times[(m.partition, m.offset)] = m.timestamp
                    total_bytes += len(m.value)
                    recs = json.loads(m.value)["records"]
                    windows = {x["flowsight"]["window"] for x in recs}
                    assert windows == {m.timestamp}, (windows, m.timestamp)
                    # and its records' columns beside it, which say what the records say
                    cols, sensor = message_columns(m.headers)
                    assert sensor == "tap-q" and len(cols) == len(recs)
                    for x, col in zip(recs, cols):
                        assert (ipaddress.ip_address(x["sourceIPv4Address"]), x["destinationTransportPort"],
                                x["octetDeltaCount"], x["flowStartMilliseconds"], x["flowsight"]["late"]) == \
                            (ipaddress.ip_address(int(col["srclo"])), col["dport"], col["bytes"], col["first"], bool(col["late"]))
                    stamped += 1
            assert stamped > 10
        finally:
            await c.stop()
        # the time index: each entry covers exactly the messages it counted, and their record times
        c = AIOKafkaConsumer(w.env["FLOWSIGHT_TOPIC_PREFIX"] + "flows-index",
                             bootstrap_servers=w.env["FLOWSIGHT_BROKER"][8:], auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            entries = [json.loads(m.value) for msgs in (await c.getmany(timeout_ms=5000, max_records=10_000)).values()
                       for m in msgs]
        finally:
            await c.stop()
        assert len(entries) >= 4, entries
        for e in entries:
            spanned = [times[(e["partition"], o)] for o in range(e["from"], e["to"] + 1)]
            assert len(spanned) == e["messages"] and (min(spanned), max(spanned)) == (e["min"], e["max"]), e

        params = {"since": str(since), "until": str(until), "filter": "dst port 443 and src net 10.1.2.0/24"}
        async with s.get(w.url + "/v1/flows", params=params) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        assert page["complete"] is True
        assert sorted(x["flowId"] for x in page["records"]) == want
        # it read the second day's batches and not the others (they are passed over by their record time), and
        # did not even fetch the third day's (the time index): every message after its range is newer
        assert page["scanned"] <= len(day2), (page["scanned"], len(day2), len(everything))
        assert 0 < page["fetched"] < total_bytes * 0.45, (page["fetched"], total_bytes)   # about a third

        # the same, 7 records at a time, each page resumed from the last cursor; RFC 3339 times
        from datetime import datetime
        rfc = {k: datetime.fromtimestamp(v / 1000, UTC).isoformat().replace("+00:00", "Z")
               for k, v in (("since", since), ("until", until))}
        got, cursor = [], None
        for _ in range(100):
            q = {**rfc, "filter": params["filter"], "limit": "7", **({"cursor": cursor} if cursor else {})}
            async with s.get(w.url + "/v1/flows", params=q) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            assert len(page["records"]) <= 7
            got += page["records"]
            cursor = page["cursor"]
            if page["complete"]:
                break
        assert sorted(x["flowId"] for x in got) == want

        cut = "dst port 443 and (src host 10.1.1.1 or"
        async with s.get(w.url + "/v1/flows", params={"filter": cut}) as r:
            assert r.status == 400
            err = await r.json()
        assert err["position"] == len(cut) and f"position {len(cut)}" in err["error"], err
        async with s.get(w.url + "/v1/flows", params={"since": "yesterday"}) as r:
            assert r.status == 400 and "since" in (await r.json())["error"]

        # the top 5 sources by bytes of the same range, against a count of our own
        count = Counter()
        flows = Counter()
        for x in everything:
            if in_range(x, since, until) and x["destinationTransportPort"] == 443:
                count[x["sourceIPv4Address"]] += x["octetDeltaCount"]
                flows[x["sourceIPv4Address"]] += 1
        async with s.get(w.url + "/v1/top", params={"by": "srcip", "metric": "bytes", "n": "5", "since": str(since),
                                                    "until": str(until), "filter": "dst port 443",
                                                    "bucket": "60"}) as r:
            assert r.status == 200, await r.text()
            top = await r.json()
        assert top["complete"] is True
        assert [(t["key"], t["bytes"], t["flows"]) for t in top["top"]] == \
            [(k, v, flows[k]) for k, v in sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
        rows = top["series"]["rows"]
        assert sum(row[3] for row in rows) == sum(count.values()) and len(rows) >= 5
        assert all(row[0] % 60_000 == 0 for row in rows)
        async with s.get(w.url + "/v1/top", params={"by": "nothing"}) as r:
            assert r.status == 400

    # the command line: the same records, and the same top
    cmd = [sys.executable, "-m", "faust", "-A", "app", "query", "--since", rfc["since"], "--until", rfc["until"],
           "--json", "dst port 443 and src net 10.1.2.0/24"]
    out = subprocess.run(cmd, cwd=ROOT, env=w.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(json.loads(line)["flowId"] for line in out.stdout.splitlines()) == want
    table = subprocess.run(cmd[:-2] + ["dst port 443 and src net 10.1.2.0/24"], cwd=ROOT, env=w.env,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and table.stdout.startswith("Date first seen")
    assert len(table.stdout.splitlines()) == len(want) + 1
    top_cmd = [sys.executable, "-m", "faust", "-A", "app", "top", "--by", "srcip", "-n", "5", "--json",
               "--since", str(since), "--until", str(until), "dst port 443"]
    out = subprocess.run(top_cmd, cwd=ROOT, env=w.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [json.loads(line)["key"] for line in out.stdout.splitlines()] == [t["key"] for t in top["top"]]
    bad = subprocess.run(cmd[:-1] + ["port 22 and"], cwd=ROOT, env=w.env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "position 11" in bad.stderr
