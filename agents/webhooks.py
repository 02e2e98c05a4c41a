"""alert_webhooks: topic alerts -> each URL of FLOWSIGHT_ALERT_WEBHOOKS, as signed JSON (app/api/webhook.py).

One delivery per alert and URL across the workers (the agent's consumer group shares the alerts topic out),
at least once: an alert is marked done only after every URL took it (2xx), refused it for good (another
4xx), or failed ``FLOWSIGHT_WEBHOOK_ATTEMPTS`` times with backoff (1, 2, 4, ... s). A repeat after a crash
carries the same ``X-Flowsight-Delivery`` (the alert id), so a receiver can drop it.
"""
from __future__ import annotations

import asyncio
import logging

import aiohttp

from app.api import webhook
from app.main import app, settings
from app.runtime import progress
from app.topics import alerts

log = logging.getLogger(__name__)


def _key() -> bytes | None:
    if not settings.webhook_secret_file:
        return None
    with open(settings.webhook_secret_file, "rb") as f:
        return f.read().strip()


async def deliver(session: aiohttp.ClientSession, url: str, alert: dict, key: bytes | None) -> str:
    """POST one alert to one URL until it is taken or given up: ``sent``, ``refused`` or ``failed``."""
    body = webhook.payload(alert)
    headers = {"Content-Type": "application/json", "User-Agent": "flowsight-webhook",
               "X-Flowsight-Event": "alert", "X-Flowsight-Delivery": str(alert.get("id"))}
    if key is not None:
        headers["X-Flowsight-Signature"] = webhook.sign(key, body)
    where = url.split("?", 1)[0].rsplit("/", 1)[0]   # never log a chat system's secret path
    for attempt in range(1, settings.webhook_attempts + 1):
        try:
            async with session.post(url, data=body, headers=headers) as r:
                if 200 <= r.status < 300:
                    return "sent"
                if r.status not in webhook.RETRY_STATUSES:
                    log.warning("webhook %s/... refused alert %s: HTTP %d", where, alert.get("id"), r.status)
                    return "refused"
                why = f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = type(exc).__name__
        if attempt < settings.webhook_attempts:
            progress.mark("webhooks", retries=1)
            await asyncio.sleep(webhook.backoff_s(attempt))
    log.error("webhook %s/... gave up on alert %s after %d attempts (%s)", where, alert.get("id"),
              settings.webhook_attempts, why)
    return "failed"


if settings.webhook_urls:
    if not settings.webhook_secret_file:
        log.warning("FLOWSIGHT_ALERT_WEBHOOKS without FLOWSIGHT_WEBHOOK_SECRET_FILE: bodies go unsigned")

    @app.agent(alerts, concurrency=1)
    async def alert_webhooks(stream):
        key = _key()
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async for alert in stream:
                for url in settings.webhook_urls:
                    outcome = await deliver(session, url, alert, key)
                    progress.mark("webhooks", **{outcome: 1})
