"""Producer watchdog: says so, loudly and with the evidence, when a produce batch is stuck.

Faust's consumer commits only after the producer has flushed, so a batch that
never completes stops every stream of the worker. Every 10 seconds this looks at
the Kafka client's queue; a batch older than STUCK_S is reported once (with the
partition, its leader in the client's metadata, the sender's in-flight nodes and
muted partitions, and the stack of every task) and counted in /v1/health.
"""
from __future__ import annotations

import asyncio
import io
import logging
import time

from app.main import app
from app.runtime import compat
from app.runtime import status as status_registry

log = logging.getLogger(__name__)
STUCK_S = 60.0
state = {"stuck_batches": 0, "oldest_batch_s": 0.0, "reported": False, "kafka_ok_at": None}
#: Kafka counts as reachable while a metadata request succeeded this recently.
REACHABLE_S = 8.0


def kafka_producer():
    """The aiokafka producer under Faust's (None before it started)."""
    return compat.kafka_producer(app)


def status() -> dict:
    return {"stuck_batches": state["stuck_batches"], "oldest_batch_s": round(state["oldest_batch_s"], 1)}


def kafka_reachable() -> tuple[bool, float | None]:
    """Whether a broker answered a metadata request in the last REACHABLE_S seconds, and how long ago."""
    at = state["kafka_ok_at"]
    ago = None if at is None else time.monotonic() - at
    return ago is not None and ago < REACHABLE_S, None if ago is None else round(ago, 1)


@app.timer(interval=2.0)
async def kafka_probe() -> None:
    """Ask a broker for metadata every 2 s: a producer object that exists says nothing about a broker that
    is gone (health once said ok, with the only broker stopped for 100 s)."""
    p = kafka_producer()
    if p is None:
        return
    try:
        if await asyncio.wait_for(p.client.fetch_all_metadata(), 3.0) is not None:
            state["kafka_ok_at"] = time.monotonic()
    except Exception:  # any failure is "not reachable now"; an exception in a timer would stop the worker
        pass


@app.timer(interval=10.0)
async def producer_watchdog() -> None:
    p = kafka_producer()
    if p is None:
        return
    old = compat.pending_batches(p, time.monotonic())
    state["oldest_batch_s"] = max((age for _, age in old), default=0.0)
    stuck = [(tp, age) for tp, age in old if age > STUCK_S]
    state["stuck_batches"] = len(stuck)
    if not stuck:
        state["reported"] = False
        return
    if state["reported"]:
        return
    state["reported"] = True
    waits = compat.sender_state(p)
    cluster = p.client.cluster
    lines = [f"{tp.topic}:{tp.partition} age={age:.0f}s leader={cluster.leader_for_partition(tp)}"
             for tp, age in stuck]
    buf = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=buf)
    log.error("producer batches stuck for more than %.0f s: %s; in flight to nodes %s; muted %s; "
              "metadata update pending: %s\n%s", STUCK_S, "; ".join(lines), waits["in_flight"], waits["muted"],
              waits["metadata_pending"], buf.getvalue())


status_registry.register("producer", status)


def _kafka() -> dict:
    reachable, ago = kafka_reachable()
    return {"reachable": reachable, "last_answer_s_ago": ago}


status_registry.register("kafka", _kafka)
