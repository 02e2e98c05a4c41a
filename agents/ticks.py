"""Leader timer: a tick into every flow-parts partition each second.

Tables can only be written inside stream iteration, so idle flushing and row
expiry ride on these ticks through merge_flow_parts.
"""
from __future__ import annotations

import time

from app.main import app, settings
from app.topics import ALL, flow_parts


@app.task
async def declare_topics() -> None:
    for topic in ALL:
        await topic.maybe_declare()


@app.timer(interval=1.0, on_leader=True)
async def tick() -> None:
    now_ms = int(time.time() * 1000)
    for p in range(settings.partitions):
        await flow_parts.send(key=b"tick", value={"tick": now_ms}, partition=p)
