"""Send and wait for Kafka's acknowledgement, again and again until it comes.

An agent marks its input done only after Kafka acknowledged its output. If a
send fails (a leader moved, too few in-sync replicas, a request timed out), the
agent must neither crash (Faust would stop it for good) nor move on: it sends
the failed messages again, with backoff. Every message is deterministic (same
key, same content, same flowId or id), so a repeat is harmless downstream.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from app.runtime import progress

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 10.0


async def send_all(sends: list[tuple], what: str) -> list:
    """``sends``: (topic, key bytes, value, partition or None[, headers[, timestamp in s]]). Returns when every
    one is acknowledged: what Kafka acknowledged (its record metadata: partition, offset), in the order of
    ``sends``."""
    pending = list(range(len(sends)))
    acked: dict[int, object] = {}
    attempt = 0
    while pending:
        futures = []
        failed = []
        for i in pending:
            topic, key, value, partition, *rest = sends[i]
            extra = {k: v for k, v in zip(("headers", "timestamp"), rest) if v is not None}
            try:
                futures.append((i, await topic.send(key=key, value=value, partition=partition, **extra)))
            except KafkaError as exc:
                failed.append((i, exc))
        for i, fut in futures:
            try:
                acked[i] = await fut
            except (TimeoutError, KafkaError) as exc:
                failed.append((i, exc))
        if not failed:
            return [acked.get(i) for i in range(len(sends))]
        pending = [i for i, _ in failed]
        attempt += 1
        delay = min(0.5 * 2 ** attempt, MAX_BACKOFF_S)
        log.warning("%s: %d of %d sends failed (%r); sending them again in %.1f s",
                    what, len(pending), len(sends), failed[0][1], delay)
        progress.mark("send_retries", messages=len(pending))
        await asyncio.sleep(delay)
