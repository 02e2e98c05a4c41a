"""The analysts' ledger and the alerts' ids, heard by every worker.

Every worker (not only the leader) follows topic ``actions`` from its beginning with a consumer of its own
(no group): acknowledgements, suppressions and their lifting, and sign-outs, folded into an
:class:`app.api.ledger.Ledger`. So any worker says who acknowledged an alert and which suppressions are
active, and a worker that restarts learns every sign-out again from Kafka and voids the sessions issued
before it (app/api/auth.py). It also follows topic ``alerts`` the same way, for the ids of the alerts raised,
so that an acknowledgement of an alert that does not exist is refused (404).
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.api.ledger import Ledger
from app.main import app, settings
from app.runtime import status as status_registry
from app.topics import actions, alerts

log = logging.getLogger(__name__)
ledger = Ledger()
#: ids of the alerts raised (the newest KEEP_ALERT_IDS), and whether the alerts topic was read to its end once
alert_ids: OrderedDict[str, None] = OrderedDict()
KEEP_ALERT_IDS = 1_000_000
caught_up = {"actions": False, "alerts": False}


def apply(records: list[dict]) -> int:
    """Fold actions into the ledger; sign-outs among them are told to the keyring. How many sign-outs."""
    from app.runtime.keys import keyring
    n = 0
    for r in records:
        ledger.apply(r)
        if isinstance(r, dict) and r.get("action") == "logout" and isinstance(r.get("name"), str) \
                and isinstance(r.get("at_ms"), int):
            keyring.sign_out(r["name"], r["at_ms"])
            n += 1
    return n


def remember_alerts(records: list[dict]) -> None:
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("id"), str):
            alert_ids[r["id"]] = None
    while len(alert_ids) > KEEP_ALERT_IDS:
        alert_ids.popitem(last=False)


async def _follow(topic: str, partitions: int, name: str, handle) -> None:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", request_timeout_ms=15000, **settings.kafka_kwargs())
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            caught_up[name] = True   # nothing was ever written there
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=2000, max_records=1000)
            records = []
            for msgs in batch.values():
                for m in msgs:
                    try:
                        records.append(json.loads(m.value))
                    except ValueError:
                        continue
            handle(records)
            if not caught_up[name]:
                positions = [await consumer.position(tp) for tp in tps]
                caught_up[name] = all(at >= ends[tp] for at, tp in zip(positions, tps))
    finally:
        await consumer.stop()


async def _keep_following(topic: str, partitions: int, name: str, handle) -> None:
    while True:   # an exception in a task would stop the worker: start again after a pause
        try:
            await _follow(topic, partitions, name, handle)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("following %s failed (%r); again in 5 s", topic, exc)
            await asyncio.sleep(5)


def _apply_and_say(records: list[dict]) -> None:
    if apply(records):
        log.info("sign-outs applied; sessions issued before them are void")


@app.task
async def follow_actions() -> None:
    await _keep_following(actions.get_topic_name(), 1, "actions", _apply_and_say)


@app.task
async def follow_alerts() -> None:
    await _keep_following(alerts.get_topic_name(), settings.partitions, "alerts", remember_alerts)


status_registry.register("ledger", lambda: {"acks": len(ledger.acks), "suppressions": len(ledger.suppressions),
                                            "alerts_known": len(alert_ids), "caught_up": dict(caught_up)})
