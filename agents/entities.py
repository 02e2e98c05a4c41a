"""watch_entities: entity-flows -> table entities -> topic findings.

All logic is in app.detect.entities (Actor). An entity-flows message holds the
records of one closed window whose actors (sensor, source address) live on this
partition; each actor's row of table ``entities`` is read (kept in memory after
that) and fed the records. An actor is written back when it found something
(after the finding is acknowledged), and otherwise at most once per
:data:`WRITE_MS` of its sensor's capture time: writing every actor of every
window was most of the broker's messages and a large part of its CPU. A crash
or a rebalance therefore costs an actor at most WRITE_MS of observations (its
detectors go on from the state written before); flows and their sums are not
affected. A message seen again after a crash is skipped per actor
(``Actor.first_time``).

Admission: an outside source's first records make it an actor only when they are
at least :data:`ADMIT_ROWS` in one message: a flood from spoofed addresses would
otherwise make an actor of every packet. Detectors need more than that of an
outside source anyway (their thresholds are ``outside_factor`` times higher).
Idle actors are forgotten: outside ones after :data:`OUTSIDE_IDLE_MS` of their
sensor's capture time, inside ones after :data:`INSIDE_IDLE_MS`.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict

from app.detect.entities import Actor, EntityConfig, actor_key, finding_record
from app.detect.scorer import scored
from app.flows.summary import Home
from app.main import app, settings
from app.records import DAY_MS
from app.runtime import progress
from app.runtime import status as status_registry
from app.runtime.send import send_all
from app.topics import entity_flows, findings
from tables import entities

log = logging.getLogger(__name__)
CONFIG = EntityConfig()
HOME = Home(settings.home_networks)
ADMIT_ROWS = 2
OUTSIDE_IDLE_MS = 2 * 3_600_000
INSIDE_IDLE_MS = 8 * DAY_MS
CACHE = 50_000                      #: actors kept decoded in memory
WRITE_MS = 1_800_000                #: an actor's state is written at least this often in capture time
_mem: OrderedDict[str, Actor] = OrderedDict()
#: per partition of entity-flows and sensor (each sensor has its own capture clock): actors observed since they
#: were last written; and the window each actor was last written at
_dirty: dict[tuple[int, str], dict[str, int]] = {}
_written: dict[str, int] = {}
_home: dict[str, int] = {}          #: the partition of each cached actor
_newest: dict[str, int] = {}        #: per sensor: the newest capture time seen here
_last = {"messages": 0, "rows": 0, "findings": 0, "actors": 0, "forgotten": 0, "not_admitted": 0, "written": 0}


@app.on_partitions_revoked.connect
async def _forget(app_, revoked, **kwargs) -> None:
    if any(tp.topic == entity_flows.get_topic_name() for tp in revoked):
        _mem.clear()
        _dirty.clear()
        _written.clear()
        _home.clear()


def _actor(key: str, sensor: str, src: str, inside: bool, rows: int) -> Actor | None:
    actor = _mem.get(key)
    if actor is not None:
        _mem.move_to_end(key)
        return actor
    raw = entities.get(key)
    if raw:
        actor = Actor.from_json(json.loads(raw))
    elif not inside and rows < ADMIT_ROWS:
        _last["not_admitted"] += 1
        return None
    else:
        actor = Actor(sensor, src, inside)
        _last["actors"] += 1
    _mem[key] = actor
    while len(_mem) > CACHE:
        _mem.popitem(last=False)
    return actor


def _expire(sensor: str, partition: int, now_ms: int) -> list[str]:
    """Keys of this sensor's cached actors of this partition idle for too long (a table's key is deleted in
    an event of its own partition)."""
    return [k for k, a in _mem.items() if a.sensor == sensor and _home.get(k) == partition and
            now_ms - a.last_ms > (INSIDE_IDLE_MS if a.inside else OUTSIDE_IDLE_MS)]


def _write(key: str, actor: Actor, w: int) -> None:
    entities[key] = json.dumps(actor.to_json(), separators=(",", ":")).encode()
    _written[key] = w
    _last["written"] += 1


async def handle(msg: dict, partition: int = 0) -> None:
    sensor, w, wl = msg["sensor"], msg["window"], msg["windowLengthMs"]
    if not scored(sensor):
        return
    mark = f"{w}/{msg.get('origin')}/{msg.get('part')}"
    touched: dict[str, Actor] = {}
    found = []
    n = 0
    keys = [actor_key(sensor, src) for src in msg["actors"]]
    for key, (src, rows) in zip(keys, msg["actors"].items()):
        actor = _actor(key, sensor, src, src in HOME, len(rows))
        if actor is None or not actor.first_time(mark):
            continue
        _home[key] = partition
        n += len(rows)
        new = [finding_record(sensor, f, wl) for f in actor.observe(CONFIG, w, rows)]
        found += new
        if new or w - _written.get(key, -WRITE_MS) >= WRITE_MS:
            touched[key] = actor
    if found:
        await send_all([(findings, sensor.encode(), f, None) for f in found], "entity findings")
    dirty = _dirty.setdefault((partition, sensor), {})
    for key, actor in touched.items():
        _write(key, actor, w)
        dirty.pop(key, None)
    for key in keys:
        if key not in touched and key in _mem:
            dirty[key] = w
    # actors of this partition that have seen no message for a while are written too
    for key in [k for k, _ in zip(dirty, range(64)) if w - _written.get(k, -WRITE_MS) >= WRITE_MS]:
        actor = _mem.get(key)
        if actor is not None:
            _write(key, actor, w)
        del dirty[key]
    newest = _newest[sensor] = max(_newest.get(sensor, 0), w)
    if _last["messages"] % 200 == 0:
        for key in _expire(sensor, partition, newest):
            _mem.pop(key, None)
            _written.pop(key, None)
            _home.pop(key, None)
            dirty.pop(key, None)
            if key in entities:
                del entities[key]
            _last["forgotten"] += 1
    _last["messages"] += 1
    _last["rows"] += n
    _last["findings"] += len(found)
    progress.mark("entities", messages=1, rows=n, findings=len(found))


def status() -> dict:
    """Counters of this process: messages and records read, actors made, forgotten and not admitted, findings."""
    return {**_last, "cached": len(_mem)}


if settings.scoring and settings.entities:
    @app.agent(entity_flows, concurrency=1)
    async def watch_entities(stream):
        async for event in stream.events():
            await handle(event.value, event.message.partition)


status_registry.register("entities", status)
