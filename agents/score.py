"""score_windows: window-summaries -> table scoring -> topics anomalies and alerts.

All logic is in app.score (Completer, SensorScorer). This agent sends what a
window yields, awaits the acks, and only then writes the new state, so a crash
can repeat an anomaly or alert (same ``id``) but never lose one. Placebo
traffic is never scored. With more than one sensor in a window, all of them
together are scored too, as the sensor ``*`` (traffic metrics only); its alert is
dropped when a sensor's own traffic alert already covers that window.
"""
from __future__ import annotations

import json
import logging

from agents.gaps import GapFinder
from agents.send import send_all
from app import progress
from app.main import app, settings
from app.score import Completer, ScoreConfig, SensorScorer
from app.summary import Summary
from app.topics import actions, alerts, anomalies, window_summaries
from tables import scoring

log = logging.getLogger(__name__)
PLACEBO = "placebo"
GLOBAL = "*"
CONFIG = ScoreConfig(settings.window_ms, budget_per_day=settings.alert_budget,
                     suppress_ms=settings.alert_suppress_s * 1000, hard_cap_per_day=settings.alert_cap,
                     host_capacity=settings.host_capacity)
_last: dict = {"windows": 0, "anomalies": 0, "alerts": 0, "late": 0}
gaps = GapFinder(window_summaries.get_topic_name())


#: The completer and the scorers in memory, loaded from table scoring once after an assignment.
_mem: dict = {"completer": None, "scorers": {}, "completer_row": None}


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
        _mem["completer"], _mem["scorers"], _mem["completer_row"] = None, {}, None


def _completer() -> Completer:
    if _mem["completer"] is None:
        pending = ((k, _decode(v)) for k, v in scoring.items() if k.startswith(Completer.PENDING) and v)
        row = _mem["completer_row"] = scoring.get("completer")
        _mem["completer"] = Completer.from_state(settings.partitions, _decode(row), pending)
    return _mem["completer"]


def _scorer(sensor: str) -> SensorScorer:
    scorer = _mem["scorers"].get(sensor)
    if scorer is None:
        prior = _read(f"sensor|{sensor}")
        scorer = _mem["scorers"][sensor] = SensorScorer.from_state(CONFIG, prior) if prior else \
            SensorScorer(CONFIG, sensor)
    return scorer


def status() -> dict:
    """Counters of this process, and per sensor the windows its models have learnt (from the table)."""
    models = {}
    try:
        for key, value in scoring.items():
            if key.startswith("sensor|") and value:
                value = _decode(value)
                models[key.split("|", 1)[1]] = {"windows": value["windows"], "last_window_ms": value["last_ms"]}
    except Exception:  # the table may be recovering; health must answer anyway
        pass
    return {**_last, "models": models}


async def handle(value: dict, raw: bytes | None = None) -> None:
    """One window-summaries message: ``value``, decoded from ``raw`` (kept as it came as a pending row)."""
    completer = _completer()
    muted = (_read("actions") or {}).get("suppress", {})
    completer.on_message(value)
    done = completer.complete(settings.window_ms)
    states: dict[str, SensorScorer] = {}
    sends = []
    for w, sensors in done:
        real = {name: summ for name, summ in sorted(sensors.items()) if name != PLACEBO}
        if len(real) > 1:   # and all sensors together, as the sensor "*"
            total = Summary()
            for summ in real.values():
                total.merge(Summary.from_json(summ.to_json()))
            real[GLOBAL] = total
        sensor_alerted = False
        for sensor, summary in real.items():
            key = f"sensor|{sensor}"
            states[key] = _scorer(sensor)
            if sensor == GLOBAL:
                summary.src_bytes.clear()       # hosts are modelled per sensor
            found, raised, _ = states[key].window(w, summary, muted)
            if sensor == GLOBAL and sensor_alerted:
                raised = []                     # a sensor's own alert already says it
            sensor_alerted = sensor_alerted or any(a["type"] == "traffic" for a in raised)
            sends += [(anomalies, sensor, a) for a in found] + [(alerts, sensor, a) for a in raised]
            _last["windows"] += 1
            _last["anomalies"] += len(found)
            _last["alerts"] += len(raised)
            for a in raised:
                progress.mark("alerts", **{a["rung"]: 1})
    await send_all([(topic, k.encode(), v, None) for topic, k, v in sends], "scoring")
    for key, scorer in states.items():
        _write(key, scorer.state())
    changed, completer.changed = completer.changed, {}
    for key, row in changed.items():
        if row is value and isinstance(raw, bytes):    # every sensor in it is fresh: the message as it came
            scoring[key] = raw
        elif row is not None:
            _write(key, row)
        elif key in scoring:
            del scoring[key]
    row = _encode(completer.state())
    if row != _mem["completer_row"]:   # most summaries leave it as it was: no write, no changelog record
        scoring["completer"] = _mem["completer_row"] = row
    _last["late"] = completer.late
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


def apply_action(state: dict | None, action: dict, at_ms: int) -> dict:
    """The analysts' actions so far, with one more: ``ack`` of an alert id, ``suppress`` of (type, entity)."""
    state = {"acked": {}, "suppress": {}, **(state or {})}
    if action["action"] == "ack":
        state["acked"] = {**state["acked"], action["id"]: at_ms}
    elif action["action"] == "suppress":
        key = f"{action['type']}|{action['entity']}"
        state["suppress"] = {**state["suppress"], key: at_ms + int(action["for_s"]) * 1000}
    return state


if settings.scoring:
    # one partition, like table scoring: analysts' actions feed attention control
    @app.agent(actions, concurrency=1)
    async def apply_actions(stream):
        async for event in stream.events():
            _write("actions", apply_action(_read("actions"), event.value, int(round(event.message.timestamp * 1000))))
