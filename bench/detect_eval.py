#!/usr/bin/env python3
"""Evaluation harness for the detection ladder (L0, L1, L2) and attention control.

    .venv/bin/python bench/detect_eval.py                  # 10 seeds, the report of bench/README.md
    .venv/bin/python bench/detect_eval.py --seeds 2 --quick
    .venv/bin/python bench/detect_eval.py --records        # also feed one seed through the shipped path
    .venv/bin/python bench/detect_eval.py --entities       # the detectors per entity (bench/entity_site.py)
    .venv/bin/python bench/detect_eval.py --entities --seeds 1 --quick   # the short form make test runs

Seeded and reproducible. Synthetic flow records of a site, 5-minute windows:

* Background: 2,000 inside hosts (10.0.0.0/16) whose activity is heavy tailed
  (lognormal weights, sigma 1.5) talk to 5,000 outside servers (Zipf) and 10
  inside servers; each connection is two unidirectional flow records. Volume
  follows a daily cycle (night at 12% of the afternoon peak) and a weekly one
  (weekends at 35%), with day-level Gamma noise (CV 18%) and hour-level Gamma
  noise (CV 10%). 1% of TCP connections fail, and the internet's background
  radiation sends unanswered SYNs to inside addresses (mean 60 per window, its
  rate Gamma-distributed per hour with CV 70%). A nightly backup sends
  300-600 MB per window from one inside host between 02:00 and 03:00.
* Events, only in the scored weeks, never overlapping, at uniform times of day
  and night, 8 of each type per seed; sizes uniform in the issue's ranges:
  floods (+300-2,500 flows per window for 2-6 windows into one inside target; half
  SYN floods, half UDP reflection), scans (1-packet failing SYN flows to 20-1,500
  targets per window for 1-3 windows; half horizontal, half vertical) and
  exfiltration (one inside host sends +3-40 MB per window for 30-60 min to one
  outside address, bytes only).
* Protocol: 3 weeks of warm-up, learnt online and not scored, then 2 weeks
  scored. Thresholds are calibrated on the warm-up's last 2 weeks of scores
  (without labels) and frozen. An event is detected when an alert's episode
  overlaps it or the 2 windows after it. Delays are in windows of capture time.

Rungs: L0 is Welford mean + 3 sigma on the sensor's metrics (the reference; its
fixed 3-sigma rule is reported too); L1 is the seasonal NB model on the sensor's
metrics and on each inside host's bytes; L2 adds the persistence filter to L1.
The budget B is split in half between the sensor detector and the host detector.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from app.detect.attention import Attention, AttentionConfig, calibrate
from app.detect.scorer import ScoreConfig, SensorScorer
from app.flows.summary import summarize_columns

W_MS = 300_000
PER_DAY = 288
WARM_DAYS, SCORED_DAYS = 21, 14
T0_MS = 1_767_571_200_000          # Monday 2026-01-05 00:00 UTC
N_IN, N_OUT, N_SRV = 2000, 5000, 10
PEAK_CONN = 1200
BACKUP_HOST = 0
TYPES = ("flood", "scan", "exfil")
OUT_BASE = N_IN + N_SRV             # host ids: inside hosts, inside servers, outside servers, then spoofed


@dataclass
class Event:
    type: str
    start: int      # window index
    end: int        # last window index
    size: list      # per window: flows (flood, scan) or bytes (exfil)
    host: int
    kind: str


def diurnal(hour: np.ndarray) -> np.ndarray:
    """Night 0.12, afternoon peak 1."""
    x = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)
    return 0.12 + 0.88 * x ** 2


class Site:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.windows = (WARM_DAYS + SCORED_DAYS) * PER_DAY
        days = WARM_DAYS + SCORED_DAYS
        self.w_in = rng.lognormal(0, 1.5, N_IN)
        self.w_in /= self.w_in.sum()
        z = 1.0 / np.arange(1, N_OUT + 1)
        self.w_out = z / z.sum()
        self.w_srv = (1.0 / np.arange(1, N_SRV + 1)) / (1.0 / np.arange(1, N_SRV + 1)).sum()
        self.day_noise = rng.gamma(30, 1 / 30, days)
        self.hour_noise = rng.gamma(100, 1 / 100, days * 24)
        self.ibr = 60 * rng.gamma(2.0, 0.5, days * 24)   # per hour: mean 60 per window, CV 70%
        self.events = self._events()

    def intensity(self, i: int) -> float:
        t_ms = T0_MS + i * W_MS
        hour = (t_ms % 86_400_000) / 3_600_000
        day = i // PER_DAY
        dow = (day + 0) % 7          # T0 is a Monday
        week = 0.35 if dow >= 5 else 1.0
        return float(diurnal(np.array(hour)) * week * self.day_noise[day] * self.hour_noise[i // 12])

    def _events(self) -> list[Event]:
        rng = self.rng
        lo, hi = WARM_DAYS * PER_DAY, self.windows - 20
        taken = np.zeros(self.windows, bool)
        out = []
        for typ in TYPES * 8:
            while True:
                dur = {"flood": rng.integers(2, 7), "scan": rng.integers(1, 4), "exfil": rng.integers(6, 13)}[typ]
                s = int(rng.integers(lo, hi))
                if not taken[max(s - 12, 0):s + dur + 12].any():
                    break
            taken[s:s + dur] = True
            if typ == "flood":
                size = rng.integers(300, 2501, dur).tolist()
                host, kind = int(rng.integers(N_IN, N_IN + N_SRV)), ("syn" if rng.random() < 0.5 else "udp")
            elif typ == "scan":
                size = rng.integers(20, 1501, dur).tolist()
                host, kind = int(rng.integers(1, N_IN)), ("horizontal" if rng.random() < 0.5 else "vertical")
            else:
                size = (rng.uniform(3, 40, dur) * 1e6).astype(int).tolist()
                host, kind = int(rng.integers(1, N_IN)), "exfil"
            out.append(Event(typ, s, s + dur - 1, size, host, kind))
        return sorted(out, key=lambda e: e.start)

    def window(self, i: int) -> dict[str, np.ndarray]:
        """Flow records of window i as columns (hosts as integer ids; ids < N_IN + N_SRV are inside)."""
        rng = self.rng
        c = rng.poisson(PEAK_CONN * self.intensity(i))
        client = rng.choice(N_IN, c, p=self.w_in)
        to_srv = rng.random(c) < 0.2
        server = np.where(to_srv, N_IN + rng.choice(N_SRV, c, p=self.w_srv), OUT_BASE + rng.choice(N_OUT, c, p=self.w_out))
        r = rng.random(c)
        proto = np.where(r < 0.75, 6, np.where(r < 0.97, 17, 1))
        dport = np.where(proto == 6, rng.choice([443, 80, 22, 25, 993, 8080, 3389, 445], c,
                                                p=[.6, .2, .04, .04, .04, .04, .02, .02]),
                         np.where(proto == 17, rng.choice([53, 123, 443, 5353], c, p=[.7, .1, .15, .05]), 0))
        sport = np.where(proto == 1, 0, rng.integers(32768, 61000, c))
        failed = (proto == 6) & (rng.random(c) < 0.01)
        cpk = 1 + rng.geometric(0.2, c)
        spk = 1 + rng.geometric(0.1, c)
        cby = (cpk * 60 + rng.lognormal(7, 1.5, c)).astype(np.int64)
        sby = (spk * 60 + rng.lognormal(9, 2.0, c)).astype(np.int64)
        flags_ok = np.where(proto == 6, 0x1B, 0)
        cflags = np.where(failed, 0x02, flags_ok)
        cpk = np.where(failed, 1, cpk)
        cby = np.where(failed, 60, cby)
        reply = ~failed | (rng.random(c) < 0.5)        # half the failed ones get an RST back
        sflags = np.where(failed, 0x14, np.where(proto == 6, 0x1B, 0))
        spk = np.where(failed, 1, spk)
        sby = np.where(failed, 40, sby)
        cols = {
            "src": np.concatenate([client, server[reply]]),
            "dst": np.concatenate([server, client[reply]]),
            "proto": np.concatenate([proto, proto[reply]]),
            "sport": np.concatenate([sport, dport[reply]]),
            "dport": np.concatenate([dport, sport[reply]]),
            "packets": np.concatenate([cpk, spk[reply]]),
            "bytes": np.concatenate([cby, sby[reply]]),
            "flags": np.concatenate([cflags, sflags[reply]]),
        }
        extra = []
        # background radiation: unanswered SYNs from the internet to inside addresses, bursty
        k = rng.poisson(self.ibr[i // 12])
        if k:
            extra.append(self._flows(k, OUT_BASE + N_OUT + rng.integers(0, 1 << 30, k), rng.integers(0, N_IN, k), 6,
                                     rng.integers(1024, 65536, k), rng.choice([22, 23, 445, 3389, 80, 8080], k), 1,
                                     60, 0x02))
        hour = ((T0_MS + i * W_MS) % 86_400_000) // 3_600_000
        if hour == 2:   # nightly backup to an inside server
            b = int(rng.uniform(300e6, 600e6))
            extra.append(self._flows(1, [BACKUP_HOST], [N_IN], 6, [40000], [22], [b // 1400], [b], 0x18))
        for ev in self.events:
            if ev.start <= i <= ev.end:
                extra.append(self._event_flows(ev, ev.size[i - ev.start]))
        for e in extra:
            for k in cols:
                cols[k] = np.concatenate([cols[k], e[k]])
        return cols

    def _flows(self, n, src, dst, proto, sport, dport, packets, nbytes, flags) -> dict[str, np.ndarray]:
        def col(v):
            return np.broadcast_to(np.asarray(v, np.int64), (n,)).copy()
        return {"src": col(src), "dst": col(dst), "proto": col(proto), "sport": col(sport), "dport": col(dport),
                "packets": col(packets), "bytes": col(nbytes), "flags": col(flags)}

    def _event_flows(self, ev: Event, size: int) -> dict[str, np.ndarray]:
        rng = self.rng
        spoof = OUT_BASE + N_OUT + rng.integers(0, 1 << 30, size)
        if ev.type == "flood" and ev.kind == "syn":
            return self._flows(size, spoof, ev.host, 6, rng.integers(1024, 65536, size), 443, 1, 60, 0x02)
        if ev.type == "flood":
            return self._flows(size, spoof, ev.host, 17, 53, rng.integers(1024, 65536, size), 2,
                               rng.integers(1000, 3000, size), 0)
        if ev.type == "scan" and ev.kind == "horizontal":
            return self._flows(size, ev.host, rng.integers(0, N_IN, size), 6, 40000, 445, 1, 60, 0x02)
        if ev.type == "scan":
            return self._flows(size, ev.host, N_IN + 1, 6, 40000, rng.choice(65535, size, replace=False) + 1, 1, 60,
                               0x02)
        return self._flows(1, ev.host, OUT_BASE + N_OUT - 1, 6, 50000, 443, size // 1400, size, 0x18)


def site_windows(seed: int):
    """(window index, t_ms, sensor metrics, inside host ids, their bytes) for every window of a seed."""
    site = Site(seed)
    for i in range(site.windows):
        cols = site.window(i)
        inside = cols["src"] < OUT_BASE
        m, hosts, hb = summarize_columns(cols["src"], cols["dst"], cols["proto"], cols["dport"], cols["packets"],
                                         cols["bytes"], cols["flags"], inside)
        yield i, T0_MS + i * W_MS, m, hosts, hb, len(cols["src"])





def host_ip(h: int) -> str:
    return f"10.0.{h >> 8}.{h & 255}"


def run_seed(seed: int) -> dict:
    """Every window's scores at every rung, from the shipped scorer (app.detect.scorer), and the events."""
    site = Site(seed)
    scorer = SensorScorer(ScoreConfig(W_MS), "site")
    scores = []
    records = 0
    cost_s = 0.0
    names = [host_ip(h) for h in range(OUT_BASE)]
    for i, t, m, hosts, hb, nrec in site_windows(seed):
        records += nrec
        c0 = time.perf_counter()
        scores.append(scorer.score(t, m, [names[h] for h in hosts], hb))
        cost_s += time.perf_counter() - c0
    return {"seed": seed, "scores": scores, "events": site.events, "windows": site.windows, "records": records,
            "cost_s": cost_s, "scorer": scorer}


def calib_events(run: dict, rung: str, lo: int, hi: int) -> dict[str, list]:
    """Per family: (t_ms, family, entity, score) of windows lo..hi-1 at a rung."""
    out = {"traffic": [], "host-bytes": []}
    for i in range(lo, hi):
        sc = run["scores"][i]
        t = T0_MS + i * W_MS
        out["traffic"].append((t, "traffic", "site", sc["traffic"]["scores"][rung]))
        if rung != "L0":
            out["host-bytes"] += [(t, "host-bytes", h["host"], h["scores"][rung]) for h in sc["hosts"]]
    return out


def thresholds_for(run: dict, rung: str, budget: float) -> dict:
    cfg = AttentionConfig(W_MS, budget)
    warm = calib_events(run, rung, (WARM_DAYS - 14) * PER_DAY, WARM_DAYS * PER_DAY)
    share = budget / (1 if rung == "L0" else 2)
    thr = {f: {r: float("inf") for r in ("L0", "L1", "L2")} for f in warm}
    for fam, evs in warm.items():
        if evs:
            thr[fam][rung] = calibrate(evs, 14, cfg, share)
    return thr


def episodes(run: dict, rung: str, thr: dict, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(first window, last window, entity) of every alert raised in windows lo..hi-1."""
    scorer = run["scorer"]
    att = Attention(AttentionConfig(W_MS, 0, hard_cap_per_day=1 << 30))
    eps, open_ = [], {}
    for i in range(lo, hi):
        t = T0_MS + i * W_MS
        for c in scorer.candidates(t, run["scores"][i], rung, thr):
            what, _ = att.observe(t, c["type"], c["entity"], c["score"])
            key = (c["type"], c["entity"])
            if what == "alert":
                open_[key] = len(eps)
                eps.append([i, i, c["entity"]])
            elif key in open_:
                eps[open_[key]][1] = i
    return [tuple(e) for e in eps]


def evaluate(run: dict, rung: str, budget: float) -> dict:
    thr = thresholds_for(run, rung, budget)
    return score_episodes(run["events"], episodes(run, rung, thr, WARM_DAYS * PER_DAY, run["windows"]))


def score_episodes(events: list[Event], eps: list[tuple[int, int, str]]) -> dict:
    used = [False] * len(eps)
    per_type = {t: {"n": 0, "hit": 0, "delays": [], "alerts": 0} for t in TYPES}
    for ev in events:
        d = per_type[ev.type]
        d["n"] += 1
        hits = [k for k, (a, b, _) in enumerate(eps) if a <= ev.end + 2 and b >= ev.start]
        for k in hits:
            used[k] = True
        if hits:
            d["hit"] += 1
            d["alerts"] += len(hits)
            first = min(max(eps[k][0], ev.start) for k in hits)
            d["delays"].append(first - ev.start)
    false = sum(1 for u in used if not u)
    return {"per_type": per_type, "false": false, "false_per_day": false / SCORED_DAYS}


def ip_of(h: int) -> str:
    """Inside hosts and servers in 10.0.0.0/16, outside servers and spoofed sources outside it."""
    if h < OUT_BASE:
        return host_ip(h)
    h -= OUT_BASE
    return f"{100 + (h >> 16) % 100}.{(h >> 8) & 255}.{h & 255}.{(h >> 24) + 1}"


def run_records(seed: int, days: int) -> dict:
    """Feed a seed's flow records through the shipped path: flow parts -> Merger (per partition) ->
    window summaries -> Completer -> SensorScorer with its own rolling calibration and attention control."""
    from app.records import SEP, partition_for
    from app.flows.complete import Completer
    from app.flows.windows import Merger
    partitions = 8
    site = Site(seed)
    merger = Merger(W_MS, 0, 10 ** 12)
    rows: dict[int, dict] = {p: {} for p in range(partitions)}
    completer = Completer(partitions)
    scorer = SensorScorer(ScoreConfig(W_MS, budget_per_day=2), "site")
    alerts, n_records, merge_s, score_s = [], 0, 0.0, 0.0
    windows = min(site.windows, days * PER_DAY)
    for i in range(windows + 1):
        t = T0_MS + i * W_MS
        by_p: dict[int, list] = {p: [] for p in range(partitions)}
        if i < windows:
            cols = site.window(i)
            c0 = time.perf_counter()
            for j in range(len(cols["src"])):
                key = SEP.join(("site", ip_of(int(cols["src"][j])), ip_of(int(cols["dst"][j])), str(cols["proto"][j]),
                                str(cols["sport"][j]), str(cols["dport"][j]), "0", "0"))
                by_p[partition_for(key, partitions)].append(
                    [t, key, int(cols["packets"][j]), int(cols["bytes"][j]), t, t + 1, int(cols["flags"][j])])
            n_records += len(cols["src"])
            merge_s += time.perf_counter() - c0
        msgs = []
        c0 = time.perf_counter()
        for p in range(partitions):
            # every partition hears of every chunk and its capture time, parts for it or not (as the decoder
            # sends them): the next window's chunk moves the sensor's clock past this one
            plan = merger.on_parts(p, {"block": f"b{i}", "chunk": 0, "sensor": "site", "top": t + 1,
                                       "n": len(by_p[p]), "parts": by_p[p]}, rows[p], t) \
                if i < windows else merger.on_tick(p, rows[p], t + 10 ** 13)
            for k, v in plan.writes.items():
                if v is None:
                    rows[p].pop(k, None)
                else:
                    rows[p][k] = v
            msgs += [v for topic, _, v in plan.emit if topic == "window-summaries"]
        merge_s += time.perf_counter() - c0
        c0 = time.perf_counter()
        for m in msgs:
            completer.on_message(m)
        for sensor, w, summary in completer.complete(W_MS):
            if sensor == "site":
                alerts += [((w - T0_MS) // W_MS, a) for a in scorer.window(w, summary)[1]]
        score_s += time.perf_counter() - c0
    return {"alerts": alerts, "records": n_records, "merge_s": merge_s, "score_s": score_s, "events": site.events,
            "windows": windows, "thresholds": scorer.thresholds}


def aggregate_rate(seed: int = 1, windows: int = 48) -> float:
    """Flow records per second into the scoring aggregates (Summary.add, as the flows agent calls it)."""
    from app.flows.summary import Home, Summary
    site = Site(seed)
    home = Home()
    recs = []
    for i in range(8 * PER_DAY // 24 * 12, 8 * PER_DAY // 24 * 12 + windows):   # busy hours of a weekday
        c = site.window(i)
        recs.append([(ip_of(int(c["src"][j])), ip_of(int(c["dst"][j])), int(c["proto"][j]), int(c["sport"][j]),
                      int(c["dport"][j]), int(c["packets"][j]), int(c["bytes"][j]), int(c["flags"][j]))
                     for j in range(len(c["src"]))])
    n = sum(len(r) for r in recs)
    t0 = time.process_time()
    for window in recs:
        s = Summary()
        for src, dst, proto, sport, dport, pk, by, fl in window:
            s.add(src, dst, proto, sport, dport, pk, by, fl, src in home)
        s.to_json()
    return n / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--diag", action="store_true", help="print the top warm-up scores of every rung and family")
    ap.add_argument("--records", type=int, metavar="DAYS", default=0,
                    help="instead: feed DAYS days of the first seed's flow records through the shipped path")
    ap.add_argument("--entities", action="store_true",
                    help="instead: the detectors per entity on bench/entity_site.py's site, with the ladder beside")
    ap.add_argument("--quick", action="store_true", help="with --entities: 3 warm-up and 2 scored days, 2 per class")
    ap.add_argument("--days", metavar="WARM,SCORED,PER_CLASS", default=None,
                    help="with --entities: warm-up days, scored days and attacks per class and seed "
                         "(default 14,14,8: a month, as the site's evaluation was specified; --quick: 3,2,2)")
    ap.add_argument("--budget", type=float, default=2.0, help="with --entities: alerts per day (B)")
    ap.add_argument("--control", action="store_true",
                    help="with --entities: the same seeds without attacks too (false alerts per day against B)")
    args = ap.parse_args()
    if args.entities:
        entity_report(args)
        return
    if args.records:
        r = run_records(args.first_seed, args.records)
        scored_from = WARM_DAYS * PER_DAY
        eps = [(i, i, a["entity"]) for i, a in r["alerts"] if i >= scored_from]
        res = score_episodes([e for e in r["events"] if e.end < r["windows"]], eps)
        days = max((r["windows"] - scored_from) / PER_DAY, 1e-9)
        print(f"shipped path, seed {args.first_seed}, {args.records} days: {r['records']:,} flow records; "
              f"merge and summaries {r['records'] / r['merge_s']:,.0f} records/s, scoring "
              f"{1e6 * r['score_s'] / r['windows']:.0f} us per window ({r['windows'] / r['score_s']:,.0f} windows/s)")
        print(f"alerts in the scored days: {len(eps)}, false {res['false']} ({res['false'] / days:.2f} per day, "
              f"budget 2); detected: " + ", ".join(f"{t} {v['hit']}/{v['n']}" for t, v in res["per_type"].items()))
        print("thresholds at the end:", json.dumps(r["thresholds"]))
        return
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as ex:
        runs = list(ex.map(run_seed, seeds))
    print(f"# {len(seeds)} seeds, {runs[0]['windows']} windows of 5 min each, "
          f"{sum(r['records'] for r in runs) / len(runs) / 1e6:.1f} M flow records per seed "
          f"({time.time() - t0:.0f} s)\n")
    if args.diag:
        for rung in ("L0", "L1", "L2"):
            warm = calib_events(runs[0], rung, (WARM_DAYS - 14) * PER_DAY, WARM_DAYS * PER_DAY)
            for fam, evs in warm.items():
                top = sorted(evs, key=lambda e: -e[3])[:12]
                print(rung, fam, [(time.strftime("%a %H:%M", time.gmtime(t / 1000)), ent, round(sc, 1))
                                  for t, _, ent, sc in top])
    cost_us = 1e6 * sum(r["cost_s"] for r in runs) / sum(r["windows"] for r in runs)
    print(f"scoring cost: {cost_us:.0f} us per window (sensor metrics and {N_IN + N_SRV} inside hosts, all rungs); "
          f"window summaries: {aggregate_rate():,.0f} flow records per CPU-second\n")
    print("| rung | B | false/day (mean, worst) | type | recall (mean, worst seed) | alerts per detected | delay p50 | p90 |")
    print("|---|---|---|---|---|---|---|---|")
    for rung in ("L0", "L1", "L2"):
        for budget in (1, 2, 5):
            res = [evaluate(r, rung, budget) for r in runs]
            fpd = [x["false_per_day"] for x in res]
            for typ in TYPES:
                rec = [x["per_type"][typ]["hit"] / x["per_type"][typ]["n"] for x in res]
                hit = sum(x["per_type"][typ]["hit"] for x in res)
                alerts = sum(x["per_type"][typ]["alerts"] for x in res)
                delays = sorted(d for x in res for d in x["per_type"][typ]["delays"])
                p50 = delays[len(delays) // 2] if delays else float("nan")
                p90 = delays[int(len(delays) * 0.9)] if delays else float("nan")
                print(f"| {rung} | {budget} | {np.mean(fpd):.2f}, {max(fpd):.2f} | {typ} | "
                      f"{np.mean(rec):.0%}, {min(rec):.0%} | {alerts / max(hit, 1):.2f} | {p50} | {p90} |")
    # the talk's fixed rule, for reference
    res = []
    for r in runs:
        thr = {"traffic": {"L0": 3.0}, "host-bytes": {"L0": float("inf")}}
        res.append(score_episodes(r["events"], episodes(r, "L0", thr, WARM_DAYS * PER_DAY, r["windows"])))
    fpd = [x["false_per_day"] for x in res]
    recs = {t: np.mean([x["per_type"][t]["hit"] / x["per_type"][t]["n"] for x in res]) for t in TYPES}
    print(f"\nL0 fixed mean + 3 sigma rule (no budget): {np.mean(fpd):.1f} false episodes per day; recall "
          + ", ".join(f"{t} {v:.0%}" for t, v in recs.items()))


def _entity_seed(job: tuple) -> dict:
    import entity_site
    seed, warm, scored, per_class, budget = job
    return entity_site.run(seed, warm, scored, per_class, budget)


def entity_report(args) -> dict:
    """Per class and per seed: detected within 3 windows (beacons 2 h, long connections 4 h + 3), delays, alerts
    per detected event; false alerts per day; benign jobs' alerts after their second day; the cost."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import entity_site
    warm, scored, per_class = (int(x) for x in args.days.split(",")) if args.days else \
        (3, 2, 2) if args.quick else (14, 14, 8)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    t0 = time.time()
    jobs = [(s, warm, scored, per_class, args.budget) for s in seeds]
    with ProcessPoolExecutor(min(args.jobs, len(seeds))) as ex:
        runs = list(ex.map(_entity_seed, jobs))
    res = [entity_site.evaluate(r) for r in runs]
    rows = sum(r["rows"] for r in runs)
    print(f"# detectors per entity: {len(seeds)} seed(s), {warm} warm-up + {scored} scored days of 5-minute windows, "
          f"{per_class} attacks per class and seed, B = {args.budget:g}; {rows / len(runs) / 1e6:.1f} M flow records "
          f"per seed ({time.time() - t0:.0f} s)\n")
    print("| class | detected (all seeds) | per seed | delay p50 | p90 (windows) | alerts per detected |")
    print("|---|---|---|---|---|---|")
    out = {}
    for kind in entity_site.CLASSES:
        per = [x["per"][kind] for x in res]
        n, hit = sum(p["n"] for p in per), sum(p["hit"] for p in per)
        delays = sorted(d for p in per for d in p["delays"])
        alerts = sum(p["alerts"] for p in per)
        p50 = delays[len(delays) // 2] if delays else float("nan")
        p90 = delays[int(len(delays) * 0.9)] if delays else float("nan")
        detected = sum(len(p["delays"]) for p in per)
        print(f"| {kind} | {hit}/{n} ({hit / max(n, 1):.0%}) | " + " ".join(f"{p['hit']}/{p['n']}" for p in per)
              + f" | {p50} | {p90} | {alerts / max(detected, 1):.2f} |")
        out[kind] = {"n": n, "hit": hit, "alerts_per_detected": alerts / max(detected, 1)}
    fpd = [x["false_per_day"] for x in res]
    late = {k: sum(x["benign_late"][k] for x in res) for k in entity_site.BENIGN}
    early = {k: sum(x["benign_early"][k] for x in res) for k in entity_site.BENIGN}
    print(f"\nfalse alerts per day: {np.mean(fpd):.2f} (per seed " + ", ".join(f"{v:.2f}" for v in fpd)
          + f"; B = {args.budget:g}, benign jobs' first two days included); by class: "
          + ", ".join(f"{t} {sum(x['false_by_type'].get(t, 0) for x in res) / sum(r['days'] for r in runs):.2f}"
                      for t in sorted({t for x in res for t in x["false_types"]})) + " per day")
    print("benign jobs' alerts on their first two days: " + ", ".join(f"{k} {v}" for k, v in early.items())
          + "; after: " + ", ".join(f"{k} {v}" for k, v in late.items()))
    cost = {k: sum(r["cost"][k] for r in runs) for k in ("entities", "scoring")}
    print(f"cost: detectors per entity {1e6 * cost['entities'] / rows:.1f} CPU-s per million flow records "
          f"(picking included), attention and the ladder {1e3 * cost['scoring'] / sum(r['windows'] for r in runs):.2f}"
          f" ms per window; {np.mean([r['actors'] for r in runs]):.0f} actors per seed")
    out.update({"false_per_day": float(np.mean(fpd)), "benign_late": late, "benign_early": early})
    if args.control:
        # calibration's own measure: on the same site with no attack at all, every alert is false
        jobs = [(s, warm, scored, 0, args.budget) for s in seeds]
        with ProcessPoolExecutor(min(args.jobs, len(seeds))) as ex:
            quiet = [entity_site.evaluate(r) for r in ex.map(_entity_seed, jobs)]
        cpd = [x["false_per_day"] for x in quiet]
        print(f"without attacks (the same seeds): false alerts per day {np.mean(cpd):.2f} (per seed "
              + ", ".join(f"{v:.2f}" for v in cpd) + f"; B = {args.budget:g}, benign jobs' first two days included); "
              + ", ".join(f"{t} {sum(x['false_by_type'].get(t, 0) for x in quiet) / (scored * len(seeds)):.2f}"
                          for t in sorted({t for x in quiet for t in x["false_types"]})) + " per day")
        out["control_false_per_day"] = float(np.mean(cpd))
    return out


if __name__ == "__main__":
    main()
