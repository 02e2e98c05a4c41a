"""GET /v1/flows: long poll over a Kafka topic with a resumable cursor.

    curl 'http://localhost:6066/v1/flows?timeout=30'              # from the start of the topic
    curl 'http://localhost:6066/v1/flows?cursor=C&timeout=30'     # resume after the last answer
    curl 'http://localhost:6066/v1/flows?from=end&timeout=30'     # only records that arrive from now on

The answer is ``{"records": [...], "cursor": "..."}`` at once when records lie
past the cursor, else after up to ``timeout`` seconds (default 30, max 60). The
cursor holds Kafka offsets, so any worker can answer and a client that resends
its last cursor after a restart neither loses nor repeats records. The flows topic
carries records in batches; the cursor can point into one, so ``limit`` is exact.
"""
from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError
from faust.web import View

from app.api import cursor as cursors
from app.main import settings
from app.runtime.egress import GRACE_S, bounded_poll, poll  # noqa: F401  (the reader the views share)

MAX_TIMEOUT_S = 60
DEFAULT_TIMEOUT_S = 30
MAX_RECORDS = 5000


class PollError(Exception):
    """A long poll refused: its HTTP status and the reason."""
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def parse_query(query, partitions: int | None = None) -> tuple[dict[int, int] | None, float, int, bool]:
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT_S))
        limit = int(query.get("limit", MAX_RECORDS))
    except (ValueError, OverflowError):
        raise PollError(400, "timeout and limit must be numbers") from None
    if not 0 <= timeout <= MAX_TIMEOUT_S:
        raise PollError(400, f"timeout must be from 0 to {MAX_TIMEOUT_S} seconds")
    if not 1 <= limit <= MAX_RECORDS:
        raise PollError(400, f"limit must be from 1 to {MAX_RECORDS}")
    start = query.get("from", "beginning")
    if start not in ("beginning", "end"):
        raise PollError(400, "from must be 'beginning' or 'end'")
    cur = None
    if query.get("cursor"):
        try:
            cur = cursors.decode(query["cursor"], partitions or settings.partitions)
        except cursors.CursorError as exc:
            raise PollError(400, str(exc)) from None
    return cur, timeout, limit, start == "end"


#: Long polls this worker holds open now (each one a Kafka consumer and a socket).
open_polls = asyncio.Semaphore(settings.max_long_polls)


def poll_view(topic: str, partitions: int | None = None, batched: bool = False) -> type[View]:
    class Poll(View):
        """GET on one egress topic: records after a cursor, waiting up to ``timeout`` for new ones."""
        async def get(self, request):
            try:
                cur, timeout, limit, from_end = parse_query(request.query, partitions)
                if open_polls.locked():
                    return self.json({"error": f"this worker holds {settings.max_long_polls} long polls already; "
                                      "retry with the same cursor"}, status=503, headers={"Retry-After": "2"})
                async with open_polls:
                    timeout = min(timeout, settings.long_poll_max_s)
                    return self.json(await bounded_poll(topic, cur, timeout, limit, from_end, partitions, batched))
            except PollError as exc:
                return self.json({"error": exc.message}, status=exc.status)
            except (TimeoutError, KafkaError) as exc:
                return self.json({"error": f"Kafka is unavailable ({type(exc).__name__}); retry with the same cursor"},
                                 status=503, headers={"Retry-After": "5"})

    Poll.__name__ = f"Poll_{topic.replace('-', '_')}"
    return Poll
