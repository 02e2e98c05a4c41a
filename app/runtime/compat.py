"""Every reach into the internals of Flowsight's dependencies, in one place.

Flowsight pins aiokafka, faust-streaming, mode-streaming and aiohttp
(pyproject.toml). What it needs of them that they do not offer publicly is here,
checked against the pinned versions when a worker starts (:func:`install` logs
what it installed and warns of a version it was not written for):

- **produce encoding** (a patch, off with ``FLOWSIGHT_COMPAT_PATCHES=false``):
  see below;
- **responses read with one copy** (a patch, off with the same setting): see below;
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

Responses read with one copy (a patch, off with the same setting). aiokafka
reads each connection through an ``asyncio.StreamReader`` of a 64 KiB limit: every
piece the socket gives (up to 256 KiB) is copied into the reader's buffer,
each response is copied out of it again, and past 128 KiB buffered the socket
is paused and resumed (two ``epoll_ctl`` calls and a loop turn each time). A
search reading a flows topic spent about a third of its CPU there
(bench/query.py). :class:`FrameReader` keeps the pieces as they came and joins
a response from them once (a response that came in one piece is handed over as
it is), and pauses the socket only past :data:`READ_LIMIT`. It is put in place
of each new connection's reader by aiokafka's protocol class, which is handed
that reader first.

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

import asyncio
import logging
import struct
from collections import deque
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


#: A connection's reader pauses its socket past twice this many bytes not yet read.
READ_LIMIT = 1 << 20


class FrameReader(asyncio.StreamReader):
    """aiokafka's connection reader, which it asks only for ``readexactly`` and ``at_eof``: the pieces the
    socket gave are kept as they came, and ``readexactly`` joins its bytes from them once."""

    _pieces: deque
    _held: int

    @classmethod
    def adopt(cls, reader: asyncio.StreamReader, limit: int) -> bool:
        """Make a new (empty) StreamReader one of these; False if it is not new."""
        if type(reader) is not asyncio.StreamReader or reader._buffer or reader._eof:
            return False
        reader.__class__ = cls
        reader._pieces, reader._held = deque(), 0   # type: ignore[attr-defined]
        reader._limit = max(reader._limit, limit)
        return True

    def feed_data(self, data) -> None:
        assert not self._eof, "feed_data after feed_eof"
        if not data:
            return
        self._pieces.append(data if isinstance(data, bytes) else bytes(data))
        self._held += len(data)
        self._wakeup_waiter()
        if self._transport is not None and not self._paused and self._held > 2 * self._limit:
            try:
                self._transport.pause_reading()
            except NotImplementedError:   # cannot be paused: everything is kept
                self._transport = None
            else:
                self._paused = True

    def at_eof(self) -> bool:
        return self._eof and not self._held

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        while self._held < n:
            if self._eof:
                partial = b"".join(self._pieces)
                self._pieces.clear()
                self._held = 0
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait_for_data("readexactly")
        # what is left of a piece after a response ends inside it is kept as a view of it, never copied; a
        # response that is one whole piece goes out as it came (joining one bytes object returns it)
        take, need = [], n
        while need:
            piece = self._pieces[0]
            if len(piece) <= need:
                take.append(self._pieces.popleft())
                need -= len(piece)
            else:
                view = memoryview(piece)
                take.append(view[:need])
                self._pieces[0] = view[need:]
                need = 0
        out = b"".join(take)
        self._held -= n
        if self._paused and self._held <= self._limit:
            self._paused = False
            self._transport.resume_reading()
        return out


def install_frame_reader() -> bool:
    """Give every new aiokafka connection a :class:`FrameReader`, through the protocol class it hands its
    reader to; False (nothing changed) if that class no longer takes the reader as its second argument.
    Idempotent."""
    from aiokafka import conn

    init = conn.AIOKafkaProtocol.__init__
    if getattr(init, "frame_reader", False):
        return True
    import inspect
    if list(inspect.signature(init).parameters)[:3] != ["self", "closed_fut", "args"]:
        return False

    def __init__(self, closed_fut, reader, *args, **kw):
        FrameReader.adopt(reader, READ_LIMIT)
        init(self, closed_fut, reader, *args, **kw)

    __init__.frame_reader = True   # type: ignore[attr-defined]
    conn.AIOKafkaProtocol.__init__ = __init__
    return True


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
    installed["frame_reader"] = install_frame_reader() if patches else False
    log.info("compat: produce requests v%s encoded with one copy of each batch; responses read with one copy: "
             "%s; hardened HTTP error pages: %s; skipped-offset guard: on", installed["produce_encoding"] or "-",
             "on" if installed["frame_reader"] else "off", "on" if patches else "off")
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
