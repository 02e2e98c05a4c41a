"""merge_flow_parts: flow-parts -> table flows -> topics flows and window-stats.

All logic is in app.windows.Merger; this agent sends what a plan emits, awaits
the acks, and only then writes the plan's rows.
"""
from __future__ import annotations

import time

from app import progress
from app.main import app, settings
from app.topics import flow_parts, flows as flows_topic, window_stats
from app.windows import Merger
from tables import flows, watermarks

merger = Merger(settings.window_ms, settings.lateness_s * 1000, settings.idle_flush_s * 1000)
_TOPICS = {"flows": flows_topic, "window-stats": window_stats}


@app.on_partitions_revoked.connect
async def _forget(app_, revoked, **kwargs) -> None:
    merger.forget(tp.partition for tp in revoked if tp.topic == flow_parts.get_topic_name())


def status() -> dict:
    return {"watermark_ms": {str(p): w for p, w in sorted(merger.watermark_ms.items())},
            "open_windows": {str(p): len(ws) for p, ws in sorted(merger.open.items())}}


@app.agent(flow_parts, concurrency=1)
async def merge_flow_parts(stream):
    async for event in stream.events():
        p = event.message.partition
        now_ms = int(time.time() * 1000)
        merger.ensure_index(p, flows.items(), watermarks, now_ms)
        value = event.value
        if "tick" in value:
            plan = merger.on_tick(p, flows, now_ms)
        else:
            plan = merger.on_parts(p, value, flows, now_ms)
        futures = [await _TOPICS[topic].send(key=key.encode(), value=rec) for topic, key, rec in plan.emit]
        for fut in futures:
            await fut
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
        if plan.emit:
            progress.mark("emit", records=len(plan.emit))
