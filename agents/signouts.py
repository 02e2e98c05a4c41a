"""Sign-outs, heard by every worker: a session cookie is void everywhere once its name signed out.

POST /v1/logout (web/dashboard.py) writes ``{"action": "logout", "name", "at_ms"}`` to topic ``actions``.
Every worker (not only the leader) follows that topic from its beginning, so a worker that restarts
learns every sign-out again from Kafka, and voids the sessions issued before it (app/auth.py).
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from app import cursor as cursors
from app.main import app, settings
from app.topics import actions

log = logging.getLogger(__name__)
_state: dict = {"cursor": None}


def apply(records: list[dict]) -> int:
    """Sign-outs among ``records`` (the actions topic), told to the keyring; how many."""
    from web.security import keyring
    n = 0
    for r in records:
        if isinstance(r, dict) and r.get("action") == "logout" and isinstance(r.get("name"), str) \
                and isinstance(r.get("at_ms"), int):
            keyring.sign_out(r["name"], r["at_ms"])
            n += 1
    return n


if settings.auth:
    @app.timer(interval=2.0)
    async def follow_signouts() -> None:
        from web.egress import poll
        cur = None if _state["cursor"] is None else cursors.decode(_state["cursor"])
        try:
            body = await poll(actions.get_topic_name(), cur, 0.2, 5000, from_end=False, partitions=1)
        except (KafkaError, OSError, asyncio.TimeoutError):
            return  # an exception in a timer would stop the worker; the next tick tries again
        _state["cursor"] = body["cursor"]
        if apply(body["records"]):
            log.info("sign-outs applied; sessions issued before them are void")
