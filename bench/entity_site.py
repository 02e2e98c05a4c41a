"""A synthetic site for the detectors per entity, with attacks and benign look-alikes (bench/detect_eval.py --entities).

Seeded and reproducible. Flow records (the side that opens each conversation,
as the detectors read them) of a site of 300 inside hosts, in 5-minute windows of
capture time, through the shipped path: :class:`app.detect.entities.EntityRows`
picks and groups what the detectors read, one :class:`~app.detect.entities.Actor`
per source keeps their state, and one :class:`~app.detect.scorer.SensorScorer`
scores the sensor's and the inside hosts' windows and puts every finding through
the same attention control and budget.

Background: hosts' activity is heavy tailed (lognormal weights) and follows the
site's local day (UTC+1, moving to UTC+2 on a daylight-saving day) and week, with
day-level noise and a holiday; web connections to 5,000 outside servers (Zipf),
1 % of them failing; uploads now and then; DNS through an inside resolver, which
asks outside servers; bursts to many CDN addresses; NTP; the internet's
background radiation (unanswered SYNs from ever new sources) and a daily sweep of
the site from one outside scanner.

Benign look-alikes that start in the scored days: a monitoring server's check of
an outside endpoint every minute (periodic by design), a scheduled vulnerability
scan at 01:00 every night, and a nightly backup of 1-2 GB to a new outside
address at 02:00. They may alert on their first two days, never after. And a
chat client's session to its server, open through every working day from the
first warm-up day on: a long connection to an address the host knows.

Attacks, in the scored days, at uniform times (exfiltration at night), each class
at several strengths and speeds: horizontal scans (port 22 or 445, 60-300 hosts
in 10-60 min), vertical scans (200-1,000 ports of one host in 2-30 min), brute
force (100-800 short connections to one service in 10-60 min), beacons (one
small connection every 30-300 s with jitter, for 12-24 h), DNS tunnels
(1,000-5,000 DNS flows of 200-400 bytes in an hour), exfiltration (0.8-3 GB to one
address in 20-60 min at night), slow exfiltration (30-80 MB an hour for 8-12 h
to a new address) and long connections (a quiet session of a few KB a window to a
new address, open for 5-10 h).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from app.detect.entities import Actor, EntityConfig, EntityRows
from app.detect.scorer import ScoreConfig, SensorScorer
from app.flows.summary import METRICS, Home, Summary

W_MS = 300_000
PER_DAY = 288
HOUR_W = 12
T0_MS = 1_767_571_200_000          # Monday 2026-01-05 00:00 UTC
N_IN = 300
N_OUT = 5000
SENSOR = "site"
CLASSES = ("horizontal-scan", "vertical-scan", "brute-force", "beacon", "dns-tunnel", "exfiltration",
           "slow-exfiltration", "long-connection")
BENIGN = ("monitor-poll", "vuln-scan", "backup", "chat-session")
RESOLVER, FILESERVER, MONITOR, SCANNER, SSH = "10.0.9.53", "10.0.9.10", "10.0.9.250", "10.0.9.251", "10.0.9.22"
CHAT, CHAT_SERVER = "10.0.9.30", "198.19.250.9"
OUT_SCANNER = "192.0.2.77"
TCP_OK, SYN_ONLY = 0x1B, 0x02


def inside(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 1}"


def outside(i: int) -> str:
    return f"198.18.{i // 250}.{i % 250 + 1}"


@dataclass
class Event:
    """An attack or a benign job: class, actor, first and last window (index), what it does per window."""

    kind: str
    actor: str
    start: int
    end: int
    rows: dict[int, list] = field(default_factory=dict)    #: window -> [(src, dst, proto, sport, dport, ...)]
    benign: bool = False


class Site:
    """One seed's site: background, benign jobs and attacks, window by window."""

    def __init__(self, seed: int, warm_days: int, scored_days: int, per_class: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.warm_days, self.scored_days = warm_days, scored_days
        self.windows = (warm_days + scored_days) * PER_DAY
        rng = self.rng
        days = warm_days + scored_days
        self.weight = rng.lognormal(0, 1.0, N_IN)
        self.weight /= self.weight.mean()
        self.day_noise = rng.gamma(1 / 0.18 ** 2, 0.18 ** 2, days)
        self.holiday = warm_days + min(2, scored_days - 1)           # a weekday of the scored days
        self.dst_day = warm_days + 1                                 # the clock moves an hour on this day
        self.zipf = 1.0 / np.arange(1, N_OUT + 1) ** 1.1
        self.zipf /= self.zipf.sum()
        self.events: list[Event] = []
        self.taken: set[str] = {RESOLVER, FILESERVER, MONITOR, SCANNER, SSH, CHAT}
        self._benign()
        self._attacks(per_class)

    # -- time
    def local_hour(self, i: int) -> float:
        day = i // PER_DAY
        offset = 1 if day < self.dst_day else 2
        return ((i % PER_DAY) / HOUR_W + offset) % 24

    def activity(self, i: int) -> float:
        h = self.local_hour(i)
        day = i // PER_DAY
        x = 0.5 - 0.5 * np.cos(2 * np.pi * (h - 3.0) / 24.0)
        level = 0.1 + 0.9 * x ** 2
        if (day % 7) >= 5 or day == self.holiday:
            level *= 0.3
        return float(level * self.day_noise[day])

    # -- actors
    def _pick_host(self) -> str:
        while True:
            h = inside(int(self.rng.integers(0, N_IN)))
            if h not in self.taken:
                self.taken.add(h)
                return h

    def _when(self, night: bool = False) -> int:
        lo = self.warm_days * PER_DAY
        hi = self.windows - 3 * PER_DAY // 2 if self.scored_days > 2 else self.windows - PER_DAY // 2
        while True:
            i = int(self.rng.integers(lo, max(hi, lo + 1)))
            if not night or self.local_hour(i) < 5:
                return i

    def _benign(self) -> None:
        rng = self.rng
        first = self.warm_days * PER_DAY
        # a monitoring check of an outside endpoint every minute, from the first scored day on
        ev = Event("monitor-poll", MONITOR, first, self.windows - 1, benign=True)
        for i in range(first, self.windows):
            t0 = T0_MS + i * W_MS
            ev.rows[i] = [(MONITOR, "198.19.250.1", 6, 40000 + (i * 5 + k) % 20000, 443, 12, 1480 + int(rng.integers(0, 3)),
                           t0 + k * 60_000 + int(rng.normal(0, 300)), TCP_OK) for k in range(5)]
        self.events.append(ev)
        # a vulnerability scan every night at 01:00 (local): 300 hosts, ports 1-100, over 30 minutes
        ev = Event("vuln-scan", SCANNER, first, self.windows - 1, benign=True)
        for day in range(self.warm_days, self.warm_days + self.scored_days):
            start = day * PER_DAY + int((1 - (1 if day < self.dst_day else 2)) % 24 * HOUR_W)
            for k in range(6):
                i = start + k
                t0 = T0_MS + i * W_MS
                rows = []
                for h in range(k * 50, (k + 1) * 50):
                    for port in range(1, 101):
                        rows.append((SCANNER, inside(h), 6, 50000, port, 1, 60, t0 + int(rng.integers(0, W_MS)),
                                     SYN_ONLY))
                ev.rows.setdefault(i, []).extend(rows)
        self.events.append(ev)
        # a new nightly backup at 02:00 (local): 1-2 GB over an hour to a new outside address
        ev = Event("backup", FILESERVER, first, self.windows - 1, benign=True)
        for day in range(self.warm_days, self.warm_days + self.scored_days):
            start = day * PER_DAY + int((2 - (1 if day < self.dst_day else 2)) % 24 * HOUR_W)
            total = rng.uniform(1e9, 2e9)
            for k in range(HOUR_W):
                i = start + k
                t0 = T0_MS + i * W_MS
                ev.rows.setdefault(i, []).append((FILESERVER, "198.51.100.50", 6, 45000 + day, 443,
                                                  int(total / HOUR_W / 1400), int(total / HOUR_W), t0 + 5, 0x18))
        self.events.append(ev)

        # a chat client's session to its server, open through every working day (a known address)
        ev = Event("chat-session", CHAT, first, self.windows - 1, benign=True)
        for day in range(self.warm_days + self.scored_days):
            if day % 7 >= 5:
                continue
            start = day * PER_DAY + int((8 - (1 if day < self.dst_day else 2)) % 24 * HOUR_W)
            for k in range(10 * HOUR_W):
                i = start + k
                ev.rows.setdefault(i, []).append((CHAT, CHAT_SERVER, 6, 42000 + day, 443, 30,
                                                  int(rng.integers(3000, 9000)), T0_MS + i * W_MS + 11,
                                                  TCP_OK if k == 0 else 0x18))
        self.events.append(ev)

    def _attacks(self, per_class: int) -> None:
        rng = self.rng
        for kind in CLASSES:
            for _ in range(per_class):
                getattr(self, "_" + kind.replace("-", "_"))(rng)

    def _rows(self, ev: Event, t_ms: int, row: tuple) -> None:
        i = (t_ms - T0_MS) // W_MS
        ev.rows.setdefault(int(i), []).append(row[:7] + (int(t_ms),) + row[8:])
        ev.end = max(ev.end, int(i))

    def _horizontal_scan(self, rng) -> None:
        src, start = self._pick_host(), self._when()
        hosts, minutes = int(rng.integers(60, 301)), float(rng.uniform(10, 60))
        port = int(rng.choice([22, 445]))
        ev = Event("horizontal-scan", src, start, start)
        t0 = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        targets = rng.choice(60000, hosts, replace=False)
        for k, tgt in enumerate(targets):
            self._rows(ev, t0 + int(k * minutes * 60_000 / hosts),
                       (src, f"10.0.{tgt // 250}.{tgt % 250 + 1}", 6, 51000, port, 1, 60, 0, SYN_ONLY))
        self.events.append(ev)

    def _vertical_scan(self, rng) -> None:
        src, start = self._pick_host(), self._when()
        ports, minutes = int(rng.integers(200, 1001)), float(rng.uniform(2, 30))
        target = inside(int(rng.integers(0, N_IN)))
        ev = Event("vertical-scan", src, start, start)
        t0 = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        for k, port in enumerate(rng.choice(np.arange(1, 10000), ports, replace=False)):
            self._rows(ev, t0 + int(k * minutes * 60_000 / ports), (src, target, 6, 52000, int(port), 1, 60, 0,
                                                                    SYN_ONLY))
        self.events.append(ev)

    def _brute_force(self, rng) -> None:
        outside_src = rng.random() < 0.5
        src = f"203.0.113.{int(rng.integers(1, 255))}" if outside_src else self._pick_host()
        self.taken.add(src)
        start = self._when()
        n, minutes = int(rng.integers(100, 801)), float(rng.uniform(10, 60))
        port = int(rng.choice([22, 3389, 445]))
        ev = Event("brute-force", src, start, start)
        t0 = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        for k in range(n):
            self._rows(ev, t0 + int(k * minutes * 60_000 / n), (src, SSH, 6, 30000 + k % 30000, port,
                                                                int(rng.integers(12, 30)), int(rng.integers(2000, 4000)),
                                                                0, TCP_OK))
        self.events.append(ev)

    def _beacon(self, rng) -> None:
        src, start = self._pick_host(), self._when()
        every, hours = float(rng.uniform(30, 300)), float(rng.uniform(12, 24))
        jitter = every * float(rng.uniform(0.01, 0.08))
        size = int(rng.integers(200, 600))
        c2 = f"203.0.113.{int(rng.integers(1, 255))}"
        ev = Event("beacon", src, start, start)
        t = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        end = t + hours * 3_600_000
        k = 0
        while t < end and t < T0_MS + self.windows * W_MS:
            self._rows(ev, int(t), (src, c2, 6, 40000 + k % 20000, 443, 6, size + int(rng.integers(-8, 9)), 0, TCP_OK))
            t += 1000 * (every + rng.normal(0, jitter))
            k += 1
        self.events.append(ev)

    def _dns_tunnel(self, rng) -> None:
        src, start = self._pick_host(), self._when()
        n = int(rng.integers(1000, 5001))
        ev = Event("dns-tunnel", src, start, start)
        t0 = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        for k in range(n):
            self._rows(ev, t0 + int(k * 3_600_000 / n), (src, RESOLVER, 17, 20000 + k % 40000, 53, 1,
                                                         int(rng.integers(200, 401)), 0, 0))
        self.events.append(ev)

    def _exfiltration(self, rng) -> None:
        src, start = self._pick_host(), self._when(night=True)
        total, minutes = float(rng.uniform(0.8e9, 3e9)), float(rng.uniform(20, 60))
        dst = f"203.0.113.{int(rng.integers(1, 255))}"
        ev = Event("exfiltration", src, start, start)
        t0 = T0_MS + start * W_MS
        for k in range(int(np.ceil(minutes / 5))):
            part = total * min(5, minutes - 5 * k) / minutes
            self._rows(ev, t0 + k * W_MS + 3, (src, dst, 6, 44000, 443, int(part / 1400), int(part), 0,
                                               TCP_OK if k == 0 else 0x18))
        self.events.append(ev)

    def _slow_exfiltration(self, rng) -> None:
        src, start = self._pick_host(), self._when()
        per_hour, hours = float(rng.uniform(30e6, 80e6)), int(rng.integers(8, 13))
        dst = f"203.0.113.{int(rng.integers(1, 255))}"
        ev = Event("slow-exfiltration", src, start, start)
        t0 = T0_MS + start * W_MS
        for k in range(hours * HOUR_W):
            part = per_hour / HOUR_W
            self._rows(ev, t0 + k * W_MS + 7, (src, dst, 6, 44100, 443, int(part / 1400), int(part), 0,
                                               TCP_OK if k == 0 else 0x18))
        self.events.append(ev)

    def _long_connection(self, rng) -> None:
        """A quiet session (a reverse shell, a tunnel) to a new outside address kept open for hours: a few KB a
        window, the odd larger answer."""
        src, start = self._pick_host(), self._when()
        hours = float(rng.uniform(5, 10))
        dst = f"203.0.113.{int(rng.integers(1, 255))}"
        ev = Event("long-connection", src, start, start)
        t0 = T0_MS + start * W_MS + int(rng.integers(0, W_MS))
        for k in range(int(hours * HOUR_W)):
            nbytes = int(rng.integers(500, 6000)) + (int(rng.integers(0, 200_000)) if rng.random() < 0.05 else 0)
            self._rows(ev, t0 + k * W_MS, (src, dst, 6, 47000, 4444 if rng.random() < 0.5 else 443,
                                           max(2, nbytes // 500), nbytes, 0, TCP_OK if k == 0 else 0x18))
        self.events.append(ev)

    # -- background
    def background(self, i: int) -> list[tuple]:
        """(src, dst, proto, sport, dport, packets, bytes, first, flags) of window i's background."""
        rng = self.rng
        a = self.activity(i)
        t0 = T0_MS + i * W_MS
        n = rng.poisson(6.0 * a * self.weight)
        rows: list[tuple] = []
        hosts = np.repeat(np.arange(N_IN), n)
        m = len(hosts)
        dsts = rng.choice(N_OUT, m, p=self.zipf)
        ports = rng.choice([443, 80, 993, 22], m, p=[0.8, 0.16, 0.03, 0.01])
        fail = rng.random(m) < 0.01
        pk = rng.integers(5, 100, m)
        by = rng.lognormal(7.3, 1.4, m).astype(int) + 200
        up = rng.random(m) < 0.002
        by[up] = rng.lognormal(15.4, 1.2, int(up.sum())).astype(int)
        ts = t0 + rng.integers(0, W_MS, m)
        for k in range(m):
            src = inside(int(hosts[k]))
            dst = outside(int(dsts[k])) if ports[k] != 22 else SSH
            if fail[k]:
                rows.append((src, dst, 6, 30000 + k, int(ports[k]), 2, 120, int(ts[k]), SYN_ONLY))
            else:
                rows.append((src, dst, 6, 30000 + k, int(ports[k]), int(pk[k]), int(by[k]), int(ts[k]), TCP_OK))
        # DNS through the inside resolver, which asks outside servers
        q = rng.poisson(0.8 * m)
        qh = rng.choice(hosts, q) if m else np.zeros(0, int)
        qb = rng.integers(60, 100, q)
        qt = t0 + rng.integers(0, W_MS, q)
        for k in range(q):
            rows.append((inside(int(qh[k])), RESOLVER, 17, 20000 + k, 53, 1, int(qb[k]), int(qt[k]), 0))
        for k in range(q // 2):
            rows.append((RESOLVER, f"198.19.100.{k % 13 + 1}", 17, 30000 + k, 53, 1, int(qb[k]), int(qt[k]), 0))
        # bursts to many CDN addresses
        for h in np.nonzero(rng.random(N_IN) < 0.01 * a)[0]:
            for k in range(int(rng.integers(30, 90))):
                rows.append((inside(int(h)), f"198.19.{k // 200 + 1}.{k % 200 + 1}", 6, 35000 + k, 443, 12, 900,
                             t0 + int(rng.integers(0, W_MS)), TCP_OK))
        # NTP, every 1024 s per host (periodic by design)
        for h in range(i % 3, N_IN, 3):
            rows.append((inside(h), f"198.19.200.{h % 4 + 1}", 17, 123, 123, 1, 76, t0 + h * 997 % W_MS, 0))
        # background radiation: unanswered SYNs from ever new sources
        for k in range(int(rng.poisson(40))):
            s = int(rng.integers(1, 1 << 24))
            rows.append((f"100.{64 + (s >> 16) % 64}.{(s >> 8) & 255}.{s & 255}", inside(int(rng.integers(0, N_IN))),
                         6, 40000, int(rng.choice([22, 23, 445, 3389, 80])), 1, 60, t0 + int(rng.integers(0, W_MS)),
                         SYN_ONLY))
        # one outside scanner sweeps the site on 23/tcp every day over three hours (under its threshold)
        hour = (i % PER_DAY) / HOUR_W
        if 10 <= hour < 13:
            k0 = int((hour - 10) * HOUR_W) * N_IN // (3 * HOUR_W)
            for h in range(k0, k0 + N_IN // (3 * HOUR_W)):
                rows.append((OUT_SCANNER, inside(h), 6, 61000, 23, 1, 60, t0 + int(rng.integers(0, W_MS)), SYN_ONLY))
        return rows


def run(seed: int, warm_days: int = 7, scored_days: int = 7, per_class: int = 6, budget: float = 2.0,
        cfg: EntityConfig | None = None) -> dict:
    """One seed through the shipped detectors and attention control: every alert, the events, and the cost."""
    cfg = cfg or EntityConfig()
    site = Site(seed, warm_days, scored_days, per_class)
    home = Home()
    actors: dict[str, Actor] = {}
    scorer = SensorScorer(ScoreConfig(W_MS, budget_per_day=budget, hard_cap_per_day=20), SENSOR)
    by_window: dict[int, list] = {}
    for ev in site.events:
        for i, rows in ev.rows.items():
            by_window.setdefault(i, []).extend(rows)
    alerts, findings, explained = [], 0, []
    rows_total = 0
    cost = {"entities": 0.0, "scoring": 0.0, "site": 0.0}
    scored_from = warm_days * PER_DAY
    for i in range(site.windows):
        c0 = time.process_time()
        rows = site.background(i) + by_window.get(i, [])
        c1 = time.process_time()
        w = T0_MS + i * W_MS
        summary = Summary()
        for src, dst, proto, sport, dport, pk, by, first, flags in rows:
            summary.add(src, dst, proto, sport, dport, pk, by, flags, src in home)
        c2 = time.process_time()
        picks = EntityRows(SENSOR, 1)
        for src, dst, proto, sport, dport, pk, by, first, flags in rows:
            first = first or w
            picks.add(src, dst, src in home, dst in home, proto, sport, dport, [pk, by, first, first, flags])
        found = []
        for _, msg in picks.messages(w, W_MS, 0):
            for src, arows in msg["actors"].items():
                actor = actors.get(src)
                if actor is None:
                    if src not in home and len(arows) < 2:      # the entities agent's admission rule
                        continue
                    actor = actors[src] = Actor(SENSOR, src, src in home)
                found += actor.observe(cfg, w, arows)
        rows_total += len(rows)
        c3 = time.process_time()
        _, raised, _ = scorer.window(w, summary)
        for f in found:
            findings += 1
            anomaly, alert = scorer.attend({"sensor": SENSOR, "type": f.type, "entity": f.entity, "windowStartMs": f.t_ms,
                                      "windowLengthMs": W_MS, "score": f.score, "threshold": f.threshold,
                                      "title": f.title, "evidence": f.evidence, "habitual": f.habitual})
            if alert:
                raised.append(alert)
            elif anomaly["attention"] == "explained" and i >= scored_from:
                explained.append((i, f.entity.split(" ")[0], anomaly["explainedBy"]))
        c4 = time.process_time()
        cost["site"] += c1 - c0
        cost["entities"] += c3 - c2
        cost["scoring"] += c4 - c3 + c2 - c1
        if i >= scored_from:
            alerts += [(i, a) for a in raised]
    return {"seed": seed, "alerts": alerts, "events": site.events, "windows": site.windows, "scored_from": scored_from,
            "rows": rows_total, "cost": cost, "findings": findings, "actors": len(actors), "explained": explained,
            "days": scored_days}


def actor_of(alert: dict) -> str:
    """The source an alert is about (its entity's first word; the sensor for a traffic alert)."""
    return str(alert["entity"]).split(" ")[0]


def moved(ev: Event, i: int, alert: dict) -> bool:
    """Whether an event's records, in a sensor alert's window or one of the two before, account for at least
    half of what one of the alert's metrics rose by (the metrics as the sensor's summary counts them)."""
    for j in (i, i - 1, i - 2):
        rows = ev.rows.get(j)
        if not rows:
            continue
        own = Summary()
        for src, dst, proto, sport, dport, pk, by, _first, flags in rows:
            own.add(src, dst, proto, sport, dport, pk, by, flags, False)
        mine = dict(zip(METRICS, own.metrics()))
        if any(mine[n] >= 0.5 * (v["observed"] - v["expected"]) > 0 for n, v in alert["observed"].items()):
            return True
    return False


def evaluate(run_: dict) -> dict:
    """Per class: events, detected within 3 windows (beacons: 2 hours; long connections: 3 windows after 4 hours
    open), delays, alerts per detected event; benign jobs' alerts after their second day; false alerts per day.

    An alert about an entity belongs to the event of its source; one of an inside host's (the ladder's) to an
    event of that host active in its window or the two before; one of the sensor's to an event whose records
    made at least half of what the alert's metrics rose by (:func:`moved`; attacks first); else it is false."""
    per: dict[str, dict] = {k: {"n": 0, "hit": 0, "delays": [], "alerts": 0} for k in CLASSES}
    benign_late: dict[str, int] = {k: 0 for k in BENIGN}
    benign_early: dict[str, int] = {k: 0 for k in BENIGN}
    owner: dict[int, Event] = {}
    events = sorted(run_["events"], key=lambda e: e.benign)          # attacks first
    # a ladder's alert that a finding about an event's source was explained by is that event's
    by_id = {a["id"]: k for k, (_, a) in enumerate(run_["alerts"])}
    for i, actor, aid in run_.get("explained", []):
        ev = next((e for e in events if e.actor == actor and e.start <= i <= e.end + HOUR_W), None)
        if ev is not None and aid in by_id:
            owner[by_id[aid]] = ev
    for k, (i, a) in enumerate(run_["alerts"]):
        if k in owner:
            continue
        for ev in events:
            if a["type"] in ("traffic", "host-bytes"):
                # the ladder sees volumes: an event that moves them (not a beacon's trickle) in that window
                if ev.kind in ("beacon", "monitor-poll", "slow-exfiltration", "long-connection", "chat-session"):
                    continue
                if a["type"] == "traffic" and moved(ev, i, a) or a["type"] == "host-bytes" and \
                        any(j in ev.rows for j in (i, i - 1, i - 2)) and \
                        actor_of(a) in (ev.actor, *(r[1] for r in ev.rows.get(i, [])[:50])):
                    owner[k] = ev
                    break
            elif actor_of(a) == ev.actor and ev.start <= i <= ev.end + HOUR_W:
                owner[k] = ev
                break
    for ev in run_["events"]:
        mine = [(i, a) for k, (i, a) in enumerate(run_["alerts"]) if owner.get(k) is ev]
        if ev.benign:
            for i, _a in mine:
                day = (i - run_["scored_from"]) // PER_DAY
                (benign_late if day >= 2 else benign_early)[ev.kind] += 1
            continue
        if ev.end >= run_["windows"] - 1 and ev.kind not in ("beacon", "slow-exfiltration", "long-connection"):
            continue
        allowed = {"beacon": 2 * HOUR_W, "long-connection": 4 * HOUR_W + 3}.get(ev.kind, 3)
        p = per[ev.kind]
        p["n"] += 1
        p["alerts"] += len(mine)
        if mine:
            delay = min(i for i, _ in mine) - ev.start
            p["delays"].append(delay)
            if delay <= allowed:
                p["hit"] += 1
    false = [a for k, (i, a) in enumerate(run_["alerts"]) if k not in owner]
    false_early = sum(benign_early.values())
    return {"per": per, "false": len(false), "false_per_day": (len(false) + false_early) / run_["days"],
            "false_types": sorted({a["type"] for a in false}),
            "false_by_type": {t: sum(1 for a in false if a["type"] == t) for t in sorted({a["type"] for a in false})},
            "benign_late": benign_late, "benign_early": benign_early}
