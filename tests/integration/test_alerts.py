"""Scoring on a real broker: warm-up traffic, then a SYN flood; the alert arrives on /v1/alerts.

The capture is built here: 90 one-minute windows of ordinary TCP conversations
(seeded), then, in two windows, 1,500 unanswered SYNs from spoofed sources to one
inside host. The alert must name that window, explain itself (observed against
the expected band, p-value, P(event), the rung) and point at the flood's target.
"""
from __future__ import annotations

import asyncio
import time
import random

import aiohttp
import dpkt
import pytest

from tests.conftest import AUTH, upload
from tests.pcapgen import ipv4_tcp, pcap

pytestmark = pytest.mark.integration

T0 = 1_767_600_000          # 2026-01-05 08:00 UTC, a Monday
WINDOWS = 90
FLOOD_AT = 80               # windows 80 and 81
TARGET = "10.0.0.99"


def capture(seed: int = 7, t0: int = T0) -> bytes:
    """WINDOWS one-minute windows of ordinary traffic from ``t0`` (seconds), a SYN flood in two of them."""
    rng = random.Random(seed)
    pkts = []
    for w in range(WINDOWS):
        for _ in range(40 + rng.randint(-6, 6)):
            t = t0 + w * 60 + rng.random() * 55
            c, s = f"10.0.{rng.randint(1, 4)}.{rng.randint(1, 250)}", f"198.51.100.{rng.randint(1, 40)}"
            sp, dp = rng.randint(32768, 60999), rng.choice((443, 443, 80, 22))
            pkts += [(t, ipv4_tcp(c, s, sp, dp, dpkt.tcp.TH_SYN)),
                     (t + 0.01, ipv4_tcp(s, c, dp, sp, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)),
                     (t + 0.02, ipv4_tcp(c, s, sp, dp, dpkt.tcp.TH_ACK, payload=b"q" * rng.randint(50, 900))),
                     (t + 0.05, ipv4_tcp(s, c, dp, sp, dpkt.tcp.TH_ACK | dpkt.tcp.TH_FIN,
                                         payload=b"r" * rng.randint(200, 1400)))]
        if w in (FLOOD_AT, FLOOD_AT + 1):
            for i in range(1500):
                src = f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                pkts.append((t0 + w * 60 + i * 0.035, ipv4_tcp(src, TARGET, rng.randint(1024, 65535), 80,
                                                               dpkt.tcp.TH_SYN)))
    pkts.sort(key=lambda p: p[0])
    return pcap(pkts)


def capture_later() -> bytes:
    """Ten more ordinary windows, right after the first capture."""
    rng = random.Random(8)
    pkts = []
    for w in range(WINDOWS, WINDOWS + 10):
        for _ in range(40):
            t = T0 + w * 60 + rng.random() * 55
            c, s = f"10.0.{rng.randint(1, 4)}.{rng.randint(1, 250)}", f"198.51.100.{rng.randint(1, 40)}"
            sp = rng.randint(32768, 60999)
            pkts += [(t, ipv4_tcp(c, s, sp, 443, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, payload=b"q" * 300)),
                     (t + 0.05, ipv4_tcp(s, c, 443, sp, dpkt.tcp.TH_ACK, payload=b"r" * 900))]
    pkts.sort(key=lambda p: p[0])
    return pcap(pkts)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def poll_all(s: aiohttp.ClientSession, url: str, path: str, until, timeout_s: float = 120) -> list[dict]:
    import time
    got, cursor = [], None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(got):
        params = {"timeout": "5", **({"cursor": cursor} if cursor else {})}
        async with s.get(url + path, params=params) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        cursor = body["cursor"]
        got += body["records"]
    return got


async def test_flood_after_warm_up_raises_one_explained_alert(deployment):
    w = deployment(FLOWSIGHT_WINDOW_S="60").start()
    flood_ms = (T0 + FLOOD_AT * 60) * 1000

    def flood_alert(alerts):
        return [a for a in alerts if a["type"] == "traffic" and a["windowStartMs"] in (flood_ms, flood_ms + 60_000)]

    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, capture(), sensor="site-a")
        assert status == 202, answer
        alerts = await poll_all(s, w.url, "/v1/alerts", lambda got: flood_alert(got))
        anomalies = await poll_all(s, w.url, "/v1/anomalies", lambda got: flood_alert(got), timeout_s=30)
        for _ in range(60):   # the windows after the flood are scored once the upload has gone idle
            async with s.get(w.url + "/v1/health") as r:
                health = await r.json()
            if health["scoring"]["models"].get("site-a", {}).get("windows", 0) >= WINDOWS:
                break
            await asyncio.sleep(1)
        async with s.get(w.url + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            metrics = parse_metrics(await r.text())
        async with s.get(w.url + "/metrics", headers={"Accept": "application/openmetrics-text"}) as r:
            assert r.status == 200 and r.content_type == "application/openmetrics-text"
            assert (await r.text()).rstrip().endswith("# EOF")
        async with s.get(w.url + "/healthz") as r:
            assert r.status == 200
        async with s.get(w.url + "/readyz") as r:
            assert r.status == 200, await r.text()
    assert metrics["flowsight_alerts_L2_total"] == 1
    # series of a closed set are there before their first event, at 0; progress is a Unix time
    assert metrics["flowsight_alerts_L0_total"] == 0 and metrics["flowsight_ingest_rejected_413_total"] == 0
    assert abs(metrics["flowsight_ingest_last_progress_timestamp_seconds"] - time.time()) < 900
    assert any(k.startswith("faust_messages_received") for k in metrics)     # Faust's own sensor
    assert metrics["flowsight_ingest_uploads_total"] == 1
    assert metrics['flowsight_sensor_uploads_total{sensor="site-a"}'] == 1
    assert metrics["flowsight_decode_packets_total"] == metrics["flowsight_ingest_packets_total"]
    # windows closed by the watermark, and the last ones flushed when the upload went idle
    assert metrics["flowsight_flows_by_end_window_closed_total"] > 0
    assert metrics["flowsight_flows_by_end_idle_flush_total"] > 0
    hits = flood_alert(alerts)
    assert len(hits) == 1, f"alerts: {[(a['type'], a['windowStartMs'], a['entity']) for a in alerts]}\n{w.log_tail()}"
    a = hits[0]
    assert a["windowStartMs"] == flood_ms and a["sensor"] == "site-a" and a["rung"] == "L2"
    assert a["topDestinations"][0] == {"host": TARGET, "flows": pytest.approx(1500, abs=60)}
    failed = a["observed"]["failed"]
    assert failed["observed"] >= 1400 and failed["high"] < 200 and failed["p"] < 1e-6
    assert a["pEvent"] > 0.99 and a["score"] >= a["threshold"]
    # the second flood window belongs to the same episode: an anomaly, not another alert
    assert any(x["windowStartMs"] == flood_ms + 60_000 and x["attention"] != "alert" for x in anomalies)
    before = [x for x in alerts if x["windowStartMs"] < flood_ms]
    assert len(before) <= 1, f"warm-up alerts: {before}"
    assert health["scoring"]["models"]["site-a"]["windows"] == WINDOWS
    assert not w.errors(), w.log_tail()

    # a restarted worker resumes its models from the changelog-backed table instead of relearning
    w.stop()
    w.start()
    later = capture_later()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, later, sensor="site-a")
        assert status == 202, answer
        models = {}
        for _ in range(60):
            async with s.get(w.url + "/v1/health") as r:
                models = (await r.json())["scoring"]["models"]
            if models.get("site-a", {}).get("windows", 0) >= WINDOWS + 10:
                break
            await asyncio.sleep(1)
    assert models["site-a"]["windows"] == WINDOWS + 10, models
    assert not w.errors(), w.log_tail()


def run_command(w, *args: str) -> list[dict]:
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT
    r = subprocess.run([sys.executable, "-m", "faust", "-A", "app", *args], cwd=ROOT, env={**w.env, "FLOWSIGHT_QUIET": "1"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")] if "--json" in args else \
        r.stdout


async def test_table_commands_read_the_changelogs_and_logs_are_json(deployment):
    import json
    w = deployment(FLOWSIGHT_WINDOW_S="60", FLOWSIGHT_LOG_JSON="true").start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, capture_later(), sensor="site-b", block_id="blk-1")
        assert status == 202, answer
        for _ in range(60):
            async with s.get(w.url + "/v1/health") as r:
                models = (await r.json())["scoring"]["models"]
            if models.get("site-b", {}).get("windows", 0) >= 10:
                break
            await asyncio.sleep(1)
    blocks = run_command(w, "blocks", "--json")
    assert blocks == [{"sensor": "site-b", "block": "blk-1", "chunks": 1, "decoded": 1, "complete": True,
                       "sha256": blocks[0]["sha256"]}]
    rows = run_command(w, "baselines", "--json")
    flows = {r["metric"]: r for r in rows if r["sensor"] == "site-b"}
    assert flows["flows"]["windows"] == 10 and flows["flows"]["l0_mean"] == pytest.approx(80, abs=1)
    assert "L2" in flows["(thresholds)"]["thresholds"]["traffic"]
    assert run_command(w, "flows-open", "--json") == []          # every window was closed
    listing = run_command(w, "tables")
    assert "scoring" in listing and "blocks" in listing
    logged = [json.loads(line) for line in w.log_path.read_text().splitlines() if line.startswith("{")]
    accepted = [e for e in logged if e["msg"].startswith("upload accepted")]
    assert len(accepted) == 1 and accepted[0]["block_id"] == "blk-1" and accepted[0]["sensor"] == "site-b"
    assert accepted[0]["level"] == "INFO" and accepted[0]["ts"].endswith("Z")
