"""Attention control: from scored windows to the few alerts a person should read.

Pure code (no Faust). A window's (type, entity) is *anomalous* when its score
reaches the threshold of its detector. Anomalous windows of the same (type,
entity) that follow one another (up to ``gap_windows`` quiet windows apart) are
one *episode*, and only an episode's first window raises an alert. Nothing more
is raised for that (type, entity) within ``suppress_ms`` of the alert (Zeek's
notice suppression); an episode that goes on is alerted again every ``remind_ms``. A hard cap of alerts per
capture day backs the budget up.

Thresholds are calibrated by :func:`calibrate` from the scores of past windows:
the lowest threshold at which replaying those windows through the same episode
rules would have raised at most ``budget_per_day`` alerts per day.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from app.records import DAY_MS, entity_key



@dataclass(frozen=True)
class AttentionConfig:
    """Attention control's settings: window length, alert budget per day, suppression after an alert, and the windows
    an episode may pause."""

    window_ms: int
    budget_per_day: float = 5.0
    suppress_ms: int = 3_600_000
    gap_windows: int = 1
    hard_cap_per_day: int = 20
    remind_ms: int = 6 * 3_600_000     #: an episode that goes on is alerted again this often


@dataclass
class Episode:
    """Consecutive anomalous windows of one (type, entity): one alert at most, however long it lasts."""

    type: str
    entity: str
    start_ms: int
    last_ms: int
    peak: float
    windows: int = 1
    alerted: bool = True
    alert_ms: int | None = None        #: when it last raised an alert (start_ms if None)

    def to_json(self) -> dict:
        return {"type": self.type, "entity": self.entity, "startMs": self.start_ms, "lastMs": self.last_ms,
                "peak": self.peak, "windows": self.windows}


@dataclass
class Attention:
    """Decides what reaches a person: groups anomalies into episodes, deduplicates them, and keeps alerts within the
    budget per day."""

    cfg: AttentionConfig
    episodes: dict[tuple[str, str], Episode] = field(default_factory=dict)
    per_day: dict[int, int] = field(default_factory=dict)
    suppressed: int = 0
    capped: int = 0

    def observe(self, t_ms: int, type_: str, entity: str, score: float, remind: bool = True) -> tuple[str, Episode]:
        """One anomalous window. Returns ("alert" | "extend" | "suppressed" | "capped", the episode).

        Windows up to ``gap_windows`` quiet windows apart extend an episode. Within
        ``suppress_ms`` of an alert its (type, entity) raises nothing new: a new
        episode there is suppressed. An episode that goes on is alerted again
        every ``remind_ms`` (unless ``remind`` is false: a finding about an entity that goes on, a beacon,
        says nothing new, and it goes on while it comes back within ``suppress_ms`` of its last window)."""
        cfg = self.cfg
        key = (type_, entity)
        ep = self.episodes.get(key)
        if ep is not None and t_ms <= ep.last_ms:
            ep.peak = max(ep.peak, score)           # the same window seen again (a replay): nothing new
            return "extend", ep
        if ep is not None:
            pause = (cfg.gap_windows + 1) * cfg.window_ms if remind else max(cfg.suppress_ms, cfg.window_ms)
            going_on = t_ms - ep.last_ms <= pause
            since = t_ms - (ep.start_ms if ep.alert_ms is None else ep.alert_ms)
            if since < cfg.suppress_ms or (going_on and (since < cfg.remind_ms or not remind)):
                ep.last_ms, ep.peak, ep.windows = t_ms, max(ep.peak, score), ep.windows + 1
                if not going_on:
                    self.suppressed += 1
                    return "suppressed", ep
                return "extend", ep
            if going_on:                              # a reminder of the same episode
                ep.last_ms, ep.peak, ep.windows = t_ms, max(ep.peak, score), ep.windows + 1
            else:
                ep = None
        if ep is None:
            ep = self.episodes[key] = Episode(type_, entity, t_ms, t_ms, score)
        day = t_ms // DAY_MS
        if self.per_day.get(day, 0) >= cfg.hard_cap_per_day:
            ep.alerted = False
            self.capped += 1
            return "capped", ep
        ep.alert_ms = t_ms
        self.per_day[day] = self.per_day.get(day, 0) + 1
        for old in [d for d in self.per_day if d < day - 7]:
            del self.per_day[old]
        return "alert", ep

    def expire(self, t_ms: int) -> None:
        """Drop episodes too old to extend or suppress anything."""
        horizon = max(self.cfg.suppress_ms, (self.cfg.gap_windows + 1) * self.cfg.window_ms)
        for key in [k for k, ep in self.episodes.items() if t_ms - ep.last_ms > horizon]:
            del self.episodes[key]

    def state(self) -> dict:
        return {"episodes": [[k[0], k[1], e.start_ms, e.last_ms, e.peak, e.windows, e.alerted, e.alert_ms]
                             for k, e in self.episodes.items()],
                "per_day": {str(d): n for d, n in self.per_day.items()},
                "suppressed": self.suppressed, "capped": self.capped}

    @classmethod
    def from_state(cls, cfg: AttentionConfig, s: dict) -> Attention:
        a = cls(cfg)
        for t, e, start, last, peak, windows, alerted, alert_ms in s.get("episodes", []):
            a.episodes[(t, e)] = Episode(t, e, start, last, peak, windows, alerted, alert_ms)
        a.per_day = {int(d): n for d, n in s.get("per_day", {}).items()}
        a.suppressed, a.capped = s.get("suppressed", 0), s.get("capped", 0)
        return a


def count_alerts(events: list[tuple[int, str, str, float]], threshold: float, cfg: AttentionConfig) -> int:
    """Alerts that ``events`` (t_ms, type, entity, score), in time order, raise at ``threshold``."""
    att = Attention(AttentionConfig(cfg.window_ms, cfg.budget_per_day, cfg.suppress_ms, cfg.gap_windows,
                                    hard_cap_per_day=1 << 30, remind_ms=cfg.remind_ms))
    n = 0
    for t, typ, ent, score in events:
        if score >= threshold and att.observe(t, typ, ent, score)[0] == "alert":
            n += 1
    return n


def calibrate(events: list[tuple[int, str, str, float]], days: float, cfg: AttentionConfig,
              budget_per_day: float | None = None) -> float:
    """The lowest threshold at which ``events`` (past windows' scores) raise at most budget x days alerts.

    Scores are searched among the observed values, so the answer is exact for the
    past data; ``inf`` if no events.
    """
    budget = cfg.budget_per_day if budget_per_day is None else budget_per_day
    allowed = budget * days
    events = sorted(events)
    cands = sorted({e[3] for e in events})
    if not cands:
        return float("inf")
    lo, hi = 0, len(cands) - 1
    if count_alerts(events, cands[hi], cfg) > allowed:
        return float(cands[hi]) * 1.0000001
    while lo < hi:              # alerts fall (almost always monotonically) as the threshold rises
        mid = (lo + hi) // 2
        if count_alerts([e for e in events if e[3] >= cands[mid]], cands[mid], cfg) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo])


def suppressions(action: dict, at_ms: int) -> dict[str, int | None]:
    """What an analyst's action suppresses: ``type|entity`` -> until (ms), or None for a suppression lifted.
    A suppression is one small row of its own per (type, entity), so that no row grows with history; an ack
    suppresses nothing (it lives on topic ``actions``, where the page reads it). Ill-formed actions (they are
    checked where they are posted, web/dashboard.py) change nothing.

    >>> suppressions({"action": "suppress", "type": "traffic", "entity": "tap1", "for_s": 60}, 1_000)
    {'traffic|tap1': 61000}
    >>> suppressions({"action": "lift", "type": "traffic", "entity": "tap1"}, 2_000)
    {'traffic|tap1': None}
    >>> suppressions({"action": "ack", "id": "x"}, 1_000)
    {}
    """
    try:
        if action.get("action") == "suppress":
            return {entity_key(action["type"], action["entity"]): at_ms + int(action["for_s"]) * 1000}
        if action.get("action") == "lift":
            return {entity_key(action["type"], action["entity"]): None}
    except (KeyError, TypeError, ValueError):
        pass
    return {}
