"""Table contents for people and scripts, read from the tables' changelog topics in Kafka.

Kafka holds the tables' truth (their changelogs); a worker's RocksDB is a cache
of it. These functions read a changelog from the start to its end, keep the last
value per key (a tombstone deletes it), and format rows for the project
commands ``faust -A app blocks | flows-open | baselines`` (``--json`` for scripts).
"""
from __future__ import annotations

import json

import numpy as np

from app.flows import ranges


async def read_changelog(bootstrap: str, topic: str, **kafka: object) -> dict[str, object]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from app.runtime import compat

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **kafka)
    await c.start()
    try:
        parts = await compat.partitions_of(c, topic)
        if not parts:
            raise LookupError(f"no topic {topic}: has a worker of this app ever run against this broker?")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: dict[str, object] = {}
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for msgs in (await c.getmany(*remaining, timeout_ms=2000)).values():
                for m in msgs:
                    key = json.loads(m.key) if m.key else None
                    if m.value is None:
                        out.pop(key, None)
                    else:
                        out[key] = json.loads(m.value)
            for tp in list(remaining):
                if await c.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await c.stop()


def blocks_rows(table: dict) -> list[dict]:
    """One row per block: its own row and its lanes' rows (``sensor~block@lane``, agents/decode.py) joined."""
    merged: dict[str, dict] = {}
    for key, v in sorted(table.items()):
        if not v:
            continue
        bkey = key.split("@", 1)[0]
        m = merged.setdefault(bkey, {**v, "done": []})
        m["done"] = ranges.union(m["done"], v["done"])
    rows = []
    for key, v in merged.items():
        sensor, _, block = key.partition("~")
        done = sum(hi - lo + 1 for lo, hi in v["done"])
        rows.append({"sensor": sensor, "block": block, "chunks": v["chunks"], "decoded": done,
                     "complete": done == v["chunks"], "sha256": v["sha256"]})
    return rows


def open_flow_rows(table: dict) -> list[dict]:
    """The flows of windows not closed yet, merged from the table's slices."""
    from app.flows.windows import SLICE, Window, parse_key, sensor_of, slice_parts

    opened: dict[tuple[int, int, str], Window] = {}
    closed = set()
    for key, v in table.items():
        f = parse_key(key) if v is not None else None
        if f is None:
            continue
        kind, p, w, chunk, source = f
        if kind == SLICE:
            opened.setdefault((p, w, sensor_of(source)), Window()).apply(source, chunk, slice_parts(v))
        else:
            closed.add((p, w, source))   # a closed row names its sensor (None: an older row, every sensor)
    rows = []
    for (p, w, sensor), win in sorted(opened.items()):
        if (p, w, sensor) in closed or (p, w, None) in closed:
            continue
        for flow, c in sorted(win.flows.items()):
            rows.append({"window_ms": w, "flow": flow, "packets": c[0], "bytes": c[1], "first_ms": c[2],
                         "last_ms": c[3], "partition": p})
    return rows


def baseline_rows(table: dict) -> list[dict]:
    from app.detect.models import Seasonal
    from app.flows.summary import METRICS
    from app.records import ScoringRows

    rows = []
    for key, v in sorted(table.items()):
        if not key.startswith(ScoringRows.SENSOR) or not v:
            continue
        l0 = v["l0"]
        n = max(l0["n"] - 1, 1)
        l1 = Seasonal.from_state(v["l1"])
        last = v["last_ms"]
        mean, k = l1.predict(last) if last is not None else (np.full(len(METRICS), np.nan), None)
        for i, name in enumerate(METRICS):
            rows.append({"sensor": v["sensor"], "metric": name, "windows": v["windows"],
                         "l0_mean": round(l0["mean"][i], 3), "l0_sd": round((l0["m2"][i] / n) ** 0.5, 3),
                         "l1_expected_at_last_window": None if np.isnan(mean[i]) else round(float(mean[i]), 3),
                         "l1_level": round(float(np.exp(l1.loglevel[i])), 4),
                         "l1_dispersion": round(float(l1.disp[i]), 5),
                         "last_window_ms": last})
        rows.append({"sensor": v["sensor"], "metric": "(thresholds)", "windows": v["windows"],
                     "thresholds": v["thresholds"], "hosts_modelled": len(v["hosts"]),
                     "calibrated_day": v["calibrated_day"]})
    return rows


def render(rows: list[dict], as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(r, sort_keys=True) for r in rows)
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(width[i]) for i, c in enumerate(cols))
    return "\n".join([line, "  ".join("-" * w for w in width)] +
                     ["  ".join(v.ljust(width[i]) for i, v in enumerate(row)) for row in cells])
