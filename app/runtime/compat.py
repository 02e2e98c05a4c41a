"""Every reach into the internals of Flowsight's dependencies, in one place.

Flowsight pins aiokafka, faust-streaming, mode-streaming and aiohttp
(pyproject.toml). What it needs of them that they do not offer publicly is here,
checked against the pinned versions when a worker starts (:func:`install` logs
what it installed and warns of a version it was not written for):

- **produce encoding** (a patch, off with ``FLOWSIGHT_COMPAT_PATCHES=false``):
  see below;
- **hardened error pages** (a patch, off with the same setting): the aiohttp
  server's request handler class is swapped for one whose parser errors carry
  the security headers (:func:`hardened_runner`, put in place of Faust's runner by web/security.py);
- **read-only views** of aiokafka's producer (:func:`kafka_producer`,
  :func:`sender_alive`, :func:`pending_batches`, :func:`sender_state`) and of a
  consumer's metadata (:func:`partitions_of`), for health and the watchdog, and of
  a consumer's position without waiting (:func:`position`), for a search's next page;
- **skipped offsets**: faust-streaming 0.15.x acknowledges messages fetched
  under an older consumer generation without processing them; app/runtime/gaps.py
  finds and reads them again (a guard that costs nothing when nothing is
  skipped, so it is always on).

Produce requests encoded with one copy of their record batches, not eight.

aiokafka encodes a request by nesting ``b"".join()`` and ``+``: each level of a
produce request (batch, partition, partitions, topic, topics, request) builds
new bytes from the level below, so a record batch -- up to a chunk of 8 MiB for
pcap-chunks -- is copied about eight times before the connection adds the header
and the size: 3.8 ms for a request of one 8 MiB batch, where one copy takes 0.3
(``bench/produce_encode.py``), or about 0.45 CPU-seconds per GiB of uploads.
Streaming megabytes through memory is also what two workers on shared cores pay
for most (bench/README.md).

:func:`install` gives aiokafka's produce request structs of versions 3 to 8
(one schema, the versions aiokafka can send) an ``encode`` that collects the
small fields and the batches as they are and joins them once. The bytes are the
same as aiokafka's (tests/unit/test_kafka_wire.py compares them); other
requests and versions are left alone.
"""
from __future__ import annotations

import logging
import struct
from importlib import metadata

from aiokafka.protocol import produce
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import String

log = logging.getLogger(__name__)

#: The versions this module was written for (pyproject.toml pins them).
PINNED = {"aiokafka": "0.14.0", "faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiohttp": "3.14.5"}
#: What :func:`install` did, for health and tests.
installed: dict[str, object] = {}

#: the produce request versions with the schema :func:`encode_produce` writes
VERSIONS = (3, 4, 5, 6, 7, 8)
_STRING = String("utf-8")
_ACKS_TIMEOUT = struct.Struct(">hi")
_COUNT = struct.Struct(">i")
_PARTITION = struct.Struct(">ii")


def encode_produce(req) -> bytes:
    """A ProduceRequest v3-v8 as aiokafka's schema encodes it: transactional_id, required_acks,
    timeout, then topics ``[(topic, [(partition, record batch bytes)])]``."""
    pieces = [_STRING.encode(req.transactional_id), _ACKS_TIMEOUT.pack(req.required_acks, req.timeout),
              _COUNT.pack(len(req.topics))]
    for topic, partitions in req.topics:
        pieces += (_STRING.encode(topic), _COUNT.pack(len(partitions)))
        for partition, batch in partitions:
            if batch is None:
                pieces.append(_PARTITION.pack(partition, -1))
            else:
                pieces += (_PARTITION.pack(partition, len(batch)), batch)
    return b"".join(pieces)


def install_produce_encoding() -> list[int]:
    """Encode aiokafka's produce requests v3-v8 with :func:`encode_produce`, each version only if it
    encodes a probe request to the same bytes as aiokafka's own schema (a later aiokafka that changes
    a version keeps its own encoding). Idempotent. The versions it took."""
    probe = (None, -1, 30000, [("a", [(0, b"\x01\x02"), (5, None)]), ("bb", [])])
    taken = []
    for v in VERSIONS:
        cls = getattr(produce, f"ProduceRequest_v{v}", None)
        if cls is None:
            continue
        req = cls(*probe)
        if encode_produce(req) == Struct.encode(req):   # aiokafka's own encoding, as before install
            cls.encode = encode_produce
            taken.append(v)
    return taken


def version_mismatches() -> dict[str, tuple[str, str | None]]:
    """``package -> (pinned, installed)`` for every pinned package whose installed version differs."""
    out = {}
    for name, pinned in PINNED.items():
        try:
            have: str | None = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != pinned:
            out[name] = (pinned, have)
    return out


def install(patches: bool = True) -> dict[str, object]:
    """Check the pinned versions and install the patches (unless ``patches`` is false); logs what it did.
    Idempotent. Returns what it installed (also in :data:`installed`)."""
    for name, (pinned, have) in version_mismatches().items():
        log.warning("compat: %s %s is installed, this code was written for %s; the workarounds of its internals "
                    "check what they touch, but test this combination", name, have, pinned)
    installed.clear()
    installed["patches"] = patches
    installed["produce_encoding"] = install_produce_encoding() if patches else []
    installed["hardened_errors"] = patches
    log.info("compat: produce requests v%s encoded with one copy of each batch; hardened HTTP error pages: %s; "
             "skipped-offset guard: on", installed["produce_encoding"] or "-", "on" if patches else "off")
    return dict(installed)


# ---------------------------------------------------------------------------------------------------------
# aiohttp: hardened answers to requests its parser refuses

def hardened_runner(harden):
    """An aiohttp ``AppRunner`` whose connections answer a request aiohttp cannot parse (past every
    middleware and signal) with ``harden(response)`` applied, saying what was wrong without echoing what the
    client sent. It overrides ``AppRunner._make_server`` and builds the handler from the server's ``_loop``
    and ``_kwargs``; web/security.py puts it in place of Faust's ``_runner``."""
    from aiohttp import web, web_protocol, web_server
    from aiohttp.web_runner import AppRunner

    class ErrorsHardened(web_protocol.RequestHandler):
        """A connection's handler whose parser errors are hardened."""

        def handle_error(self, request, status=500, exc=None, message=None):
            response = super().handle_error(request, status, exc, message)
            if isinstance(response, web.Response) and 400 <= response.status < 500:
                response.text = f"{response.status} {response.reason}: the request is malformed"
            return harden(response)

    class Server(web_server.Server):
        """aiohttp's server, making hardened handlers."""

        def __call__(self) -> web_protocol.RequestHandler:
            return ErrorsHardened(self, loop=self._loop, **self._kwargs)

    class Runner(AppRunner):
        """aiohttp's runner, with the hardened server."""

        async def _make_server(self) -> web_server.Server:
            server = await super()._make_server()
            server.__class__ = Server   # the same server; only the handler class of its connections differs
            return server

    return Runner


# ---------------------------------------------------------------------------------------------------------
# Read-only views of aiokafka's producer and consumer internals

def kafka_producer(faust_app):
    """The aiokafka producer under Faust's (None before it started)."""
    p = getattr(faust_app.producer, "_producer", None)
    return p if p is not None and hasattr(p, "_message_accumulator") else None


def producer_client(faust_app):
    """The Kafka client of Faust's producer, started if it was not (for the topics its metadata tracks)."""
    return faust_app.producer._ensure_producer().client


def sender_alive(producer) -> bool:
    """Whether the producer's sender task runs."""
    task = getattr(getattr(producer, "_sender", None), "_sender_task", None)
    return task is not None and not task.done()


def pending_batches(producer, now: float) -> list[tuple[object, float]]:
    """``(topic partition, age in seconds)`` of the oldest batch of every partition with batches waiting."""
    acc = getattr(producer, "_message_accumulator", None)
    batches = getattr(acc, "_batches", None) or {}
    return [(tp, now - dq[0]._ctime) for tp, dq in list(batches.items()) if dq]


def sender_state(producer) -> dict[str, object]:
    """What the producer's sender waits on: nodes with requests in flight, muted partitions, and whether a
    metadata update is pending (for a log line when batches are stuck)."""
    sender = getattr(producer, "_sender", None)
    return {"in_flight": sorted(getattr(sender, "_in_flight", ()) or ()),
            "muted": sorted(f"{tp.topic}:{tp.partition}" for tp in getattr(sender, "_muted_partitions", ()) or ()),
            "metadata_pending": getattr(producer.client, "_md_update_fut", None) is not None}


async def partitions_of(consumer, topic: str):
    """A topic's partitions as a consumer's client knows them after a forced metadata update (None: no
    such topic)."""
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer.topics()   # fetch metadata once, then ask again
        await consumer._client.force_metadata_update()
        parts = consumer._client.cluster.partitions_for_topic(topic)
    return parts


def position(consumer, tp) -> int | None:
    """Where an assigned partition of a consumer stands, if it knows (aiokafka's ``position`` waits and may
    ask the broker); None otherwise."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
    except (AttributeError, KeyError):
        return None
    return state.position if state is not None and state.has_valid_position else None
