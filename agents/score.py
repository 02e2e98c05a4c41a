"""score_windows: window-summaries -> table scoring -> topics anomalies and alerts.

All logic is in app.flows.complete (Completer: whole windows per sensor) and app.detect.scorer
(SensorScorer). This agent sends what a window yields, awaits the acks, and only
then writes the new state, so a crash can repeat an anomaly or alert (same
``id``) but never lose one. Placebo traffic is never scored. Every sensor is
scored on its own clock; sensors whose clocks lie years apart share no window,
so there is no site-wide sum of sensors.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict

from app.runtime.gaps import GapFinder
from app.runtime.send import send_all
from app.records import DAY_MS, ScoringRows
from app.runtime import progress
from app.runtime import status as status_registry
from app.main import app, settings
from app.flows.complete import Completer
from app.detect.attention import suppressions
from app.detect.scorer import ScoreConfig, SensorScorer, scored
from app.topics import actions, alerts, anomalies, findings, window_summaries
from tables import scoring

log = logging.getLogger(__name__)
CONFIG = ScoreConfig(settings.window_ms, budget_per_day=settings.alert_budget,
                     suppress_ms=settings.alert_suppress_s * 1000, hard_cap_per_day=settings.alert_cap,
                     host_capacity=settings.host_capacity, timezones=tuple(settings.timezones.items()))
_last: dict = {"windows": 0, "anomalies": 0, "alerts": 0}
gaps = GapFinder(window_summaries.get_topic_name())


#: The completer and the scorers in memory, loaded from table scoring once after an assignment.
_mem: dict = {"completer": None, "scorers": {}}


def _decode(raw: bytes | None):
    """A row of table scoring as it is stored (JSON bytes: each row is encoded once, by us), decoded."""
    return json.loads(raw) if raw else None


def _read(key: str):
    return _decode(scoring.get(key))


def _encode(row) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


def _write(key: str, row) -> None:
    scoring[key] = _encode(row)


@app.on_partitions_revoked.connect
async def _forget(app_, revoked, **kwargs) -> None:
    mine = [tp.partition for tp in revoked if tp.topic == window_summaries.get_topic_name()]
    gaps.forget(mine)
    if mine:
        _mem["completer"], _mem["scorers"] = None, {}


def _completer() -> Completer:
    if _mem["completer"] is None:
        rows = ((k, _decode(v)) for k, v in scoring.items()
                if v and (k.startswith((Completer.PENDING, Completer.CLOCK)) or k == "completer"))
        _mem["completer"] = Completer.from_rows(settings.partitions, rows)
    return _mem["completer"]


def _scorer(sensor: str) -> SensorScorer:
    scorer = _mem["scorers"].get(sensor)
    if scorer is None:
        prior = _read(ScoringRows.SENSOR + sensor)
        scorer = _mem["scorers"][sensor] = SensorScorer.from_state(CONFIG, prior) if prior else \
            SensorScorer(CONFIG, sensor)
    return scorer


def _model_of(scorer_state: dict) -> dict:
    return {"windows": scorer_state["windows"], "last_window_ms": scorer_state["last_ms"],
            "recent": [[t, *(vals[n][0] for n in ("flows", "packets", "bytes"))]
                       for t, vals in scorer_state.get("recent", [])]}


def _progress_of(prog: dict) -> dict:
    return {"scored_windows": prog["windows"], "late_records": prog["late_records"],
            "late_packets": prog["late_packets"], "late_bytes": prog["late_bytes"],
            "ahead_records": prog["ahead_records"]}


def status() -> dict:
    """Counters of this process, and per sensor: the windows its models have learnt, the last ones scored
    (capture time, flows, packets, bytes), and the records that missed their window's score because they came
    after it was closed (``late``) or lay far ahead of the sensor's clock. From memory on the worker that
    scores, else from the table's rows (pending summaries are not read)."""
    models: dict[str, dict] = defaultdict(dict)
    completer, scorers = _mem["completer"], _mem["scorers"]
    try:
        if completer is not None:
            for sensor, prog in completer.progress.items():
                models[sensor].update(_progress_of(prog.to_json()))
        for sensor, scorer in scorers.items():
            models[sensor].update(_model_of({"windows": scorer.windows, "last_ms": scorer.last_ms,
                                             "recent": scorer.recent}))
        for key in list(scoring.keys()):
            if key.startswith(ScoringRows.SENSOR) and key[len(ScoringRows.SENSOR):] not in scorers:
                models[key[len(ScoringRows.SENSOR):]].update(_model_of(_read(key)))
            elif key.startswith(Completer.CLOCK) and completer is None:
                models[key[len(Completer.CLOCK):]].update(_progress_of(_read(key)))
    except Exception:  # the table may be recovering; health must answer anyway
        pass
    late = {s: m["late_records"] for s, m in models.items() if m.get("late_records")}
    return {**_last, "models": dict(models), "late_records": late}


async def handle(value: dict, raw: bytes | None = None) -> None:
    """One window-summaries message: ``value``, decoded from ``raw`` (kept as it came as a pending row)."""
    completer = _completer()
    muted = Muted()
    completer.on_message(value)
    done = completer.complete(settings.window_ms)
    states: dict[str, SensorScorer] = {}
    sends = []
    for sensor, w, summary in done:
        if not scored(sensor):
            continue
        key = ScoringRows.SENSOR + sensor
        states[key] = _scorer(sensor)
        found, raised, _ = states[key].window(w, summary, muted)
        sends += [(anomalies, sensor, a) for a in found] + [(alerts, sensor, a) for a in raised]
        _last["windows"] += 1
        _last["anomalies"] += len(found)
        _last["alerts"] += len(raised)
        for a in raised:
            progress.mark("alerts", **{a["rung"]: 1})
    await send_all([(topic, k.encode(), v, None) for topic, k, v in sends], "scoring")
    for key, scorer in states.items():
        _write(key, scorer.state())
    for key, row in completer.take().items():
        if row is value and isinstance(raw, bytes):    # the message as it came
            scoring[key] = raw
        elif row is not None:
            _write(key, row)
        elif key in scoring:
            del scoring[key]
    if done:
        progress.mark("score", windows=len(done))


if settings.scoring and settings.window_ms > 0:
    @app.agent(window_summaries, concurrency=1)
    async def score_windows(stream):
        async for event in stream.events():
            p, offset = event.message.partition, event.message.offset
            for m in await gaps.missed(p, offset):
                await handle(json.loads(m.value), m.value)
            await handle(event.value, event.message.value)
            gaps.processed(p, offset)


async def attend(finding: dict) -> None:
    """A finding of the detectors per entity (agents/entities.py) through the sensor's attention control."""
    sensor = finding["sensor"]
    if not scored(sensor):
        return
    key = ScoringRows.SENSOR + sensor
    scorer = _scorer(sensor)
    anomaly, alert = scorer.attend(finding, Muted())
    sends = [(anomalies, sensor, anomaly)] + ([(alerts, sensor, alert)] if alert else [])
    await send_all([(topic, k.encode(), v, None) for topic, k, v in sends], "findings")
    _write(key, scorer.state())
    _last["anomalies"] += 1
    if alert:
        _last["alerts"] += 1
        progress.mark("alerts", entity=1)


if settings.scoring and settings.entities:
    # one partition, like table scoring
    @app.agent(findings, concurrency=1)
    async def attend_findings(stream):
        async for event in stream.events():
            await attend(event.value)


SUPPRESS = ScoringRows.SUPPRESS
LEGACY_ACTIONS = "actions"   # an older version kept every action ever made in this one row


def suppress_rows(action: dict, at_ms: int) -> dict[str, bytes | None]:
    """The table rows an analyst's action changes (:func:`app.detect.attention.suppressions`), encoded."""
    return {SUPPRESS + key: None if until is None else _encode(until)
            for key, until in suppressions(action, at_ms).items()}


def migrate_actions() -> None:
    """Rewrite an older version's single actions row as rows of its own per suppression, and delete it."""
    if LEGACY_ACTIONS not in scoring:
        return
    try:
        old = _read(LEGACY_ACTIONS) or {}
        for key, until in (old.get("suppress") or {}).items():
            if isinstance(until, int) and isinstance(key, str) and len(key) <= 300:
                _write(SUPPRESS + key, until)
    except (ValueError, AttributeError):
        log.warning("the old actions row is unreadable; dropped")
    del scoring[LEGACY_ACTIONS]


class Muted:
    """``"type|entity"`` -> until (ms), read from the suppression rows, as SensorScorer.window asks."""

    def get(self, key: str, default: int = -1) -> int:
        raw = scoring.get(SUPPRESS + key)
        return _decode(raw) if raw else default


#: Suppressions are kept this long after they ran out, then their rows are deleted.
SUPPRESS_KEEP_MS = DAY_MS


def expire_suppressions(now_ms: int) -> int:
    """Delete the rows of suppressions that ran out more than a day ago; how many."""
    old = [k for k in list(scoring.keys()) if k.startswith(SUPPRESS) and (_read(k) or 0) < now_ms - SUPPRESS_KEEP_MS]
    for k in old:
        del scoring[k]
    return len(old)


if settings.scoring:
    # one partition, like table scoring: analysts' actions feed attention control
    @app.agent(actions, concurrency=1)
    async def apply_actions(stream):
        async for event in stream.events():
            at_ms = int(round(event.message.timestamp * 1000))
            migrate_actions()
            expire_suppressions(at_ms)
            for key, row in suppress_rows(event.value, at_ms).items():
                if row is not None:
                    scoring[key] = row
                elif key in scoring:
                    del scoring[key]   # a suppression lifted


status_registry.register("scoring", status)
