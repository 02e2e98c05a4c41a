"""The analyst's workflow on a real worker, after a SYN flood alert (the capture of test_alerts.py):

- the alert goes to a webhook receiver that fails the first two attempts: the third gets it, signed with
  the shared key, with the alert id as the delivery id and a line of text naming the entity;
- an ack of an alert that does not exist is a 404; an ack of the real one records who, when and the note;
- a suppression is listed with its expiry, by whom and why, and can be lifted (a second lift is a 404).
"""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web

from app.api.webhook import verify
from tests.conftest import AUTH, free_port, upload
from tests.integration.test_alerts import FLOOD_AT, T0, capture, poll_all

pytestmark = pytest.mark.integration


async def test_webhooks_acks_and_suppressions(deployment, tmp_path):
    key = b"shared-webhook-key-0123456789"
    (tmp_path / "hook-key").write_bytes(key + b"\n")
    calls: list[tuple[int, dict, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append((len(calls) + 1, dict(request.headers), body))
        return web.Response(status=503 if len(calls) <= 2 else 204)   # down twice, then up

    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/hooks/chat/SECRET-PATH", hook)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        w = deployment(FLOWSIGHT_WINDOW_S="60", FLOWSIGHT_ALERT_WEBHOOKS=f"http://127.0.0.1:{port}/hooks/chat/SECRET-PATH",
                       FLOWSIGHT_WEBHOOK_SECRET_FILE=str(tmp_path / "hook-key")).start()
        flood_ms = (T0 + FLOOD_AT * 60) * 1000
        async with aiohttp.ClientSession(headers=AUTH) as s:
            status, _ = await upload(s, w.url, capture(), sensor="site-w")
            assert status == 202
            alerts = await poll_all(s, w.url, "/v1/alerts",
                                    lambda got: any(a["windowStartMs"] in (flood_ms, flood_ms + 60_000) for a in got))
            alert = next(a for a in alerts if a["windowStartMs"] in (flood_ms, flood_ms + 60_000))
            for _ in range(60):
                if any(n >= 3 for n, _, _ in calls):
                    break
                await asyncio.sleep(1)
            assert [n for n, _, _ in calls][:3] == [1, 2, 3], calls
            n, headers, body = calls[2]
            assert verify(key, body, headers["X-Flowsight-Signature"])
            assert headers["X-Flowsight-Delivery"] == calls[0][1]["X-Flowsight-Delivery"]   # the same delivery
            sent = json.loads(body)
            assert sent["event"] == "alert" and sent["alert"]["id"] == headers["X-Flowsight-Delivery"]
            assert any(sent["alert"]["id"] == a["id"] for a in alerts) and "site-w" in sent["text"]
            assert "SECRET-PATH" not in w.log_path.read_text()          # a webhook's secret path is never logged
            async with s.get(w.url + "/metrics") as r:
                text = await r.text()
            assert "flowsight_webhooks_sent_total 1.0" in text and "flowsight_webhooks_retries_total 2.0" in text

            # acks: an unknown id is a 404, the real one records who, when and the note
            async with s.post(w.url + "/v1/actions", json={"action": "ack", "id": "site-w|traffic|site-w|1"}) as r:
                assert r.status == 404, await r.text()
            t0 = int(time.time() * 1000)
            async with s.post(w.url + "/v1/actions", json={"action": "ack", "id": alert["id"],
                                                           "note": "a test flood"}) as r:
                assert r.status == 202, await r.text()
                acked = (await r.json())["accepted"]
            assert acked["by"] == "tests" and t0 <= acked["at_ms"] <= int(time.time() * 1000) + 1
            actions = await poll_all(s, w.url, "/v1/actions", lambda got: any(a.get("action") == "ack" for a in got),
                                     timeout_s=30)
            ack = next(a for a in actions if a.get("action") == "ack")
            assert (ack["id"], ack["by"], ack["note"]) == (alert["id"], "tests", "a test flood")

            # a suppression: listed with its expiry and author, then lifted
            async with s.post(w.url + "/v1/actions", json={"action": "suppress", "type": "traffic",
                                                           "entity": "site-w", "for_s": 600,
                                                           "note": "planned load test"}) as r:
                assert r.status == 202, await r.text()
            listed: list = []
            for _ in range(30):
                async with s.get(w.url + "/v1/suppressions") as r:
                    listed = (await r.json())["suppressions"]
                if listed:
                    break
                await asyncio.sleep(0.5)
            assert [(x["type"], x["entity"], x["by"], x["note"]) for x in listed] == \
                [("traffic", "site-w", "tests", "planned load test")]
            assert 590_000 <= listed[0]["until_ms"] - int(time.time() * 1000) <= 600_000
            async with s.post(w.url + "/v1/actions", json={"action": "lift", "type": "traffic",
                                                           "entity": "site-w"}) as r:
                assert r.status == 202, await r.text()
            for _ in range(30):
                async with s.get(w.url + "/v1/suppressions") as r:
                    listed = (await r.json())["suppressions"]
                if not listed:
                    break
                await asyncio.sleep(0.5)
            assert listed == []
            async with s.post(w.url + "/v1/actions", json={"action": "lift", "type": "traffic",
                                                           "entity": "site-w"}) as r:
                assert r.status == 404
    finally:
        await runner.cleanup()
