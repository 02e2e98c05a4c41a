"""merge_flow_parts: flow-parts -> table flows -> topics flows and window-summaries.

All logic is in app.flows.windows.Merger; this agent sends what a plan emits, awaits
the acks, and only then writes the plan's rows. Flow record batches go to the
flows partition of the same number as their flow-parts partition.
"""
from __future__ import annotations

import json
import logging
import time

from app.runtime.gaps import GapFinder
from app.runtime.send import send_all
from app.runtime import progress
from app.runtime import status as status_registry
from app.main import app, settings
from app.records import END_ACTIVE_TIMEOUT, END_FORCED
from app.flows.index import Index
from app.flows.summary import Home
from app.topics import entity_flows, flow_parts, flows as flows_topic, flows_index, window_summaries
from app.flows.windows import Merger
from tables import flows, watermarks

log = logging.getLogger(__name__)
merger = Merger(settings.window_ms, settings.lateness_s * 1000, settings.idle_flush_s * 1000,
                home=Home(settings.home_networks), max_jump_ms=settings.max_clock_jump_s * 1000,
                live_idle_ms=settings.live_idle_flush_s * 1000, max_open_flows=settings.max_open_flows,
                entity_partitions=settings.partitions if settings.scoring and settings.entities else 0)
_TOPICS = {"flows": flows_topic, "window-summaries": window_summaries, "entity-flows": entity_flows}
END_NAMES = {END_ACTIVE_TIMEOUT: "window_closed", END_FORCED: "idle_flush"}
#: the flows topic's time index: what this worker wrote to each of its partitions since the last entry
index = Index(settings.flows_index_every)


gaps = GapFinder(flow_parts.get_topic_name())


@app.on_partitions_revoked.connect
async def _forget(app_, revoked, **kwargs) -> None:
    mine = [tp.partition for tp in revoked if tp.topic == flow_parts.get_topic_name()]
    merger.forget(mine)
    gaps.forget(mine)
    index.forget(mine)


@app.on_partitions_assigned.connect
async def _remember(app_, assigned, **kwargs) -> None:
    await gaps.remember(tp.partition for tp in assigned if tp.topic == flow_parts.get_topic_name())


def status() -> dict:
    """Open windows per partition, and per sensor its capture clock over this worker's partitions."""
    return {"open_windows": {str(p): sum(map(len, ws.values())) for p, ws in sorted(merger.open.items())},
            "open_flows": sum(merger.open_flows.values()), "open_flows_max": settings.max_open_flows,
            "windows_closed_early": merger.spilled, "sensors": merger.sensors()}


async def handle(p: int, raw: bytes | dict, timestamp_ms: int) -> None:
    """Merge one flow-parts message (or tick): send what its plan emits, await the acks, then write rows."""
    encoded = raw if isinstance(raw, (bytes, bytearray)) else None  # test_context() puts decoded messages
    value = json.loads(encoded) if encoded is not None else raw
    # times come from the messages, never from this process's clock: a replay decides the same
    now_ms = int(value["tick"]) if "tick" in value else timestamp_ms
    merger.ensure_index(p, flows.items(), watermarks, now_ms)
    if "tick" in value:
        plan = merger.on_tick(p, flows, now_ms)
    else:
        plan = merger.on_parts(p, value, flows, now_ms, raw=encoded, marks=watermarks)
    # a flows batch carries its window's capture time as its Kafka record time (a query seeks by it), never
    # after this process's clock (the broker refuses records far in the future: a damaged capture time)
    wall_ms = time.time() * 1000
    stamps = {i: int(min(max(t, 0), wall_ms)) for i, t in plan.stamps.items()}
    acked = await send_all([(_TOPICS[topic], key.encode(), rec, p if topic == "flows" else plan.partitions.get(i),
                             plan.headers.get(i), stamps[i] / 1000 if i in stamps else None)
                            for i, (topic, key, rec) in enumerate(plan.emit)], f"merge of partition {p}")
    # the time index, once its span's messages are acknowledged (a lost entry only makes searches read more)
    entries = [e for i, (topic, _, _) in enumerate(plan.emit) if topic == "flows" and i in stamps
               and acked[i] is not None and (e := index.add(p, acked[i].offset, stamps[i])) is not None]
    if entries:
        await send_all([(flows_index, str(p).encode(), json.dumps(e).encode(), p) for e in entries],
                       f"time index of flows partition {p}")
    for rk, row in plan.writes.items():
        if row is None:
            if rk in flows:
                del flows[rk]
        else:
            flows[rk] = row
    for mk, mark in plan.marks.items():
        watermarks[mk] = mark
    if "tick" not in value:
        progress.mark("merge", messages=1)
    if plan.ends:
        records = sum(plan.ends.values())
        progress.mark("emit", records=records, messages=len(plan.emit))
        progress.mark("flows_by_end", **{"late" if k == "late" else END_NAMES.get(k, "other"): v
                                         for k, v in plan.ends.items()})


@app.agent(flow_parts, concurrency=1)
async def merge_flow_parts(stream):
    async for event in stream.events():
        p, offset = event.message.partition, event.message.offset
        for m in await gaps.missed(p, offset):
            await handle(p, m.value, m.timestamp_ms)
        await handle(p, event.value, int(round(event.message.timestamp * 1000)))
        gaps.processed(p, offset)


status_registry.register("flows", status)
