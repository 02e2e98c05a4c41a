"""Placebo round trip and heartbeats on a real worker."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import AUTH

pytestmark = pytest.mark.integration


async def test_placebo_round_trip_passes_and_heartbeats_flow(deployment, kafka):
    w = deployment(FLOWSIGHT_PLACEBO_INTERVAL_S="3", FLOWSIGHT_WINDOW_S="5", FLOWSIGHT_LATENESS_S="1").start()
    health = {}
    async with aiohttp.ClientSession(headers=AUTH) as s:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with s.get(w.url + "/v1/health") as r:
                health = await r.json()
            p = health["placebo"]
            if p["packets_due"] > 0 and p["passing"] and p["last_passed_s_ago"] is not None:
                break
            await asyncio.sleep(2)
    p = health["placebo"]
    assert p["uploads"] >= 3 and p["packets_due"] > 0 and p["passing"], health
    assert p["packets_seen"] >= p["packets_due"]
    assert {"decode", "merge", "emit", "placebo-source", "placebo-sink", "sensor:placebo"} <= set(health["progress"])
    assert set(health["lag"]) == {w.env["FLOWSIGHT_TOPIC_PREFIX"] + t for t in ("pcap-chunks", "flow-parts")}

    c = AIOKafkaConsumer(w.env["FLOWSIGHT_TOPIC_PREFIX"] + "heartbeats", bootstrap_servers=kafka,
                         auto_offset_reset="earliest", group_id=None)
    await c.start()
    try:
        batch = await c.getmany(timeout_ms=5000)
    finally:
        await c.stop()
    beats = [json.loads(m.value) for msgs in batch.values() for m in msgs]
    assert beats and "decode" in beats[-1]["progress"] and beats[-1]["worker"].endswith(str(w.port))
