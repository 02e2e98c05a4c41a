"""Scoring one sensor's windows: every rung's scores, anomalies, and alerts after attention control.

Pure code (no Faust). The scoring agent keeps one :class:`SensorScorer` per
sensor, feeds it every complete window (the merged :class:`~app.flows.summary.Summary`
of all partitions) in capture-time order, and publishes what it returns. The
evaluation harness (bench/detect_eval.py) drives the same class.

Two detector families share the budget B of alerts per day half and half:

- ``traffic`` on the sensor's metrics (:data:`app.flows.summary.METRICS`), entity = the sensor;
- ``host-bytes`` on the bytes each inside host sent, entity = the host address.

Per family and rung, a window's score is: L0, the largest z of the metrics;
L1, ``-log10`` of the Bonferroni-combined NB p-value; L2, the log10-odds of an
event from the persistence filter. The shipped detector is L2 (``rung``).
Thresholds are calibrated once per capture day from the last ``calib_days`` of
scores (:func:`app.detect.attention.calibrate`), leaving out a sensor's first ``learn_days`` once there are
later ones and the windows that raised no alert of their own; before a day of history the defaults hold.

When the bytes of a host's anomaly (raised in the same window) account for at
least half of the sensor's excess bytes, they explain the sensor's bytes and
packets: a ``traffic`` anomaly in that window stands on its own only if its
other metrics are strong by themselves (combined p below 1e-6); otherwise it is
left to the host's alert.
"""
from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
from typing import NamedTuple

import numpy as np

from app.records import DAY_MS
from app.records import PLACEBO, alert_id, entity_key
from app.detect.attention import Attention, AttentionConfig, calibrate
from app.detect.models import LogSeasonal, Persistence, Seasonal, Welford, combine, surprise
from app.flows.summary import METRICS, Summary

FAMILIES = ("traffic", "host-bytes")
SERIES = 36
RUNGS = ("L0", "L1", "L2")
DEFAULT_THRESHOLDS = {"L0": 3.0, "L1": 8.0, "L2": 4.0}
#: What each class of finding moves among the sensor's metric groups (:data:`METRIC_GROUPS`): a sensor's anomaly
#: about one of them, naming the finding's source or target, is the other side of the same event. A scan's
#: failed attempts; a vertical scan's ports and the flows into its target; a brute force's flows into the
#: service; a DNS tunnel's flows into its resolver; an upload's bytes.
MOVES = {"horizontal-scan": ("attempts",), "vertical-scan": ("attempts", "ports", "fan-in"),
         "brute-force": ("attempts", "fan-in"), "dns-tunnel": ("fan-in",),
         "exfiltration": ("volume",), "slow-exfiltration": ("volume",)}
#: Findings whose flows all go to a few addresses they name (a DNS tunnel's resolvers): those are who they are
#: about too, as the target of the sensor's fan-in.
TARGETS = {"dns-tunnel": "resolvers"}
UPLOADS = ("exfiltration", "slow-exfiltration")
#: Windows apart within which an alert explains the other side's anomaly (one event, one alert).
EXPLAIN_WINDOWS = 3
#: The groups of the sensor's metrics an anomaly can be about (:meth:`SensorScorer.about`).
METRIC_GROUPS = {"flows": "volume", "packets": "volume", "bytes": "volume", "failed": "attempts", "dports": "ports",
                 "fanin": "fan-in"}
#: What found each class of finding of the detectors per entity (app/detect/entities.py).
ENTITY_MODELS = {"horizontal-scan": "distinct-hosts-per-port", "vertical-scan": "distinct-ports-per-host",
                 "brute-force": "short-connections-per-service", "beacon": "interval-regularity",
                 "dns-tunnel": "dns-volume-vs-own-history", "exfiltration": "bytes-per-address-vs-own-history",
                 "slow-exfiltration": "steady-upload-to-new-address",
                 "long-connection": "connection-length-to-new-address"}


class Peak(NamedTuple):
    """A window kept for calibration: its highest rung score first (the heap's order), then each rung's."""

    key: float
    l0: float
    l1: float
    l2: float
    t_ms: int
    entity: str


def scored(sensor: str) -> bool:
    """Whether a sensor's windows are scored: every sensor's but the placebo's (its synthetic traffic says
    nothing of the site, and would teach the models nothing)."""
    return sensor != PLACEBO


@dataclass(frozen=True)
class ScoreConfig:
    """The scorer's settings: window length, alert budget, suppression, the hard cap per day and the rung that
    alerts."""

    window_ms: int
    budget_per_day: float = 5.0
    suppress_ms: int = 3_600_000
    hard_cap_per_day: int = 20
    host_capacity: int = 2048
    calib_days: int = 7                   #: the last week: drift and an attack in history fade within it
    min_calib_windows: int = 288          #: windows of history before thresholds are calibrated
    #: a sensor's first capture days, left out of calibration once there are later ones: its models are still
    #: learning the site's day and week, and their scores run high
    learn_days: int = 2
    keep_per_day: int = 300               #: highest scores kept per day and family for calibration
    rung: str = "L2"
    #: (sensor, time zone) pairs, ``""`` for every other sensor: the seasonal models' slots follow local time
    timezones: tuple[tuple[str, str], ...] = ()

    def zone(self, sensor: str) -> str:
        zones = dict(self.timezones)
        return zones.get(sensor, zones.get("", "UTC"))

    def attention(self) -> AttentionConfig:
        return AttentionConfig(self.window_ms, self.budget_per_day, self.suppress_ms, 1, self.hard_cap_per_day)


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()


def _unpack(s: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), np.float32).astype(float).reshape(shape)


@dataclass
class SensorScorer:
    """Scores one sensor's whole windows, in that sensor's capture time: the L0 3-sigma baseline, the L1 seasonal
    Poisson models and the L2 persistence per metric and per inside host, then attention control (module
    docstring)."""

    cfg: ScoreConfig
    sensor: str
    l0: Welford = field(default_factory=lambda: Welford(len(METRICS)))
    l1: Seasonal = field(default_factory=lambda: Seasonal(len(METRICS)))
    l2: Persistence = field(default_factory=lambda: Persistence(1))
    h1: LogSeasonal = field(default_factory=lambda: LogSeasonal(0))
    h2: Persistence = field(default_factory=lambda: Persistence(0))
    hosts: dict[str, int] = field(default_factory=dict)     #: inside host -> row of h1/h2
    seen_ms: list[int] = field(default_factory=list)        #: per row: last window the host sent bytes
    windows: int = 0
    last_ms: int | None = None
    #: per family and capture day: the highest-scoring windows (a heap of :class:`Peak`), for calibration
    history: dict[str, dict[int, list[Peak]]] = field(default_factory=lambda: {f: {} for f in FAMILIES})
    thresholds: dict[str, dict[str, float]] = field(
        default_factory=lambda: {f: dict(DEFAULT_THRESHOLDS) for f in FAMILIES})
    calibrated_day: int | None = None
    first_day: int | None = None          #: the capture day of the first window kept for calibration
    attention: Attention = None  # type: ignore[assignment]  # made in __post_init__
    #: the last SERIES windows: [t_ms, {metric: [observed, expected, low, high]}], for the alerts' charts
    recent: list = field(default_factory=list)
    #: ``type|about|local hour`` -> the local days it raised an alert (:meth:`habitual`)
    habits: dict[str, list[int]] = field(default_factory=dict)
    #: the last windows' alerts: [t_ms, type, what about, id, its own] (:meth:`_explained`)
    raised: list = field(default_factory=list)
    #: per capture day: "family|entity|t_ms" of anomalies that raised no alert of their own (explained by
    #: another's alert, or habitual): a replay for calibration does not count them against the budget
    quiet: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        if self.attention is None:
            self.attention = Attention(self.cfg.attention())
        zone = self.cfg.zone(self.sensor)
        self._tz = None if zone == "UTC" else ZoneInfo(zone)

    def local(self, t_ms: int) -> int:
        """A capture time as the site's clock reads it (ms), for the seasonal models' slots and days."""
        if self._tz is None:
            return t_ms
        off = self._tz.utcoffset(datetime.fromtimestamp(t_ms / 1000, UTC))
        return t_ms + int(off.total_seconds() * 1000) if off is not None else t_ms

    # -- hosts
    def _rows(self, ips: list[str], t_ms: int) -> np.ndarray:
        """The model row of each host. Hosts already known keep theirs; then each new host, in
        order, takes a free row while there is room, else the row of the host silent for longest
        (the lowest row on ties), as if taken one at a time."""
        rows = np.empty(len(ips), np.int64)
        new = []
        for i, ip in enumerate(ips):
            r = self.hosts.get(ip)
            if r is None:
                new.append(i)
            else:
                self.seen_ms[r] = t_ms
                rows[i] = r
        if not new:
            return rows
        start = len(self.hosts)
        n_grow = min(len(new), max(self.cfg.host_capacity - start, 0))
        if n_grow:
            self.h1.grow(start + n_grow)
            self.h2.grow(start + n_grow)
            self.seen_ms.extend([t_ms] * n_grow)
            for j, i in enumerate(new[:n_grow]):
                self.hosts[ips[i]] = rows[i] = start + j
        rest = new[n_grow:]
        if rest and self.seen_ms:
            # Taken one at a time, the rows silent before t_ms go first, longest silent (then lowest row)
            # first. After them every row was seen at t_ms (a sensor's windows are scored in time order), so
            # the lowest row, row 0, is taken again by each host left, and the last one keeps it.
            seen = np.asarray(self.seen_ms)
            older = np.nonzero(seen < t_ms)[0]
            order = older[np.argsort(seen[older], kind="stable")].tolist()
            order += [0] * (len(rest) - len(order))
            ip_of = {r: ip for ip, r in self.hosts.items()}
            for i, r in zip(rest, order):
                old = ip_of.pop(r, None)
                if old is not None:
                    del self.hosts[old]
                self.hosts[ips[i]] = rows[i] = r
                ip_of[r] = ips[i]
                self.seen_ms[r] = t_ms
            idx = np.unique(np.asarray(order[:len(rest)]))
            self.h1.reset_rows(idx)
            self.h2.reset_rows(idx)
        return rows

    # -- one window
    def score(self, t_ms: int, metrics: np.ndarray, host_ips: list[str], host_bytes: np.ndarray) -> dict:
        """Every rung's scores of a window, and the models updated with it."""
        m = np.asarray(metrics, float)
        z = self.l0.score(m).z
        lt = self.local(t_ms)
        l1 = self.l1.score(m, lt)
        p, expected, lo, hi = l1.p, np.nan_to_num(l1.expected), l1.low, l1.high
        limit = self.l1_limit(l1.expected, l1.spread)
        pc = combine(p)
        s2 = float(self.l2.update(np.array([pc]))[0])
        self.l1.learn(m, lt, p)
        self.l0.learn(m)
        # columns as Python floats at once (a scalar at a time cost a fifth of a window's scoring)
        cols = zip(METRICS, m.tolist(), expected.tolist(), np.asarray(lo, float).tolist(),
                   np.asarray(hi, float).tolist(), p.tolist(), limit.tolist(), z.tolist())
        traffic = {"scores": {"L0": float(z.max()) if self.l0.n > 2 else 0.0, "L1": float(surprise(pc)), "L2": s2},
                   "metrics": {name: {"observed": o, "expected": e, "low": lw, "high": hg, "p": pv, "threshold": th,
                                      "z": zv} for name, o, e, lw, hg, pv, th, zv in cols}}
        rows = self._rows(list(host_ips), t_ms)
        x = np.zeros(self.h1.rows)
        x[rows] = host_bytes
        h1 = self.h1.score(x, lt)
        hp, hmean, hlo, hhi = h1.p, h1.expected, h1.low, h1.high
        hs2 = self.h2.update(hp) if self.h2.logodds.size else np.zeros(0)
        self.h1.learn(x, lt, hp)
        ip_of = {r: ip for ip, r in self.hosts.items()}
        hot = [r for r in np.nonzero((hp < 0.01) | (hs2 > -1.0))[0].tolist() if r in ip_of]
        hcols = zip(hot, np.asarray(surprise(hp[hot])).tolist() if hot else [], hs2[hot].tolist(), x[hot].tolist(),
                    np.nan_to_num(hmean[hot]).tolist(), np.asarray(hlo, float)[hot].tolist(),
                    np.nan_to_num(np.asarray(hhi, float)[hot]).tolist(), hp[hot].tolist())
        hosts = [{"host": ip_of[r], "scores": {"L0": 0.0, "L1": l1, "L2": l2}, "observed": o, "expected": e,
                  "low": lw, "high": hg, "p": pv} for r, l1, l2, o, e, lw, hg, pv in hcols]
        self.windows += 1
        self.last_ms = t_ms
        return {"traffic": traffic, "hosts": hosts}

    def l1_limit(self, mean: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Per metric, the value at which L1 alone would fire (its threshold in the metric's units)."""
        from scipy.stats import nbinom
        thr = self.thresholds["traffic"]["L1"]
        p = min(10.0 ** -thr / len(METRICS), 0.5) if np.isfinite(thr) else 1e-12
        mean = np.nan_to_num(mean)
        out = nbinom.isf(p, k, k / (k + np.maximum(mean, 1e-9)))
        return np.where(mean > 0, np.nan_to_num(out, posinf=0.0), 0.0)

    def candidates(self, t_ms: int, sc: dict, rung: str, thresholds: dict) -> list[dict]:
        """Anomalies of a window at a rung: (family, entity) whose score reaches its threshold."""
        out = []
        t = sc["traffic"]
        hosts = [h for h in sc["hosts"] if h["scores"][rung] >= thresholds["host-bytes"][rung]]
        if t["scores"][rung] >= thresholds["traffic"][rung]:
            bad = [n for n, v in t["metrics"].items() if (v["z"] > 3 if rung == "L0" else v["p"] * len(METRICS) < 1e-3)]
            excess = t["metrics"]["bytes"]["observed"] - t["metrics"]["bytes"]["expected"]
            # only a host anomaly raised in this very window may take the sensor's bytes: one that is merely
            # unusual (below its threshold) raises nothing, and the anomaly would be lost
            if any(h["observed"] - h["expected"] >= 0.5 * excess for h in hosts):
                # a host's anomaly explains the bytes and packets; what is left must be strong by itself
                left = [n for n in bad if n not in ("bytes", "packets")]
                if rung == "L0" or min((t["metrics"][n]["p"] for n in left), default=1.0) * len(METRICS) < 1e-6:
                    out.append({"type": "traffic", "entity": self.sensor, "score": t["scores"][rung], "metrics": left,
                                "about": self.about(t, left, rung)})
            else:
                out.append({"type": "traffic", "entity": self.sensor, "score": t["scores"][rung], "metrics": bad,
                            "about": self.about(t, bad, rung)})
        for h in hosts:
            out.append({"type": "host-bytes", "entity": h["host"], "score": h["scores"][rung], "metrics": ["bytes"]})
        return out

    @staticmethod
    def about(traffic: dict, metrics: list[str], rung: str) -> str:
        """What a sensor's anomaly is about, for attention control: the group of its strongest metric (volume,
        attempts, ports, fan-in). An episode of failed attempts does not suppress a later burst of bytes."""
        if not metrics:
            return "volume"
        m = traffic["metrics"]
        lead = max(metrics, key=lambda n: m[n]["z"]) if rung == "L0" else min(metrics, key=lambda n: m[n]["p"])
        return METRIC_GROUPS[lead]

    def remember(self, t_ms: int, sc: dict) -> None:
        """Keep the window's scores for calibration: the highest ``keep_per_day`` per family and day."""
        day = t_ms // DAY_MS
        ts = sc["traffic"]["scores"]
        rows = {"traffic": [(ts["L0"], ts["L1"], ts["L2"], t_ms, self.sensor)],
                "host-bytes": [(0.0, h["scores"]["L1"], h["scores"]["L2"], t_ms, h["host"]) for h in sc["hosts"]]}
        for fam, new in rows.items():
            bucket = self.history[fam].setdefault(day, [])
            for row in new:
                peak = Peak(max(row[1], row[2], row[0]), *row)
                if len(bucket) < self.cfg.keep_per_day:
                    heapq.heappush(bucket, peak)
                elif peak.key > bucket[0].key:
                    heapq.heapreplace(bucket, peak)
            for old in [d for d in self.history[fam] if d <= day - self.cfg.calib_days]:
                del self.history[fam][old]

    def calibrate(self, upto_ms: int) -> None:
        """Thresholds per family and rung from the kept history before ``upto_ms``'s day."""
        day = upto_ms // DAY_MS
        days = [d for d in self.history["traffic"] if d < day]
        if self.windows < self.cfg.min_calib_windows or not days:
            return
        if self.first_day is None:
            self.first_day = min(days)
        days = [d for d in days if d >= self.first_day + self.cfg.learn_days] or days
        att = self.cfg.attention()
        for fam in FAMILIES:
            rows = [r for d in days for r in self.history[fam].get(d, [])]
            quiet = {q for d in days for q in self.quiet.get(d, ())}
            rows = [r for r in rows if f"{entity_key(fam, r.entity)}|{r.t_ms}" not in quiet]
            for i, rung in enumerate(RUNGS):
                if fam == "host-bytes" and rung == "L0":
                    continue
                # the budget is shared by the families that have the rung: L0 is the sensor's alone
                share = self.cfg.budget_per_day / (1 if rung == "L0" else len(FAMILIES))
                events = [(r.t_ms, fam, r.entity, (r.l0, r.l1, r.l2)[i]) for r in rows]
                thr = calibrate(events, len(days), att, share)
                if np.isfinite(thr):
                    self.thresholds[fam][rung] = thr
        self.calibrated_day = day

    def window(self, t_ms: int, summary: Summary, muted: dict[str, int] | None = None
               ) -> tuple[list[dict], list[dict], dict]:
        """Score a complete window: (anomalies, alerts, scores). Alerts are explained in full.

        ``muted``: ``"type|entity"`` -> until (ms): an analyst suppressed that entity; its
        anomalies are still published, marked ``"muted"``, and raise no alert."""
        day = t_ms // DAY_MS
        if self.calibrated_day != day:
            self.calibrate(t_ms)
        m = summary.metrics()
        ips = list(summary.src_bytes)
        sc = self.score(t_ms, m, ips, np.array([summary.src_bytes[i] for i in ips], float))
        self.remember(t_ms, sc)
        self.recent.append([t_ms, {n: [round(v["observed"], 3), round(v["expected"], 3), round(v["low"], 3),
                                       round(v["high"], 3), round(v["threshold"], 3)]
                                   for n, v in sc["traffic"]["metrics"].items()}])
        del self.recent[:-SERIES]
        rung = self.cfg.rung
        anomalies, alerts = [], []
        for c in self.candidates(t_ms, sc, rung, self.thresholds):
            if muted and t_ms < muted.get(entity_key(c["type"], c["entity"]), -1):
                anomalies.append({**self.explain(t_ms, c, sc, summary, rung), "attention": "muted"})
                continue
            # episodes and suppression go by what the anomaly is about: a sensor's by its metric group
            about = f"{c['entity']} {c['about']}" if "about" in c else c["entity"]
            if self.habitual(c["type"], about, t_ms):
                anomalies.append({**self.explain(t_ms, c, sc, summary, rung), "attention": "habitual"})
                self.remember_habit(c["type"], about, t_ms)       # it goes on: still a habit next week
                self._quiet(t_ms, c["type"], c["entity"])
                continue
            who = [c["entity"]] if c["type"] == "host-bytes" else \
                [h for h, _ in summary.failed_src.most_common(1)] + [h for h, _ in summary.src_bytes.most_common(1)] \
                + ([h for h, _ in summary.dst_flows.most_common(1)] if c.get("about") == "fan-in" else [])
            by = self._explained(t_ms, c["type"], about, who)
            if by:
                anomalies.append({**self.explain(t_ms, c, sc, summary, rung), "attention": "explained",
                                  "explainedBy": by})
                self.remember_habit(c["type"], about, t_ms)       # it happened: a nightly job is still one
                self._raised(t_ms, c["type"], about, by, who, own=False)
                self._quiet(t_ms, c["type"], c["entity"])
                continue
            what, ep = self.attention.observe(t_ms, c["type"], about, c["score"])
            rec = self.explain(t_ms, c, sc, summary, rung)
            anomalies.append({**rec, "attention": what})
            if what == "alert":
                alerts.append(rec)
                self.remember_habit(c["type"], about, t_ms)
                self._raised(t_ms, c["type"], about, rec["id"], who)
        self.attention.expire(t_ms)
        return anomalies, alerts, sc

    def _quiet(self, t_ms: int, family: str, entity: str) -> None:
        """Remember a window's anomaly that raised no alert of its own, for :meth:`calibrate`."""
        day = t_ms // DAY_MS
        marks = self.quiet.setdefault(day, [])
        if len(marks) < self.cfg.keep_per_day:
            marks.append(f"{entity_key(family, entity)}|{t_ms}")
        for old in [d for d in self.quiet if d <= day - self.cfg.calib_days]:
            del self.quiet[old]

    def _habit_keys(self, kind: str, about: str, t_ms: int) -> list[str]:
        hour = (self.local(t_ms) % DAY_MS) // 3_600_000
        return [f"{kind}|{about}|{(hour + d) % 24}" for d in (-1, 0, 1)]

    def habitual(self, kind: str, about: str, t_ms: int) -> bool:
        """Whether the same (type, what it is about) raised alerts at this hour of the site's day (give or take
        one) on two earlier days of the last week: a new nightly job (a backup, a scan) alerts on its first two
        nights, not every night after."""
        day = self.local(t_ms) // DAY_MS
        days = {d for k in self._habit_keys(kind, about, t_ms) for d in self.habits.get(k, []) if day - 7 <= d < day}
        return len(days) >= 2

    def remember_habit(self, kind: str, about: str, t_ms: int) -> None:
        day = self.local(t_ms) // DAY_MS
        key = self._habit_keys(kind, about, t_ms)[1]
        self.habits[key] = [d for d in self.habits.get(key, []) if d >= day - 7 and d != day][-3:] + [day]
        if len(self.habits) > 512:
            for old in sorted(self.habits, key=lambda k: self.habits[k][-1])[:len(self.habits) - 512]:
                del self.habits[old]

    def attend(self, finding: dict, muted: dict[str, int] | None = None) -> tuple[dict, dict | None]:
        """A detector per entity's finding (:func:`app.detect.entities.finding_record`) through attention
        control: (the anomaly, the alert or None). A habitual finding (the same on two earlier days) and one an
        analyst suppressed are published as anomalies and raise no alert."""
        t_ms, kind, entity = finding["windowStartMs"], finding["type"], finding["entity"]
        rec = {"id": alert_id(self.sensor, kind, entity, t_ms), "sensor": self.sensor, "type": kind,
               "entity": entity, "windowStartMs": t_ms, "windowLengthMs": finding["windowLengthMs"],
               "rung": "entity", "model": ENTITY_MODELS.get(kind, kind), "firedRungs": ["entity"],
               "score": finding["score"], "threshold": finding["threshold"], "title": finding["title"],
               "evidence": finding["evidence"]}
        if muted and t_ms < muted.get(entity_key(kind, entity), -1):
            return {**rec, "attention": "muted"}, None
        if finding.get("habitual"):
            return {**rec, "attention": "habitual"}, None
        # the sources it is about, and for a finding whose flows converge on addresses, those (a tunnel's
        # resolvers: the target of the sensor's fan-in anomaly it makes)
        who = [entity.split(" ")[0]] + list(finding.get("evidence", {}).get(TARGETS.get(kind, ""), {}))[:5]
        by = self._explained(t_ms, kind, entity, who)
        if by:
            self._raised(t_ms, kind, entity, by, who, own=False)
            return {**rec, "attention": "explained", "explainedBy": by}, None
        what, _ = self.attention.observe(t_ms, kind, entity, finding["score"], remind=False)
        if what == "alert":
            self._raised(t_ms, kind, entity, rec["id"], who)
        else:
            self._went_on(t_ms, kind, entity)
        return {**rec, "attention": what}, (rec if what == "alert" else None)

    # -- one event, one alert: a detector per entity and the ladder seeing the same thing
    def _raised(self, t_ms: int, kind: str, entity: str, aid: str, who: list[str], own: bool = True) -> None:
        """Remember an alert (``own``), or that another's alert explained an anomaly, and the sources it is
        about (``who``), for :meth:`_explained`."""
        self.raised.append([t_ms, kind, entity, aid, own, who[:10]])
        horizon = t_ms - EXPLAIN_WINDOWS * self.cfg.window_ms
        self.raised[:] = [r for r in self.raised if r[0] >= horizon][-64:]

    def _went_on(self, t_ms: int, kind: str, entity: str) -> None:
        """An alerted finding came again (its episode goes on): it explains the other side's for
        :data:`EXPLAIN_WINDOWS` windows from now, not from its first window (a burst of 30 minutes, then the
        steady upload it was part of)."""
        for r in reversed(self.raised):
            if r[1] == kind and r[2] == entity and r[4]:
                r[0] = max(r[0], t_ms)
                return

    def _explained(self, t_ms: int, kind: str, entity: str, who: list[str]) -> str | None:
        """The id of an alert raised within :data:`EXPLAIN_WINDOWS` windows that is about the same thing from the
        other side: a sensor's anomaly and a finding that moves what it is about (:data:`MOVES`); a host's bytes
        and any finding about that host; an exfiltration and a slow one of the same pair; each naming the other's
        source or target (``who``: the addresses an anomaly is about, a sensor's top source of failed attempts
        and of bytes, and the target of its fan-in: a second attacker is not hidden). A sensor's anomaly that
        an alert explained pairs with nothing more (its sources are the window's, not one attack's: two attacks
        at once stay two alerts); a finding that one explained does (an upload alerted as a burst goes on as a
        steady one). Or the alert that explained this (type, entity) in the windows before (it goes on). None
        if there is none."""
        horizon = t_ms - EXPLAIN_WINDOWS * self.cfg.window_ms
        about = entity.split(" ")[-1]
        for t, k, e, aid, own, them in reversed(self.raised):
            if not horizon <= t <= t_ms + EXPLAIN_WINDOWS * self.cfg.window_ms:
                continue
            if (k, e) == (kind, entity):
                if own:
                    return None                         # its own episode: attention control extends it
                return aid                              # it goes on, still explained by another's alert
            if not own and k == "traffic" or not set(who) & set(them):
                continue        # a sensor's anomaly that an alert explained names the window's sources, not its own
            if kind == "traffic" and about in MOVES.get(k, ()) or \
                    k == "traffic" and e.split(" ")[-1] in MOVES.get(kind, ()):
                return aid
            if kind == "host-bytes" and k in ENTITY_MODELS or kind in ENTITY_MODELS and k == "host-bytes":
                return aid                              # a host's bytes and what a detector found it doing
            if kind in UPLOADS and k in UPLOADS and e == entity:
                return aid                              # a steady upload that turns into a burst: one event
        return None

    def explain(self, t_ms: int, c: dict, sc: dict, summary: Summary, rung: str) -> dict:
        fam = c["type"]
        if fam == "traffic":
            obs = {n: v for n, v in sc["traffic"]["metrics"].items() if n in c["metrics"]} or sc["traffic"]["metrics"]
            scores = sc["traffic"]["scores"]
        else:
            h = next(h for h in sc["hosts"] if h["host"] == c["entity"])
            obs = {"bytes": {k: h[k] for k in ("observed", "expected", "low", "high", "p")}}
            scores = h["scores"]
        fired = [r for r in RUNGS if (fam, r) != ("host-bytes", "L0") and scores[r] >= self.thresholds[fam][r]]
        return {
            "id": alert_id(self.sensor, fam, c["entity"], t_ms),
            "sensor": self.sensor, "type": fam, "entity": c["entity"], "windowStartMs": t_ms,
            "windowLengthMs": self.cfg.window_ms, "rung": rung, "model": {"L0": "welford-3sigma",
                                                                         "L1": "seasonal-negbin",
                                                                         "L2": "markov-persistence"}[rung],
            "firedRungs": fired, "score": c["score"], "threshold": self.thresholds[fam][rung],
            "pValue": 10 ** -scores["L1"], "pEvent": float(1 / (1 + 10 ** -scores["L2"])),
            "observed": obs,
            "topFlows": [f._asdict() for f in summary.top],
            "topSources": [{"host": k, "bytes": v} for k, v in summary.src_bytes.most_common(5)],
            "topDestinations": [{"host": k, "flows": v} for k, v in summary.dst_flows.most_common(5)],
            # what made a failed-attempts anomaly: its victims, sources and ports, ranked by attempts
            **({"failedDestinations": [{"host": k, "attempts": v} for k, v in summary.failed_dst.most_common(5)],
                "failedSources": [{"host": k, "attempts": v} for k, v in summary.failed_src.most_common(5)],
                "failedPorts": [{"port": k, "attempts": v} for k, v in summary.failed_port.most_common(5)],
                "failedSourcesSeen": len(summary.failed_src)} if summary.failed else {}),
            # the sensor's metrics over the last windows (bytes for a host's alert), with the expected band
            "series": {n: [[t, *vals[n]] for t, vals in self.recent]
                       for n in (c["metrics"] if fam == "traffic" else ["bytes"]) or ["flows"]},
        }

    # -- state, for a changelog-backed table
    def state(self) -> dict:
        h1 = self.h1
        return {"sensor": self.sensor, "windows": self.windows, "last_ms": self.last_ms,
                "l0": self.l0.state(), "l1": self.l1.state(), "l2": self.l2.state(),
                "h1": {"rows": h1.rows, "a": _pack(h1.a), "b": _pack(h1.b), "var": _pack(h1.var), "n": _pack(h1.n)},
                "h2": _pack(self.h2.logodds), "hosts": self.hosts, "seen_ms": self.seen_ms,
                "history": {f: {str(d): v for d, v in days.items()} for f, days in self.history.items()},
                "thresholds": self.thresholds, "calibrated_day": self.calibrated_day,
                "attention": self.attention.state(), "recent": self.recent, "habits": self.habits,
                "raised": self.raised, "quiet": {str(d): v for d, v in self.quiet.items()},
                "first_day": self.first_day}

    @classmethod
    def from_state(cls, cfg: ScoreConfig, s: dict) -> SensorScorer:
        sc = cls(cfg, s["sensor"])
        sc.windows, sc.last_ms = s["windows"], s["last_ms"]
        sc.l0, sc.l1, sc.l2 = Welford.from_state(s["l0"]), Seasonal.from_state(s["l1"]), Persistence.from_state(s["l2"])
        n = s["h1"]["rows"]
        sc.h1 = LogSeasonal(n)
        shape = sc.h1.a.shape
        sc.h1.a, sc.h1.b = _unpack(s["h1"]["a"], shape), _unpack(s["h1"]["b"], shape)
        sc.h1.var, sc.h1.n = _unpack(s["h1"]["var"], (n,)), _unpack(s["h1"]["n"], (n,))
        sc.h2 = Persistence(n)
        sc.h2.logodds = _unpack(s["h2"], (n,))
        sc.hosts, sc.seen_ms = dict(s["hosts"]), list(s["seen_ms"])
        sc.history = {f: {int(d): [Peak(*r) for r in v] for d, v in days.items()} for f, days in s["history"].items()}
        sc.thresholds, sc.calibrated_day = s["thresholds"], s["calibrated_day"]
        sc.attention = Attention.from_state(cfg.attention(), s["attention"])
        sc.recent = s.get("recent", [])
        sc.habits = s.get("habits", {})
        sc.raised = s.get("raised", [])
        sc.quiet = {int(d): v for d, v in s.get("quiet", {}).items()}
        sc.first_day = s.get("first_day")
        return sc
