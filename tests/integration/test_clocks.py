"""Every sensor on its own capture clock, on a real broker: whole windows, historic replays, crashes.

- Three sensors whose clocks lie years apart, the placebo uploading throughout,
  uploads interleaved and some out of order: every window of every sensor is
  scored once, and each scored summary equals that sensor's records of the window.
- The upload of an ordinary capture, a pause (its windows flushed), then the SYN
  flood capture of test_alerts.py: the flood's window is scored with all its flows.
- Two files sent at once, the newer one decoded while the older one is still
  arriving: the older one's records are on time.
- Three weeks of warm-up for a new sensor ending just before a real SYN flood
  capture from ../shared/pcaps: one alert, naming the victim.
- kill -9 of a worker during a replay: the same alerts and flowIds as a run
  without it, and no window scored twice.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict

import aiohttp
import dpkt
import numpy as np
import pytest

from tests import reference
from tests.conftest import AUTH, Worker, drain, upload
from tests.integration.test_alerts import FLOOD_AT, T0, TARGET, WINDOWS, capture, poll_all
from tests.pcapgen import ipv4_tcp, pcap, tcp_pcap

pytestmark = pytest.mark.integration
W_S = 60


def ordinary(t0_s: int, seconds: int, seed: int, per_s: float = 1.0) -> tuple[bytes, int]:
    """Ordinary TCP conversations (a client's packet and the server's answer) from ``t0_s`` for ``seconds``:
    (capture, packets)."""
    rng = random.Random(seed)
    pkts = []
    for i in range(int(seconds * per_s)):
        t = t0_s + rng.random() * seconds
        c, s = f"10.1.{rng.randint(1, 3)}.{rng.randint(1, 250)}", f"198.51.100.{rng.randint(1, 30)}"
        sp = rng.randint(32768, 60999)
        pkts += [(t, ipv4_tcp(c, s, sp, 443, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, payload=b"q" * rng.randint(10, 400))),
                 (t + 0.01, ipv4_tcp(s, c, 443, sp, dpkt.tcp.TH_ACK, payload=b"r" * rng.randint(10, 900)))]
    pkts.sort(key=lambda p: p[0])
    return pcap(pkts), len(pkts)


async def health(s: aiohttp.ClientSession, w: Worker) -> dict:
    async with s.get(w.url + "/v1/health") as r:
        return await r.json()


async def models_when(s: aiohttp.ClientSession, workers: list[Worker], done, timeout_s: float = 180) -> dict:
    """The scoring models of whichever worker scores (table scoring has one partition), once ``done`` holds."""
    deadline = time.monotonic() + timeout_s
    models: dict = {}
    while time.monotonic() < deadline:
        for w in workers:
            try:
                models = (await health(s, w))["scoring"]["models"]
            except (aiohttp.ClientError, KeyError):
                continue
            if done(models):
                return models
        await asyncio.sleep(1)
    seen = {}
    for w in workers:
        try:
            h = await health(s, w)
            seen[w.url] = {"scoring": h["scoring"], "flows": h["flows"], "assigned": h["assigned"]}
        except (aiohttp.ClientError, KeyError) as exc:
            seen[w.url] = repr(exc)
    raise AssertionError(f"scoring did not get there in {timeout_s} s: {json.dumps(seen)[:6000]}")


def by_window(records: list[dict]) -> dict[tuple[str, int], list[int]]:
    """(sensor, window) -> [flows, packets, bytes] of the on-time records."""
    out: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        if not r["flowsight"]["late"]:
            k = out[(r["flowsight"]["sensor"], r["flowsight"]["window"])]
            k[0] += 1
            k[1] += r["packetDeltaCount"]
            k[2] += r["octetDeltaCount"]
    return out


async def test_sensors_years_apart_beside_the_placebo_are_scored_whole_and_exact(deployment):
    w = deployment(FLOWSIGHT_PLACEBO_INTERVAL_S="3", FLOWSIGHT_LATENESS_S="200", FLOWSIGHT_IDLE_FLUSH_S="15").start()
    starts = {"tap-2011": 1_300_000_020, "tap-2019": 1_560_000_000, "tap-2026": 1_765_000_020}
    files = {s: [ordinary(t0 + 90 * i, 90, seed=sum(map(ord, s)) + i) for i in range(3)] for s, t0 in starts.items()}
    # interleaved; tap-2019's second and third files come out of order (within the lateness)
    order = [("tap-2011", 0), ("tap-2019", 0), ("tap-2026", 0), ("tap-2019", 2), ("tap-2011", 1), ("tap-2026", 1),
             ("tap-2019", 1), ("tap-2026", 2), ("tap-2011", 2)]
    want = sum(n for fs in files.values() for _, n in fs)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for sensor, i in order:
            status, answer = await upload(s, w.url, files[sensor][i][0], sensor=sensor)
            assert status == 202, answer
        records, _ = await drain(s, w.url, None, lambda got: sum(
            r["packetDeltaCount"] for r in got if r["flowsight"]["sensor"] in starts) >= want, quiet_s=6)
        windows = by_window(records)
        expect = {sensor: sorted(wd for (x, wd) in windows if x == sensor) for sensor in starts}
        assert all(len(v) == 5 for v in expect.values()), expect     # 270 s from a minute's start: 5 windows
        models = await models_when(s, [w], lambda m: all(
            m.get(x, {}).get("scored_windows") == 5 and m.get(x, {}).get("windows") == 5 for x in starts))
        placebo = (await health(s, w))["placebo"]
    ours = [r for r in records if r["flowsight"]["sensor"] in starts]
    assert sum(r["packetDeltaCount"] for r in ours) == want
    assert not [r for r in ours if r["flowsight"]["late"]]
    for sensor in starts:
        m = models[sensor]
        assert m["late_records"] == 0 and m["ahead_records"] == 0
        scored = {t: [f, p, b] for t, f, p, b in m["recent"]}
        assert sorted(scored) == expect[sensor]
        for t, sums in scored.items():                               # each scored summary is exact
            assert sums == windows[(sensor, t)], (sensor, t)
    # the placebo ran throughout, stamped with today, and neither held anyone back nor came out late itself
    assert placebo["uploads"] >= 5
    assert not [r for r in records if r["flowsight"]["sensor"] == "placebo" and r["flowsight"]["late"]]
    assert models.get("placebo", {}).get("late_records", 0) == 0
    assert not w.errors(), w.log_tail()


async def test_a_window_after_an_idle_pause_is_scored_with_every_partitions_flows(deployment):
    """An upload, a pause that flushes its windows on every partition, then the flood capture: once, partitions
    that were idle from the first upload let the flood window be scored with one partition's flows (182 of
    1,500 failed attempts). Now every partition must close the window first."""
    w = deployment(FLOWSIGHT_PLACEBO_SOURCE="false").start()
    flood_ms = (T0 + FLOOD_AT * 60) * 1000
    before, _ = ordinary(T0 - 600, 300, seed=3)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, before, sensor="site-a")
        assert status == 202, answer
        await models_when(s, [w], lambda m: m.get("site-a", {}).get("scored_windows", 0) >= 5, timeout_s=60)
        await asyncio.sleep(3)                                      # idle: flushed on every partition
        status, answer = await upload(s, w.url, capture(), sensor="site-a")
        assert status == 202, answer
        alerts = await poll_all(s, w.url, "/v1/alerts", lambda got: [a for a in got if a["windowStartMs"] == flood_ms])
        models = await models_when(s, [w], lambda m: m.get("site-a", {}).get("scored_windows", 0) >= 5 + WINDOWS)
    hit = [a for a in alerts if a["windowStartMs"] == flood_ms]
    assert len(hit) == 1, [(a["windowStartMs"], a["entity"]) for a in alerts]
    assert hit[0]["observed"]["failed"]["observed"] == 1500
    assert hit[0]["topDestinations"][0] == {"host": TARGET, "flows": 1500}
    assert models["site-a"]["late_records"] == 0
    assert not w.errors(), w.log_tail()


async def test_a_file_still_arriving_when_a_newer_one_is_decoded_is_on_time(deployment):
    """A shipper sends two files at once and the newer one's body ends first: it is accepted and decoded while
    the older one is still arriving. The older file's records are on time, not late (its upload held its
    sensor's clock from its first packets on), and nothing is counted twice."""
    import web.routes  # noqa: F401  (imports web.ingest in its order)
    from web.ingest import HEAD_BYTES
    w = deployment(FLOWSIGHT_PLACEBO_SOURCE="false").start()
    t0 = 1_765_000_020
    old, n_old = ordinary(t0, 300, seed=5, per_s=10)
    new, n_new = ordinary(t0 + 600, 120, seed=6, per_s=5)
    assert len(old) > 2 * HEAD_BYTES
    newer_done = asyncio.Event()

    async def trickle():
        yield old[:HEAD_BYTES + 4096]
        await newer_done.wait()
        yield old[HEAD_BYTES + 4096:]

    async def send_old(s: aiohttp.ClientSession) -> tuple[int, dict]:
        headers = {"Content-Type": "application/octet-stream", "X-Sensor": "ship", "X-Block-Id": "old", **AUTH}
        async with s.put(w.url + "/v1/captures", data=trickle(), headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async with aiohttp.ClientSession(headers=AUTH) as s:
        older = asyncio.ensure_future(send_old(s))
        await asyncio.sleep(2)                                  # its first bytes are in
        status, answer = await upload(s, w.url, new, sensor="ship", block_id="new")
        assert status == 202, answer
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:                      # the newer file is decoded...
            async with s.get(w.url + "/v1/blocks/ship~new") as r:
                row = await r.json() if r.status == 200 else {}
            if row and len(row.get("done") or []) and row["done"][0] == [0, answer["chunks"] - 1]:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"the newer file was not decoded in 30 s: {row}")
        await asyncio.sleep(7)                                  # ...merged, and the sensor idle past its flush
        newer_done.set()
        status, answer = await older
        assert status == 202, answer
        records, _ = await drain(s, w.url, None, lambda got: sum(
            r["packetDeltaCount"] for r in got if r["flowsight"]["sensor"] == "ship") >= n_old + n_new, quiet_s=6)
    ours = [r for r in records if r["flowsight"]["sensor"] == "ship"]
    assert sum(r["packetDeltaCount"] for r in ours) == n_old + n_new
    assert len({r["flowId"] for r in ours}) == len(ours)
    late = [r for r in ours if r["flowsight"]["late"]]
    assert not late, f"{len(late)} of {len(ours)} records late, from windows {sorted({r['flowsight']['window'] for r in late})}"
    assert not w.errors(), w.log_tail()


def warm_up(t_end_s: int, days: int = 21, seed: int = 11) -> tuple[list[bytes], int]:
    """``days`` of ordinary traffic ending at ``t_end_s``, one capture per week, with a daily rhythm: each
    minute a few conversations to servers (among them the victim's address), a client's packet and the
    answer, both with ACK. Returns the captures and how many one-minute windows have traffic."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(t_end_s // 60 - days * 1440, t_end_s // 60)
    hour = (minutes % 1440) / 60
    rate = 6 + 5 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)      # busier in the day
    n = rng.poisson(rate)
    t_s = np.repeat(minutes * 60, n) + rng.random(n.sum()) * 59
    m = len(t_s)
    client = (10 << 24) | (20 << 16) | rng.integers(1, 4000, m)
    server = np.where(rng.random(m) < 0.1, (10 << 24) | (10 << 16) | (10 << 8) | 10,
                      (198 << 24) | (51 << 16) | (100 << 8) | rng.integers(1, 60, m))
    port = np.where(server == 0x0A0A0A0A, 25565, 443)
    sport = rng.integers(32768, 61000, m)
    ts = np.empty(2 * m, np.int64)
    ts[0::2] = (t_s * 1e6).astype(np.int64)
    ts[1::2] = ts[0::2] + 20_000
    src, dst, sp, dp = (np.empty(2 * m, np.int64) for _ in range(4))
    src[0::2], src[1::2], dst[0::2], dst[1::2] = client, server, server, client
    sp[0::2], sp[1::2], dp[0::2], dp[1::2] = sport, port, port, sport
    flags = np.tile(np.array([0x18, 0x18], np.uint8), m)                  # PSH|ACK both ways
    size = rng.integers(100, 1400, 2 * m)
    order = np.argsort(ts, kind="stable")
    week = (ts[order] - ts[order][0]) // (7 * 86_400_000_000)
    return [tcp_pcap(ts[order][week == k], src[order][week == k], dst[order][week == k], sp[order][week == k],
                     dp[order][week == k], flags[order][week == k], size[order][week == k])
            for k in np.unique(week)], int((n > 0).sum())


async def test_three_weeks_of_warm_up_then_a_real_syn_flood_raise_one_alert_naming_the_victim(deployment):
    flood = reference.pcaps_dir() / "attack" / "stopddos-pkt.TCP.synflood.spoofed.pcap"
    attack_start = 1_619_605_821                                     # 2021-04-28 10:30:21 UTC
    weeks, busy_windows = warm_up(attack_start - attack_start % 60)
    w = deployment(FLOWSIGHT_PLACEBO_INTERVAL_S="3", FLOWSIGHT_IDLE_FLUSH_S="10").start()
    flood_ms = (attack_start - attack_start % 60) * 1000
    async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=600)) as s:
        for body in weeks + [flood.read_bytes()]:                    # in order, as ship would send them
            status, answer = await upload(s, w.url, body, sensor="edge-1")
            assert status == 202, answer
        t0 = time.monotonic()
        models = await models_when(s, [w], lambda m: m.get("edge-1", {}).get("last_window_ms") == flood_ms,
                                   timeout_s=600)
        print(f"{busy_windows + 1} windows scored {time.monotonic() - t0:.1f} s after the last upload's 202 "
              f"({(busy_windows + 1) / (time.monotonic() - t0):.0f} windows/s)")
        alerts = await poll_all(s, w.url, "/v1/alerts", lambda got: [a for a in got if a["windowStartMs"] == flood_ms],
                                timeout_s=30)
        placebo = (await health(s, w))["placebo"]
    hit = [a for a in alerts if a["windowStartMs"] == flood_ms and a["sensor"] == "edge-1"]
    assert len(hit) == 1, [(a["windowStartMs"], a["type"], a["entity"]) for a in alerts[-10:]]
    assert hit[0]["topDestinations"][0]["host"] == "10.10.10.10"
    assert hit[0]["observed"]["failed"]["observed"] > 30_000
    assert models["edge-1"]["windows"] == busy_windows + 1 and models["edge-1"]["late_records"] == 0
    # the placebo ran throughout, stamped with today: it moved no clock of edge-1, nor was any of it late
    assert placebo["uploads"] >= 10 and models.get("placebo", {}).get("late_records", 0) == 0, (placebo, models)
    assert not w.errors(), w.log_tail()


def replay_files() -> list[bytes]:
    """The flood capture of test_alerts.py cut into six files by time, each a capture of its own."""
    reader = dpkt.pcap.Reader(__import__("io").BytesIO(capture()))
    pkts = [(ts, bytes(buf)) for ts, buf in reader]
    edges = np.linspace(T0, T0 + WINDOWS * 60, 7)
    return [pcap([p for p in pkts if lo <= p[0] < hi]) for lo, hi in zip(edges[:-1], edges[1:])]


async def run_replay(workers: list[Worker], kill_after: int | None) -> tuple[set, dict, dict]:
    """Ship the six files oldest first; after file ``kill_after`` kill -9 the second worker, and restart it.
    Returns (alert ids, flowId -> (window, key, packets), models)."""
    files = replay_files()
    restart = None
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for i, body in enumerate(files):
            for _ in range(120):   # as a shipper does: a 503 (the block's owner is down) is tried again
                status, answer = await upload(s, workers[0].url, body, sensor="site-r")
                if status != 503:
                    break
                await asyncio.sleep(1)
            assert status == 202, answer
            if i == kill_after:   # the shipper goes on with the survivor while the killed worker comes back
                workers[1].proc.kill()
                workers[1].proc.wait()
                restart = asyncio.ensure_future(asyncio.to_thread(workers[1].start, wait_partitions=False))
        if restart is not None:
            await restart
        models = await models_when(s, workers, lambda m: m.get("site-r", {}).get("scored_windows") == WINDOWS,
                                   timeout_s=240)
        want = sum(1 for _ in dpkt.pcap.Reader(__import__("io").BytesIO(capture())))
        records, _ = await drain(s, workers[0].url, None,
                                 lambda got: sum(r["packetDeltaCount"] for r in {x["flowId"]: x for x in got}.values()
                                                 if r["flowsight"]["sensor"] == "site-r") >= want)
        alerts = await poll_all(s, workers[0].url, "/v1/alerts", lambda got: len(got) > 0, timeout_s=30)
    ids = {}
    for r in records:
        if r["flowsight"]["sensor"] == "site-r":
            got = (r["flowsight"]["window"], r["flowStartMilliseconds"], r["packetDeltaCount"], r["octetDeltaCount"])
            assert ids.setdefault(r["flowId"], got) == got             # a repeat is the same record
    return {a["id"] for a in alerts if a["sensor"] == "site-r"}, ids, models


async def test_kill_9_during_a_replay_gives_the_same_alerts_and_flow_ids_and_scores_nothing_twice(kafka, tmp_path):
    import uuid
    runs = []
    for name, kill_after in (("clean", None), ("killed", 2)):
        tag = uuid.uuid4().hex[:8]
        env = {"FLOWSIGHT_PLACEBO_SOURCE": "false", "FLOWSIGHT_IDLE_FLUSH_S": "8"}
        workers = [Worker(kafka, tmp_path / f"{name}{i}", f"fs-{tag}", f"t{tag}-", **env) for i in range(2)]
        try:
            workers[0].start(wait_partitions=False)
            workers[1].start(wait_partitions=False)
            runs.append(await run_replay(workers, kill_after))
        finally:
            for w in workers:
                w.stop()
    (alerts_a, ids_a, models_a), (alerts_b, ids_b, models_b) = runs
    assert alerts_a and alerts_a == alerts_b
    assert ids_a == ids_b
    for models in (models_a, models_b):
        assert models["site-r"]["windows"] == WINDOWS == models["site-r"]["scored_windows"]
        assert models["site-r"]["late_records"] == 0
