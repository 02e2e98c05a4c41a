"""Hostile and careless clients against a real worker: each is answered 4xx (or served), nothing crashes,
nothing hangs, the log stays one line per request, and what was accepted comes out exact."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import aiohttp
import pytest

from tests.conftest import AUTH, drain, upload
from tests.integration.test_security import small_capture

pytestmark = pytest.mark.integration


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_hostile_requests_get_4xx_and_leave_the_worker_whole(deployment):
    w = deployment().start()
    pcap, packets = small_capture(seed=5)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, pcap, sensor="tap1")
        assert status == 202, answer
        # 1. ten acks with 1 MB ids once grew one table row past Kafka's limit and killed the worker for good
        for i in range(10):
            async with s.post(w.url + "/v1/actions", json={"action": "ack", "id": f"{i}" * 1_000_000}) as r:
                assert r.status == 400, await r.text()
        async with s.post(w.url + "/v1/actions", json={"action": "suppress", "type": "traffic", "entity": "tap1",
                                                       "for_s": 600}) as r:
            assert r.status == 202, await r.text()
        # 2. a cursor offset above int64 once killed the client's fetcher and held the poll (and its slot) for ever
        for text in ('{"0": 99999999999999999999999}', '{"0": 1e400}', '{"0": Infinity}', '{"99": 1}'):
            async with s.get(w.url + "/v1/flows", params={"cursor": raw_cursor(text), "timeout": "1"}) as r:
                assert r.status == 400, (text, await r.text())
        t0 = time.monotonic()
        async with s.get(w.url + "/v1/alerts", params={"from": "end", "timeout": "1"}) as r:
            assert r.status == 200
        assert time.monotonic() - t0 < 5
    # 5. malformed credentials and bodies without a valid token: 4xx, never a 500 with a traceback
    odd = [("GET", "/v1/flows", {"Authorization": "Bearer \xff"}, None),
           ("GET", "/v1/flows", {"Cookie": "flowsight_session=a.1.\u00e9"}, None),
           ("POST", "/v1/login", {"Content-Type": "application/json"}, b'{"token": "\\udcff"}'),
           ("POST", "/v1/login", {"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000),
           ("POST", "/v1/actions", {**AUTH, "Content-Type": "application/json"},
            b'{"action": "ack", "id": "a|traffic|\\udcff|1"}'),
           ("POST", "/v1/actions", {**AUTH, "Content-Type": "application/json"}, b"{" * 50_000),
           ("GET", "/v1/x%0aupload accepted block=FORGED sensor=tap1", {}, None),
           ("GET", "/v1/blocks/tap1~x%0aupload accepted block=FORGED", AUTH, None)]
    async with aiohttp.ClientSession() as s:
        for method, path, headers, body in odd * 20:
            async with s.request(method, w.url + path, headers=headers, data=body,
                                 skip_auto_headers=["Content-Type"]) as r:
                text = await r.text()
                assert 400 <= r.status < 500, (method, path, r.status, text)
                assert "Traceback" not in text
    async with aiohttp.ClientSession(headers=AUTH) as s:
        records, _ = await drain(s, w.url, None, lambda got: sum(
            x["packetDeltaCount"] for x in got if x["flowsight"]["sensor"] == "tap1") >= packets)
        async with s.get(w.url + "/v1/health") as r:
            assert r.status == 200, await r.text()
    assert sum(x["packetDeltaCount"] for x in records if x["flowsight"]["sensor"] == "tap1") == packets
    log = w.log_path.read_text(errors="replace")
    assert not w.errors(), w.log_tail()
    # 6. nothing a client sent starts a line of its own in the log
    assert not re.search(r"^upload accepted block=FORGED", log, re.M), log[-2000:]
    assert len(log.encode()) < 400_000, "the hostile requests filled the log"


async def test_parser_level_errors_carry_the_security_headers_and_echo_nothing(deployment):
    w = deployment().start()
    reader, writer = await asyncio.open_connection("127.0.0.1", w.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Evil: <script>\x01evil</script>\r\n\r\n")
    await writer.drain()
    answer = (await asyncio.wait_for(reader.read(65536), 10)).decode(errors="replace")
    writer.close()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), answer
    assert "X-Content-Type-Options: nosniff" in head and "X-Frame-Options: DENY" in head, head
    assert "aiohttp" not in head and "Python" not in head, head
    assert "evil" not in body and "script" not in body, body
    async with aiohttp.ClientSession() as s:
        async with s.get(w.url + "/healthz") as r:
            assert r.status == 200 and r.headers["Server"] == "flowsight"
