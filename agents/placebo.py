"""Placebo traffic and heartbeats: proof, all the time, that every stage makes progress.

- The leader uploads a small synthetic capture (app/capture/synth.py, stamped with the current time)
  under sensor ``placebo`` every FLOWSIGHT_PLACEBO_INTERVAL_S, through the real ingest path.
- The sink follows the flows topic and matches placebo records to their uploads
  (app/runtime/roundtrip.py): the round trip passes while every upload sent long
  enough ago (a window, the lateness and the idle flush of a live sensor, plus
  slack) has come out whole. /v1/health reports it.
- Every worker sends a heartbeat when one of its components made progress since the last.
Placebo flows carry sensor ``placebo``, which scoring leaves out of every baseline.
"""
from __future__ import annotations

import socket
import time

import aiohttp
from aiokafka.errors import KafkaError

from app.api import cursor as cursors
from app.runtime import progress
from app.capture import synth
from app.main import app, settings
from app.records import PLACEBO
from app.runtime.roundtrip import RoundTrip
from app.runtime.egress import poll
from app.runtime.keys import self_url
from app.runtime import status as status_registry
from app.topics import flows as flows_topic, heartbeats



class PlaceboState:
    """The placebo's uploads and what came back of each at egress."""
    def __init__(self):
        self.trip = RoundTrip()
        self.cursor: str | None = None
        self.last_ok: float | None = None
        self.seq = 0

    @staticmethod
    def grace_s() -> float:
        """How long after its upload a placebo record must be out: a live sensor's window closes when a later
        upload passes its end, or after 1.5 pauses of silence."""
        return settings.window_s + settings.lateness_s + \
            max(settings.idle_flush_s, 1.5 * settings.placebo_interval_s) + 15

    def status(self, now: float) -> dict:
        out = self.trip.status(now, self.grace_s())
        if out["passing"]:
            self.last_ok = now
        return {"source": settings.placebo_source, "sink": settings.placebo_sink, **out,
                "passing": out["passing"] if settings.placebo_sink else None,
                "last_passed_s_ago": None if self.last_ok is None else round(now - self.last_ok, 1)}


state = PlaceboState()
status_registry.register("placebo", lambda: state.status(time.time()))


if settings.placebo_source:
    @app.timer(interval=settings.placebo_interval_s, on_leader=True)
    async def placebo_source() -> None:
        state.seq += 1
        now = time.time()
        tr = synth.generate(seed=state.seq, conversations=10, packets=60, inside=10, outside=10,
                            start_s=int(now) - 2, duration_s=1.0)
        url, opts = self_url("/v1/captures")
        block = f"placebo-{int(now * 1000)}"
        opts["headers"].update({"X-Sensor": PLACEBO, "X-Block-Id": block,
                                "Content-Type": "application/vnd.tcpdump.pcap"})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                async with s.put(url, data=tr.pcap, **opts) as r:
                    if r.status in (200, 202):
                        state.trip.sent(now, block, int(tr.packets.sum()))
                        progress.mark("placebo-source", uploads=1)
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass


if settings.placebo_sink:
    @app.timer(interval=2.0, on_leader=True)
    async def placebo_sink() -> None:
        cur = None if state.cursor is None else cursors.decode(state.cursor)
        try:
            # it reads every record: 50,000 per 2 s keeps up with a bulk replay (a few per cent of a core)
            body = await poll(flows_topic.get_topic_name(), cur, 0.5, 50_000, from_end=state.cursor is None,
                              batched=True)
        except (TimeoutError, KafkaError, OSError):
            return  # an exception in a timer would stop the worker; the round trip just is not passing
        state.cursor = body["cursor"]
        mine = [r for r in body["records"] if r["flowsight"]["sensor"] == PLACEBO]
        for rec in mine:
            state.trip.seen(rec)
        if mine:
            progress.mark("placebo-sink", packets=sum(r["packetDeltaCount"] for r in mine))


_last_beat = 0.0


@app.timer(interval=5.0)
async def heartbeat() -> None:
    """One record per worker whenever any of its components made progress since the last one."""
    global _last_beat
    if not progress.changed_since(_last_beat):
        return
    _last_beat = time.time()
    me = f"{socket.gethostname()}:{app.conf.web_port}"
    try:
        await heartbeats.send(key=me.encode(), value={"worker": me, "at_ms": int(_last_beat * 1000),
                                                      "progress": progress.snapshot()})
    except (KafkaError, OSError):
        pass  # the next beat carries the same progress
