"""The detectors per entity (app/detect/entities.py): each class is found, its benign look-alike is not, and
the state stays bounded and survives its row."""
from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings, strategies as st

from app.detect.entities import (EXACT, MESSAGE_ROWS, Actor, Distinct, EntityConfig, EntityRows, Seen,
                                 actor_partition, beacon_score, finding_record, wanted)
from app.detect.scorer import ScoreConfig, SensorScorer
from app.records import flow_ids
from app.flows.summary import Home

T0 = 1_767_571_200_000      # Monday 2026-01-05 00:00 UTC
MIN = 60_000
CFG = EntityConfig()
HOME = Home()
OK, SYN = 0x1B, 0x02


def feed(actor: Actor, flows: list[tuple], window_ms: int = MIN) -> list:
    """Flows (dst, proto, sport, dport, packets, bytes, first, flags) through EntityRows, window by window,
    as the flows agent sends them: every finding."""
    by_w: dict[int, list] = {}
    for f in flows:
        by_w.setdefault(f[6] - f[6] % window_ms, []).append(f)
    found = []
    for w in sorted(by_w):
        picks = EntityRows("s", 1)
        for dst, proto, sport, dport, pk, by, first, flags in by_w[w]:
            picks.add(actor.src, dst, actor.inside, dst in HOME, proto, sport, dport, [pk, by, first, first, flags])
        for _, msg in picks.messages(w, window_ms, 0):
            found += actor.observe(CFG, w, msg["actors"].get(actor.src, []))
    return found


def kinds(found) -> list[str]:
    return sorted({f.type for f in found})


def test_a_horizontal_scan_is_one_finding_about_its_source():
    a = Actor("s", "10.0.0.9", True)
    found = feed(a, [(f"10.0.1.{i}", 6, 51000, 445, 1, 60, T0 + i * 6_000, SYN) for i in range(40)])
    assert kinds(found) == ["horizontal-scan"]
    assert {f.entity for f in found} == {"10.0.0.9"}
    assert "445/tcp" in found[0].title and found[0].evidence["hosts"] >= 20


def test_many_answered_connections_to_a_cdn_are_no_scan():
    a = Actor("s", "10.0.0.9", True)
    found = feed(a, [(f"198.19.1.{i}", 6, 40000 + i, 443, 12, 900, T0 + i * 1_000, OK) for i in range(200)])
    assert found == []


def test_a_vertical_scan_is_found_and_traceroute_is_not():
    a = Actor("s", "203.0.113.5", False)
    found = feed(a, [("10.0.0.7", 6, 52000, p, 1, 60, T0 + p * 100, SYN) for p in range(1, 400)])
    assert kinds(found) == ["vertical-scan"] and "10.0.0.7" in found[0].title
    b = Actor("s", "10.0.0.3", True)
    assert feed(b, [("8.8.8.8", 17, 40000 + i, 33434 + i, 1, 60, T0 + i * 100, 0) for i in range(90)]) == []


def test_outside_scanners_need_more_than_inside_ones():
    inside, outside = Actor("s", "10.0.0.9", True), Actor("s", "203.0.113.9", False)
    flows = [(f"10.0.1.{i}", 6, 51000, 23, 1, 60, T0 + i * 4_000, SYN) for i in range(30)]
    assert kinds(feed(inside, flows)) == ["horizontal-scan"]
    assert feed(outside, flows) == []


def test_brute_force_is_found_and_a_monitoring_check_is_not():
    a = Actor("s", "203.0.113.5", False)
    found = feed(a, [("10.0.9.22", 6, 30000 + i, 22, 20, 3000, T0 + i * 5_000, OK) for i in range(60)])
    assert kinds(found) == ["brute-force"] and "22/tcp" in found[0].title
    mon = Actor("s", "10.0.9.250", True)
    checks = [("10.0.9.22", 6, 30000 + i, 22, 20, 3000, T0 + i * 300_000, OK) for i in range(288)]
    assert feed(mon, checks) == []


def test_a_beacon_is_found_within_the_hour_and_random_connections_are_not():
    rng = np.random.default_rng(1)
    a = Actor("s", "10.0.0.20", True)
    t = T0 + np.cumsum(60_000 + rng.normal(0, 2_000, 120)).astype(int)
    found = feed(a, [("203.0.113.80", 6, 40000 + i, 443, 6, 400 + int(rng.integers(-5, 6)), int(x), OK)
                     for i, x in enumerate(t)])
    beacons = [f for f in found if f.type == "beacon"]
    assert beacons and beacons[0].t_ms - T0 <= 60 * MIN
    assert 55 <= beacons[0].evidence["medianIntervalS"] <= 65
    b = Actor("s", "10.0.0.21", True)
    t = T0 + np.cumsum(rng.exponential(60_000, 120)).astype(int)
    assert feed(b, [("203.0.113.81", 6, 40000 + i, 443, 6, int(rng.integers(200, 5000)), int(x), OK)
                    for i, x in enumerate(t)]) == []


def test_ntp_is_periodic_by_design():
    a = Actor("s", "10.0.0.22", True)
    assert feed(a, [("198.19.200.1", 17, 123, 123, 1, 76, T0 + i * 64_000, 0) for i in range(200)]) == []


def test_a_dns_tunnel_is_found_and_ordinary_lookups_are_not():
    a = Actor("s", "10.0.0.30", True)
    found = feed(a, [("10.0.9.53", 17, 20000 + i, 53, 1, 300, T0 + i * 1_500, 0) for i in range(400)])
    assert kinds(found) == ["dns-tunnel"] and "1 resolver" in found[0].title
    b = Actor("s", "10.0.0.31", True)
    assert feed(b, [("10.0.9.53", 17, 20000 + i, 53, 1, 70, T0 + i * 1_500, 0) for i in range(400)]) == []


def test_a_busy_resolver_is_judged_against_its_own_history():
    a = Actor("s", "10.0.9.53", True)
    day = [("198.19.100.1", 17, 20000 + i, 53, 1, 130, T0 + i * 2_000, 0) for i in range(2 * 43_200)]
    found = feed(a, day)
    assert found and all(f.type == "dns-tunnel" for f in found)       # new, it looks like one on its first day
    later = [(d, p, s, dp, pk, by, t + 2 * 86_400_000, fl) for d, p, s, dp, pk, by, t, fl in day[:3000]]
    assert feed(a, later) == []                                          # after two days, it is what it does


def test_exfiltration_to_a_new_address_and_not_to_a_known_one():
    a = Actor("s", "10.0.0.40", True)
    found = feed(a, [("203.0.113.90", 6, 44000, 443, 100_000, 100_000_000, T0 + i * 4 * MIN, OK)
                     for i in range(5)])
    assert kinds(found) == ["exfiltration"] and "new address" in found[0].title
    b = Actor("s", "10.0.0.41", True)
    feed(b, [("198.18.0.9", 6, 44000, 443, 10, 5000, T0, OK)])                      # talked to it yesterday
    found = feed(b, [("198.18.0.9", 6, 44001, 443, 100_000, 100_000_000, T0 + 86_400_000 + i * 4 * MIN, OK)
                     for i in range(5)])
    assert found == []


def test_slow_exfiltration_is_found_within_three_windows_and_one_upload_is_not():
    # 50 MB an hour on one connection to a new address: a steady run of uploading, found in its third window
    a = Actor("s", "10.0.0.50", True)
    found = feed(a, [("203.0.113.91", 6, 44100, 443, 3000, 4_200_000, T0 + i * 5 * MIN, OK if i == 0 else 0x18)
                     for i in range(60)], window_ms=5 * MIN)
    slow = [f for f in found if f.type == "slow-exfiltration"]
    assert slow and slow[0].t_ms - T0 <= 2 * 5 * MIN and "steady upload" in slow[0].title
    assert kinds(found) == ["slow-exfiltration"]              # its long connection is the same event
    # one upload of the same bytes, then a few small requests: not a run
    b = Actor("s", "10.0.0.51", True)
    burst = [("203.0.113.92", 6, 44100, 443, 3000, 14_000_000, T0, OK)]
    burst += [("203.0.113.92", 6, 44101 + i, 443, 10, 3000, T0 + (i + 1) * 5 * MIN, OK) for i in range(6)]
    assert feed(b, burst, window_ms=5 * MIN) == []
    # a day of small requests to one new server, never 10 minutes apart, adds up to megabytes: no upload
    d = Actor("s", "10.0.0.53", True)
    chatty = [("203.0.113.95", 6, 40000 + i % 20000, 443, 4, 20_000, T0 + i * 2 * MIN, OK) for i in range(700)]
    assert "slow-exfiltration" not in kinds(feed(d, chatty, window_ms=5 * MIN))
    # the same run to an address the host uploaded to on an earlier day
    c = Actor("s", "10.0.0.52", True)
    feed(c, [("198.18.0.9", 6, 44000, 443, 2000, 2_000_000, T0, OK)])
    later = [("198.18.0.9", 6, 44100, 443, 3000, 4_200_000, T0 + 86_400_000 + i * 5 * MIN, OK) for i in range(12)]
    assert feed(c, later, window_ms=5 * MIN) == []


def test_a_long_connection_to_a_new_address_and_not_to_an_old_one():
    # a quiet session (a reverse shell) kept open for hours: a record every window, a few KB each
    def session(dst: str, t0: int, hours: float) -> list[tuple]:
        return [(dst, 6, 40999, 443, 20, 4000, t0 + i * 5 * MIN, OK if i == 0 else 0x18)
                for i in range(int(hours * 12))]
    a = Actor("s", "10.0.0.53", True)
    found = feed(a, session("203.0.113.93", T0, 6), window_ms=5 * MIN)
    assert kinds(found) == ["long-connection"]
    first = min(f.t_ms for f in found)
    assert 4 * 3_600_000 - 5 * MIN <= first - T0 <= 4 * 3_600_000 + 5 * MIN
    assert found[0].evidence["sourcePort"] == 40999 and "new to the host" in found[0].title
    # many short connections to the same address are no long connection
    b = Actor("s", "10.0.0.54", True)
    short = [("203.0.113.94", 6, 40000 + i, 443, 20, 4000, T0 + i * 5 * MIN, OK) for i in range(72)]
    assert "long-connection" not in kinds(feed(b, short, window_ms=5 * MIN))
    # the same session to an address the host has talked to for days (its chat server) is what it does
    c = Actor("s", "10.0.0.55", True)
    for day in range(2):
        feed(c, [("198.18.0.7", 6, 41000 + k, 443, 12, 2000 + k * 37 % 900,
                  T0 + day * 86_400_000 + k * 30 * MIN + k * k * 7919 % 1700 * 1000, OK)
                 for k in range(40)], window_ms=5 * MIN)
    assert feed(c, session("198.18.0.7", T0 + 2 * 86_400_000 + 21 * 3_600_000, 6), window_ms=5 * MIN) == []


def test_a_finding_of_two_earlier_days_is_habitual():
    a = Actor("s", "10.0.9.251", True)
    flags = []
    for day in range(4):
        t0 = T0 + day * 86_400_000
        found = feed(a, [(f"10.0.1.{i}", 6, 51000, 22, 1, 60, t0 + i * 3_000, SYN) for i in range(60)])
        flags.append({f.habitual for f in found})
    assert flags == [{False}, {False}, {True}, {True}]


def test_a_message_seen_again_is_skipped():
    a = Actor("s", "10.0.0.9", True)
    assert a.first_time("60000/3/0") and not a.first_time("60000/3/0") and a.first_time("60000/4/0")


def test_state_survives_its_row_and_stays_bounded():
    rng = np.random.default_rng(2)
    a = Actor("s", "10.0.0.60", True)
    flows = [(f"198.18.{int(x) >> 8 & 255}.{int(x) & 255}", 6, 40000, int(p), 1, 60, T0 + i * 50, SYN)
             for i, (x, p) in enumerate(zip(rng.integers(0, 1 << 16, 20_000), rng.integers(1, 65535, 20_000)))]
    flows += [("203.0.113.1", 17, 20000 + i, 53, 1, 200, T0 + i * 50, 0) for i in range(2000)]
    feed(a, flows)
    row = json.dumps(a.to_json())
    assert len(row) < 64_000, len(row)
    assert json.dumps(Actor.from_json(json.loads(row)).to_json()) == row


def test_distinct_counts_are_exact_then_close():
    d = Distinct()
    items = [str(i) for i in range(20_000)]
    for k, (h, item) in enumerate(zip(flow_ids(items), items)):
        d.add(h, item)
        if k + 1 == EXACT:
            assert d.count() == EXACT
    assert abs(d.count() - 20_000) / 20_000 < 0.2
    again = Distinct.from_json(json.loads(json.dumps(d.to_json())))
    assert again.count() == d.count()


def test_upload_destinations_are_those_of_earlier_days_and_bounded():
    s = Seen()
    s.uploaded("198.18.0.1", T0)
    assert not s.known("198.18.0.1", T0)                       # today's do not count yet
    assert s.known("198.18.0.1", T0 + 86_400_000) and not s.known("198.18.0.2", T0 + 86_400_000)
    for i in range(200):
        s.uploaded(f"198.18.1.{i}", T0 + 2 * 86_400_000)
    assert len(s.days) == 64 and not s.known("198.18.0.1", T0 + 3 * 86_400_000)   # the least recent went


def test_what_the_flows_agent_sends():
    assert wanted(True, False, 6, 40000, 443, 10, OK)             # inside to outside
    assert not wanted(False, True, 6, 443, 40000, 10, OK)         # the answer of a server
    assert wanted(False, True, 6, 40000, 22, 10, OK)              # to a service where passwords are guessed
    assert wanted(False, True, 6, 40000, 8080, 1, SYN)            # an attempt
    assert not wanted(True, True, 6, 40000, 8080, 10, OK)         # inside, answered, not a guessed service
    rows = EntityRows("s", 4)
    for i in range(MESSAGE_ROWS + 10):
        rows.add("10.0.0.9", f"10.0.{i // 250}.{i % 250}", True, True, 6, 51000, 445, [1, 60, T0, T0, SYN])
    msgs = rows.messages(T0, MIN, 2)
    assert [p for p, _ in msgs] == [actor_partition("s", "10.0.0.9", 4)] * 2
    assert sum(len(m["actors"]["10.0.0.9"]) for _, m in msgs) == MESSAGE_ROWS + 10
    assert len({(m["origin"], m["part"]) for _, m in msgs}) == 2


def test_beacon_score_is_high_for_a_clock_and_low_for_noise():
    rng = np.random.default_rng(3)
    clock = list(np.cumsum(np.full(60, 30_000) + rng.normal(0, 500, 60)).astype(int))
    assert beacon_score(clock, [300] * 60)[0] > 0.95
    noise = list(np.cumsum(rng.exponential(30_000, 60)).astype(int))
    assert beacon_score(noise, list(rng.integers(100, 5000, 60)))[0] < 0.7


def test_findings_go_through_attention_control():
    scorer = SensorScorer(ScoreConfig(MIN), "s")
    a = Actor("s", "10.0.0.9", True)
    found = feed(a, [(f"10.0.1.{i}", 6, 51000, 445, 1, 60, T0 + i * 3_000, SYN) for i in range(60)])
    results = [scorer.attend(finding_record("s", f, MIN)) for f in found]
    assert sum(alert is not None for _, alert in results) == 1          # one episode, one alert
    assert results[0][1]["title"].startswith("horizontal scan") and results[0][1]["evidence"]["hosts"] >= 20
    late = finding_record("s", found[0]._replace(t_ms=T0 + 86_400_000, habitual=True), MIN)
    anomaly, alert = scorer.attend(late)
    assert alert is None and anomaly["attention"] == "habitual"
    muted = finding_record("s", found[0]._replace(t_ms=T0 + 2 * 86_400_000), MIN)
    anomaly, alert = scorer.attend(muted, {"horizontal-scan|10.0.0.9": T0 + 3 * 86_400_000})
    assert alert is None and anomaly["attention"] == "muted"


def _messages(src: str, flows_by_window: dict[int, list[tuple]]) -> list[dict]:
    out = []
    for w in sorted(flows_by_window):
        picks = EntityRows("s", 1)
        for dst, proto, sport, dport, pk, by, first, flags in flows_by_window[w]:
            picks.add(src, dst, True, False, proto, sport, dport, [pk, by, first, first, flags])
        out += [msg for _, msg in picks.messages(w, MIN, 0)]
    return out


async def test_an_actor_is_written_when_it_finds_something_and_at_most_every_write_interval(monkeypatch):
    import app.main  # noqa: F401  (the app first: it defines the agents' table and topics)
    from agents import entities as agent

    table: dict[str, bytes] = {}
    writes: list[tuple[str, int]] = []
    sent: list[dict] = []

    class Table(dict):
        def __setitem__(self, key, value):
            writes.append((key, json.loads(value)["t"]))
            super().__setitem__(key, value)

    async def send_all(items, what):
        sent.extend(item[2] for item in items)

    table = Table()
    monkeypatch.setattr(agent, "entities", table)
    monkeypatch.setattr(agent, "send_all", send_all)
    monkeypatch.setattr(agent, "scored", lambda sensor: True)
    monkeypatch.setattr(agent, "WRITE_MS", 10 * MIN)
    for d in (agent._mem, agent._written, agent._dirty, agent._home):
        d.clear()
    # 30 quiet windows of one inside host (one answered connection a window), a scan in window 15
    by_w = {T0 + i * MIN: [("192.0.2.1", 6, 40000 + i, 443, 5, 900, T0 + i * MIN + 1000, OK)] for i in range(30)}
    by_w[T0 + 15 * MIN] += [(f"10.0.1.{j}", 6, 51000, 445, 1, 60, T0 + 15 * MIN + j * 100, SYN) for j in range(60)]
    for msg in _messages("10.0.0.9", by_w):
        await agent.handle(msg, 3)
    key = "s|10.0.0.9"
    assert {f["type"] for f in sent} == {"horizontal-scan"}
    assert [k for k, _ in writes] == [key] * len(writes)
    at = [t - t % MIN for _, t in writes]
    # written at its first window, then every 10 windows of capture time, and at once when it found the scan
    assert [(t - T0) // MIN for t in at] == [0, 10, 15, 25]
    assert all(b - a <= agent.WRITE_MS for a, b in zip(at, at[1:]))
    # what is written is the actor as observed so far: a restart goes on from it
    restored = Actor.from_json(json.loads(table[key]))
    assert restored.last_ms >= at[-1]
    assert agent._home[key] == 3


def _beacon_reference(starts: list[int], sizes: list[int]) -> float:
    """The beacon score written with numpy's percentiles and medians, as RITA's analysis reads."""
    t = np.unique(np.asarray(starts, np.int64))
    d = np.diff(t).astype(float)
    d = d[d >= 1000]
    if len(d) < 3:
        return 0.0
    s = np.asarray(sizes, float)
    def bowley(x, floor):
        q1, q2, q3 = np.percentile(x, [25, 50, 75])
        return (q1 + q3 - 2 * q2) / max(q3 - q1, floor, 1e-9)
    mid, smid = np.median(d), np.median(s)
    madm, smadm = np.median(np.abs(d - mid)), np.median(np.abs(s - smid))
    return float(np.mean([1 - abs(bowley(d, 0.1 * mid)), max(0.0, 1 - madm / mid) if mid > 0 else 0.0,
                          1 - abs(bowley(s, 32.0)), max(0.0, 1 - smadm / 128)]))


@given(st.lists(st.tuples(st.integers(0, 3_600_000), st.integers(40, 5000)), min_size=0, max_size=64))
@settings(max_examples=300, deadline=None)
def test_the_beacon_score_is_numpys_percentiles_and_medians(conns):
    starts, sizes = [c[0] for c in conns], [c[1] for c in conns]
    assert math.isclose(beacon_score(starts, sizes)[0], _beacon_reference(starts, sizes), abs_tol=1e-9)
