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
from app.topics import flows as _flows_topic
from app.query.filter import FilterError
from app.query.top import METRICS, BY, Series, Top, Visit
from app.query.top import Query
from app.runtime.egress import GRACE_S, answer_body, bounded_poll, poll, search  # noqa: F401  (the readers the views share)

FLOWS_TOPIC = _flows_topic.get_topic_name()
MAX_TIMEOUT_S = 60
DEFAULT_TIMEOUT_S = 30
MAX_RECORDS = 5000


class PollError(Exception):
    """A long poll refused: its HTTP status and the reason (and more fields of the answer)."""

    def __init__(self, status: int, message: str, headers: dict | None = None, **extra):
        self.status, self.message, self.headers, self.extra = status, message, headers, extra

    def answer(self, view: View):
        return view.json({"error": self.message, **self.extra}, status=self.status, headers=self.headers)


def ensure_slot(what: str) -> None:
    """A 503 (retry soon) when this worker holds all the long polls and searches it may."""
    if open_polls.locked():
        raise PollError(503, f"this worker holds {settings.max_long_polls} long polls and searches already; "
                             f"retry {what}", {"Retry-After": "2"})


def unavailable(exc: Exception, what: str) -> PollError:
    return PollError(503, f"Kafka is unavailable ({type(exc).__name__}); retry {what}", {"Retry-After": "5"})


#: The query parameters of a search of the flows topic.
SEARCH_PARAMS = ("since", "until", "filter")


def parse_search(query) -> Query:
    """``since``, ``until`` (capture time: ms since the epoch or RFC 3339) and ``filter`` (nfdump's syntax)."""
    try:
        return Query.parse(query.get("filter"), query.get("since"), query.get("until"), settings.window_ms)
    except FilterError as exc:
        raise PollError(400, str(exc), position=exc.position) from None
    except ValueError as exc:
        raise PollError(400, str(exc)) from None


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
        """GET on one egress topic: records after a cursor, waiting up to ``timeout`` for new ones. On the flows
        topic, ``since``/``until``/``filter`` make it a search (:func:`app.runtime.egress.search`)."""

        async def get(self, request):
            try:
                cur, timeout, limit, from_end = parse_query(request.query, partitions)
                searching = batched and any(request.query.get(k) for k in SEARCH_PARAMS)
                q = parse_search(request.query) if searching else None
                ensure_slot("with the same cursor")
                async with open_polls:
                    if q is not None:
                        # a range that ends is read to its end (then "complete"); an open one is a filtered tail
                        bounded = q.until_ms is not None
                        budget = settings.query_max_s if bounded else min(timeout, settings.query_max_s)
                        found = await asyncio.wait_for(search(topic, cur, q, limit, budget, bounded, partitions,
                                                              raw=True), budget + GRACE_S)
                        for internal in ("ends", "count"):
                            found.pop(internal, None)
                        return self.bytes(answer_body(found), content_type="application/json")
                    timeout = min(timeout, settings.long_poll_max_s)
                    answer = await bounded_poll(topic, cur, timeout, limit, from_end, partitions, batched, batched)
                    if not batched:
                        return self.json(answer)
                    # the flows' records go out as the JSON text they are stored as
                    return self.bytes(answer_body(answer), content_type="application/json")
            except PollError as exc:
                return exc.answer(self)
            except (TimeoutError, KafkaError) as exc:
                return unavailable(exc, "with the same cursor").answer(self)

    Poll.__name__ = f"Poll_{topic.replace('-', '_')}"
    return Poll


class TopView(View):
    """GET /v1/top: the top N of an element (``by``) by ``metric`` over a range of capture time and a filter,
    as ``nfdump -s`` gives it, and, with ``bucket`` (seconds), flows, packets and bytes over time."""

    async def get(self, request):
        qs = request.query
        try:
            by, metric = qs.get("by", "srcip"), qs.get("metric", "bytes")
            if by not in BY:
                raise PollError(400, f"by must be one of {', '.join(BY)}")
            if metric not in METRICS:
                raise PollError(400, f"metric must be one of {', '.join(METRICS)}")
            try:
                n, bucket_s = int(qs.get("n", 10)), int(qs.get("bucket", 0))
            except ValueError:
                raise PollError(400, "n and bucket must be whole numbers") from None
            if not 1 <= n <= 1000 or not 0 <= bucket_s <= 86400 * 366:
                raise PollError(400, "n must be from 1 to 1000, bucket from 0 to 31622400 seconds")
            q = parse_search(qs)
            ensure_slot("later")
            top, series = Top(by), Series(bucket_s * 1000) if bucket_s else None
            visit = Visit(top, series)
            async with open_polls:
                budget = settings.query_max_s
                done = await asyncio.wait_for(search(FLOWS_TOPIC, None, q, 1, budget, True, visit=visit),
                                              budget + GRACE_S)
            out = {"by": by, "metric": metric, "since": q.since_ms, "until": q.until_ms, "records": top.records,
                   "scanned": done["scanned"], "fetched": done["fetched"], "complete": done["complete"],
                   "top": top.result(n, metric)}
            if series is not None:
                out["series"] = {"bucketMs": bucket_s * 1000, "columns": ["start", "flows", "packets", "bytes"],
                                 "rows": series.result()}
            return self.json(out)
        except PollError as exc:
            return exc.answer(self)
        except (TimeoutError, KafkaError) as exc:
            return unavailable(exc, "later").answer(self)
