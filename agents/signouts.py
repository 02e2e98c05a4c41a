"""Sign-outs, heard by every worker: a session cookie is void everywhere once its name signed out.

POST /v1/logout (web/dashboard.py) writes ``{"action": "logout", "name", "at_ms"}`` to topic ``actions``.
Every worker (not only the leader) follows that topic from its beginning with a consumer of its own (no
group), so a worker that restarts learns every sign-out again from Kafka, and voids the sessions issued
before it (app/api/auth.py).
"""
from __future__ import annotations

import asyncio
import json
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.main import app, settings
from app.topics import actions

log = logging.getLogger(__name__)


def apply(records: list[dict]) -> int:
    """Sign-outs among ``records`` (the actions topic), told to the keyring; how many."""
    from app.runtime.keys import keyring
    n = 0
    for r in records:
        if isinstance(r, dict) and r.get("action") == "logout" and isinstance(r.get("name"), str) \
                and isinstance(r.get("at_ms"), int):
            keyring.sign_out(r["name"], r["at_ms"])
            n += 1
    return n


async def _follow() -> None:
    tp = TopicPartition(actions.get_topic_name(), 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", request_timeout_ms=15000, **settings.kafka_kwargs())
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1000)
            records = []
            for m in batch.get(tp, []):
                try:
                    records.append(json.loads(m.value))
                except ValueError:
                    continue
            if apply(records):
                log.info("sign-outs applied; sessions issued before them are void")
    finally:
        await consumer.stop()


if settings.auth:
    @app.task
    async def follow_signouts() -> None:
        while True:   # an exception in a task would stop the worker: start again after a pause
            try:
                await _follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("following sign-outs failed (%r); again in 5 s", exc)
                await asyncio.sleep(5)
