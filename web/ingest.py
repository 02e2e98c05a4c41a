"""POST /v1/captures: take a pcap or pcapng upload and produce it to pcap-chunks.

The body is streamed to a spool file (never whole in memory, no 1 MiB limit),
checked, cut into deterministic chunks at packet boundaries and produced with
acks=all. Only then the answer is 202. The spool file is removed either way.

    curl -T pcap.pcap -H 'X-Sensor: tap1' http://localhost:6066/v1/captures
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import math
import mmap
import os
import tempfile

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
import numpy as np
from aiokafka.errors import KafkaError

from faust.web import View

from app.capture import pcap
from app.flows import decode
from app.records import NAME, ChunkHeaders
from app.runtime import compat, progress
from app.flows import ranges
from app.main import app, settings
from app.topics import block_key, chunk_partition, flow_parts, pcap_chunks
from tables import blocks
from web import security  # attributes used at call time: security imports the app, which imports us

log = logging.getLogger(__name__)

CONTENT_TYPES = {"application/octet-stream", "application/vnd.tcpdump.pcap", "application/x-pcapng",
                 "application/vnd.tcpdump.pcapng"}
#: Chunks in flight before ingest waits for their acks: about 32 MiB in all on this worker, whatever the
#: number of uploads. It bounds the worker's memory and the size of a produce request: a request carries
#: a batch per partition, and a block's chunks go to every partition (the broker reads a request whole).
IN_FLIGHT = max(2, (32 << 20) // settings.chunk_bytes)
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def in_flight() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots.clear()
        _slots[loop] = asyncio.Semaphore(IN_FLIGHT)
    return _slots[loop]


class UploadError(Exception):
    """An upload refused: its HTTP status, the reason and extra fields of the answer."""
    def __init__(self, status: int, message: str, **extra):
        self.status, self.message, self.extra = status, message, extra
        super().__init__(message)


def spool_dir() -> str:
    path = settings.spool_dir or os.path.join(settings.datadir, "spool")
    os.makedirs(path, exist_ok=True)
    return path


def check_space(path: str, incoming: int) -> None:
    """507 before anything is accepted when the spool volume would keep less than the reserve."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free - incoming < settings.spool_min_free_bytes:
        raise UploadError(507, f"the spool volume is nearly full ({free} bytes free, {incoming} coming, "
                          f"{settings.spool_min_free_bytes} kept free); retry later or on another worker")


#: Uploads this worker is receiving now (each holds a spool file and, while producing, a chunk window).
uploads = asyncio.Semaphore(settings.max_concurrent_uploads)
#: Uploads this worker is receiving now, per sensor: one sensor (four slow uploads, say) cannot take every slot.
receiving: dict[str, int] = {}
#: Seconds an upload may run before its average rate is checked against min_upload_rate (30 s by default).
RATE_GRACE_S = 1.5 * settings.client_idle_timeout_s


async def receive(request, out, sensor: str, spool: str | None = None,
                  arriving: Arriving | None = None) -> tuple[int, str]:
    """Stream the body to ``out``: (size, sha256), or UploadError (cut off, too big, too slow, disk full).
    ``spool``: the spool folder, whose volume keeps ``spool_min_free_bytes`` free while the body is written
    (a body of undeclared length, chunked, is checked as it comes); ``arriving`` is fed the first bytes."""
    digest = hashlib.sha256()
    size = 0
    room = 0        # bytes that may still be written before the volume is looked at again
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        while True:
            try:
                piece = await asyncio.wait_for(request.content.readany(), settings.client_idle_timeout_s)
            except TimeoutError:
                raise UploadError(408, f"nothing received for {settings.client_idle_timeout_s} s after {size} "
                                  "bytes; send the upload again") from None
            if not piece:
                return size, digest.hexdigest()
            size += len(piece)
            if size > settings.max_upload_bytes:
                raise UploadError(413, f"body is over the limit of {settings.max_upload_bytes} bytes")
            if spool is not None and len(piece) > room:
                st = os.statvfs(spool)
                room = st.f_bavail * st.f_frsize - settings.spool_min_free_bytes
                if len(piece) > room:
                    raise UploadError(507, f"the spool volume is nearly full after {size - len(piece)} bytes of "
                                      f"this upload ({settings.spool_min_free_bytes} bytes are kept free); retry "
                                      "later or on another worker")
            room -= len(piece)
            digest.update(piece)
            out.write(piece)
            if arriving is not None:
                arriving.feed(piece)
            elapsed = loop.time() - t0
            if elapsed > RATE_GRACE_S and size < settings.min_upload_rate * elapsed:
                raise UploadError(408, f"upload too slow: {size} bytes in {elapsed:.0f} s, under "
                                  f"{settings.min_upload_rate} bytes/s; send it again")
    except (ConnectionError, aiohttp.ClientPayloadError, HttpProcessingError):
        log.warning("upload from %s cut off after %d bytes; nothing accepted", sensor, size, extra={"sensor": sensor})
        raise UploadError(400, f"the body was cut off after {size} bytes; send it again") from None


def check_capture(buf) -> pcap.Index:
    """Index a spooled capture, or raise UploadError saying what is wrong with it."""
    try:
        idx = pcap.index(buf)
    except pcap.CaptureError as exc:
        raise UploadError(400, f"not a readable capture: {exc}", kind=exc.kind) from None
    # a capture cut inside its last record (a capture server stopped mid-write) keeps its whole packets, as
    # pcap2flows and tshark read them; any other damage is refused whole
    if idx.error is not None and not (idx.error.kind == "truncated" and idx.packets):
        raise UploadError(400, f"damaged capture: {idx.error}", kind=idx.error.kind,
                          readable_packets=idx.packets)
    used = set(idx.if_linktype[idx.iface].tolist()) if idx.packets else set(idx.if_linktype.tolist())
    if used and not used & decode.SUPPORTED_LINKTYPES:
        raise UploadError(415, f"link type {sorted(used)} is not supported; supported: "
                          f"{sorted(decode.SUPPORTED_LINKTYPES)}", kind="unsupported-linktype")
    return idx


_orphans: set[asyncio.Task] = set()


def _orphan_done(task: asyncio.Task) -> None:
    _orphans.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.info("an upload's sends in the background finally failed: %r", task.exception())


async def to_every_partition(key: str, msg: bytes) -> None:
    """Send one message to every flow-parts partition (each partition's sensor clock must hear it)."""
    await asyncio.gather(*[await flow_parts.send(key=key.encode(), value=msg, partition=p)
                           for p in range(settings.partitions)])


async def announce(plan: pcap.Chunks, block_id: str, sensor: str) -> None:
    """Tell every flow-parts partition that a block is coming, and from what capture time, before any of its
    chunks can reach them: its sensor's clock waits for it (app/flows/clock.py), so a newer upload decoded first
    (on another worker, say) does not make this one late. A shipper's files come one after another, and
    each is decoded wherever its key falls: one chunk or many, each is announced."""
    if not len(plan) or not len(plan.idx.ts_ns):
        return
    msg = json.dumps({"announce": True, "block": block_id, "sensor": sensor, "chunks": len(plan),
                      "top": int(plan.idx.ts_ns.min()) // 1_000_000, "parts": []}).encode()
    await to_every_partition(block_id, msg)


#: An upload's first bytes, read for its first capture time while the rest is still arriving.
HEAD_BYTES = 256 << 10
#: While an upload arrives, its hold is announced again this often (a hold not heard of for the flows
#: agent's ``hold_ms``, a minute, lapses: an upload whose worker died stops holding its sensor's clock).
TOUCH_S = 15.0


class Arriving:
    """An upload still being received holds its sensor's clock at its first capture time.

    A shipper sends several files at once. Without this, the file whose body ends first is
    accepted, announced and decoded first; a file still arriving with older packets is then
    late where it is older, though it was sent at the same moment. So once the first
    :data:`HEAD_BYTES` are in, every flow-parts partition hears of the upload under a name no
    chunk has (``receiving/<id>``: a block id cannot contain '/'), from its first packet's
    time, and again every :data:`TOUCH_S` seconds; when the upload ends, accepted (its block's
    own announce has gone out by then) or refused, a ``release`` ends the hold. A release
    that is lost only makes the hold lapse after a minute."""

    def __init__(self, sensor: str):
        self.sensor = sensor
        self.name = f"receiving/{os.urandom(8).hex()}"
        self.head = bytearray()
        self.task: asyncio.Task | None = None
        self.ended = asyncio.Event()

    def feed(self, piece: bytes) -> None:
        if self.head is None or self.task is not None:
            return
        self.head += piece[:HEAD_BYTES - len(self.head)]
        if len(self.head) < HEAD_BYTES:
            return
        head, self.head = bytes(self.head), None
        try:
            ts = pcap.index(head).ts_ns
        except pcap.CaptureError:
            return                      # refused once the body is in, with the reason
        if len(ts):
            self.task = asyncio.ensure_future(self._hold(int(ts.min()) // 1_000_000))

    def _message(self, **extra) -> bytes:
        return json.dumps({"announce": True, "block": self.name, "sensor": self.sensor, "chunks": 1,
                           "parts": [], **extra}).encode()

    async def _hold(self, top_ms: int) -> None:
        """Announce until the upload ends, then release. Never cancelled in the middle of its sends: a send
        cancelled there would be lost half-way over the partitions, and the release goes after the last
        announce on every partition."""
        msg = self._message(top=top_ms)
        while not self.ended.is_set():
            try:
                await to_every_partition(self.name, msg)
            except (KafkaError, ConnectionError) as exc:   # the upload goes on; its block's announce still holds
                log.info("announcing upload %s of %s failed: %r", self.name, self.sensor, exc)
            try:
                await asyncio.wait_for(self.ended.wait(), TOUCH_S)
            except TimeoutError:
                pass
        await to_every_partition(self.name, self._message(release=True))

    def end(self) -> None:
        """The upload is over: stop announcing it, and release its hold (in the background)."""
        self.head = None
        self.ended.set()
        if self.task is None:
            return
        _orphans.add(self.task)
        self.task.add_done_callback(_orphan_done)
        self.task = None


def block_chunk_bytes(known: dict | None, block_id: str) -> int:
    """The chunk size to cut a block with: this worker's, or for a block seen before the one it was first
    cut with (chunk indexes must name the same packets again, or a retry would count them twice)."""
    first = (known or {}).get("chunk_bytes") or settings.chunk_bytes
    if first > settings.chunk_bytes + (1 << 19):  # this worker's producer takes chunk_bytes + 1 MiB
        raise UploadError(409, f"block id {block_id} was first cut into chunks of {first} bytes, more than "
                          f"this worker's FLOWSIGHT_CHUNK_BYTES ({settings.chunk_bytes}) can send; send it to a "
                          "worker with the larger setting, or under a new X-Block-Id")
    return first


class Spool:
    """A spooled upload mapped read-only. The pages read so far count in the worker's resident memory
    until :meth:`release` hands them back (they stay in the page cache): a worker receiving several
    large uploads at once would otherwise look as large as they are."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.buf = np.frombuffer(self.map, dtype=np.uint8)

    def release(self, start: int = 0, stop: int | None = None) -> None:
        start -= start % mmap.PAGESIZE
        stop = len(self.map) if stop is None else min(stop, len(self.map))
        if stop > start:
            self.map.madvise(mmap.MADV_DONTNEED, start, stop - start)


async def produce(plan: pcap.Chunks, block_id: str, sensor: str, sha256: str,
                  release=lambda start, stop: None) -> int:
    """Produce a block's chunks (its announce first), each to its lane's partition (agents/decode.py),
    while fewer than IN_FLIGHT of this worker's chunks await acks; ``release(start, stop)`` is told which
    bytes of the upload each chunk has copied."""
    await announce(plan, block_id, sensor)
    slots = in_flight()
    pending = []
    count = 0
    bkey = block_key(sensor, block_id)
    for chunk in plan:
        headers = ChunkHeaders(block_id, sensor, chunk.index, len(plan), sha256, plan.chunk_bytes).encode()
        await slots.acquire()
        try:
            fut = await pcap_chunks.send(key=bkey.encode(), value=chunk.data, headers=headers,
                                         partition=chunk_partition(bkey, chunk.index, settings.partitions))
        except BaseException:
            slots.release()
            raise
        fut.add_done_callback(lambda _: slots.release())
        for f in [f for f in pending if f.done()]:  # an acked chunk's bytes are not kept until the end
            f.result()  # a failed send fails the upload (503): the retry sends the block again
            pending.remove(f)
        pending.append(fut)
        count += 1
        release(*chunk.span)
    await asyncio.gather(*pending)
    return count


async def block_state(key: str) -> dict | None:
    """What the worker owning this block knows of it (asked through /v1/blocks, which routes)."""
    url, opts = security.self_url(f"/v1/blocks/{key}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        try:
            async with s.get(url, **opts) as r:
                if r.status == 404:
                    return None
                if r.status == 200:
                    return await r.json()
                if r.status in (401, 403):
                    log.error("the worker owning block %s refused this worker's request (%d): every worker "
                              "needs the same FLOWSIGHT_CLUSTER_SECRET_FILE", key, r.status)
        except (TimeoutError, aiohttp.ClientError):
            pass
    raise UploadError(503, "the worker that owns this block id is not reachable; retry the same upload later")


class Blocks(View):
    """GET /v1/blocks/{sensor}~{block_id}: the state of an uploaded block, from whichever worker owns it."""

    async def get(self, request, key: str):
        try:
            # routing hashes the key over the changelog's partitions: the producer must know them,
            # and it does not until it has sent to that topic or asked for it
            producer = compat.kafka_producer(app)
            if producer is None:
                raise ConnectionError("the producer has not started")
            await producer.partitions_for(blocks.changelog_topic.get_topic_name())
            return await self._routed(request, key=key)
        except (TimeoutError, ConnectionError, aiohttp.ClientError, KafkaError):
            # the owner of this key is gone (a rebalance is coming): the uploader retries
            return self.json({"error": "the worker owning this block is not reachable"}, status=503,
                             headers={"Retry-After": "5"})

    @app.table_route(table=blocks, match_info="key")
    async def _routed(self, request, key: str):
        row = blocks.get(key)
        if row is None:
            return self.json({"error": f"no block {key}"}, status=404)
        return self.json(row)


def upload_sensor(request) -> str:
    """The sensor an upload counts under: the token's own, or the one named in X-Sensor if it may."""
    named = request.headers.get("X-Sensor")
    if named is not None and not NAME.match(named):
        raise UploadError(400, "X-Sensor must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    p = security.principal(request)
    if p is None:  # authentication off
        return named or "default"
    own = sorted(p.sensors - {"*"})
    if named is None:
        if len(own) == 1:
            return own[0]
        if not own:  # a relay token (or a worker's own request) names no sensor: the default one
            return "default"
        raise UploadError(400, "this token may upload for several sensors: name one in X-Sensor")
    if not p.may_upload_as(named):
        raise UploadError(403, f"this token may not upload as sensor {named!r}")
    return named


class Captures(View):
    """POST or PUT /v1/captures: a pcap or pcapng upload, spooled, cut into chunks and produced to Kafka."""
    async def post(self, request):
        try:
            sensor = upload_sensor(request)
            wait = security.upload_rate.take(sensor)
            if wait:
                raise UploadError(429, f"sensor {sensor} is over its {settings.sensor_uploads_per_min} uploads "
                                  "per minute; retry later", retry_after=wait)
            if receiving.get(sensor, 0) >= settings.sensor_max_concurrent_uploads:
                raise UploadError(503, f"this worker is receiving {settings.sensor_max_concurrent_uploads} uploads "
                                  f"of sensor {sensor} already; retry later")
            if uploads.locked():
                raise UploadError(503, f"this worker is receiving {settings.max_concurrent_uploads} uploads "
                                  "already; retry later")
            receiving[sensor] = receiving.get(sensor, 0) + 1
            try:
                async with uploads:
                    status, body = await self._accept(request, sensor)
            finally:
                receiving[sensor] -= 1
                if not receiving[sensor]:
                    del receiving[sensor]
            return self.json(body, status=status)
        except UploadError as exc:
            progress.mark("ingest", **{f"rejected_{exc.status}": 1})
            extra = dict(exc.extra)
            headers = None
            if exc.status in (429, 503, 507):
                headers = {"Retry-After": str(max(1, math.ceil(extra.pop("retry_after", 5))))}
            if exc.status in (408, 413, 507) and request.content.at_eof() is False:
                headers = {**(headers or {}), "Connection": "close"}  # do not read the rest of the body
            return self.json({"error": exc.message, **extra}, status=exc.status, headers=headers)

    #: ``curl -T`` uploads with PUT; both verbs do the same, idempotently by block id.
    async def put(self, request):
        return await self.post(request)

    async def _accept(self, request, sensor: str) -> tuple[int, dict]:
        ctype = (request.content_type or "").lower()
        if ctype not in CONTENT_TYPES:
            raise UploadError(415, f"Content-Type {ctype or '(none)'} is not accepted; send the capture as "
                              "application/octet-stream or application/vnd.tcpdump.pcap")
        block_id = request.headers.get("X-Block-Id")
        if block_id is not None and not NAME.match(block_id):
            raise UploadError(400, "X-Block-Id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
        if request.content_length is not None and request.content_length > settings.max_upload_bytes:
            raise UploadError(413, f"body of {request.content_length} bytes is over the limit of "
                              f"{settings.max_upload_bytes} bytes")
        check_space(spool_dir(), request.content_length or 0)
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=".pcap", dir=spool_dir())
        arriving = Arriving(sensor)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    size, sha = await receive(request, out, sensor, spool_dir(), arriving)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UploadError(507, "the spool volume filled up during the upload; retry later") from None
                raise
            if size == 0:
                raise UploadError(400, "the body is empty; send a pcap or pcapng file", kind="empty")
            block_id = block_id or sha
            spool = Spool(path)
            loop = asyncio.get_running_loop()
            idx = await loop.run_in_executor(None, check_capture, spool.buf)
            spool.release()
            known = await block_state(block_key(sensor, block_id))
            if known is not None and known["sha256"] != sha:
                raise UploadError(409, f"block id {block_id} was uploaded before with other content "
                                  f"(sha256 {known['sha256']}, this body {sha}); use a new X-Block-Id")
            plan = pcap.chunks(spool.buf, idx, block_chunk_bytes(known, block_id))
            answer = {"block_id": block_id, "sensor": sensor, "chunks": len(plan), "packets": idx.packets,
                      "bytes": size}
            if idx.error is not None:   # cut inside its last record: the whole packets before it are taken
                answer["warning"] = (f"the capture ends inside a record at byte {idx.end}: its {idx.packets} "
                                     f"whole packets are counted, the last {size - idx.end} bytes are not")
                answer["truncated_at"] = idx.end
            if known is not None and ranges.contains_all(known["done"], len(plan)):
                progress.mark("ingest", duplicates=1)
                return 200, {**answer, "duplicate": True}
            # On a timeout the produce task is left to finish on its own: cancelling it would cancel
            # the Kafka client's own message futures. A retry sends the same chunks; decode dedupes.
            task = asyncio.ensure_future(produce(plan, block_id, sensor, sha, spool.release))
            done, _ = await asyncio.wait({task}, timeout=settings.produce_timeout_s)
            try:
                if not done:
                    _orphans.add(task)
                    task.add_done_callback(_orphan_done)
                    raise TimeoutError()
                chunks = task.result()
            except (TimeoutError, KafkaError, ConnectionError) as exc:
                log.warning("upload %s from %s: Kafka unavailable: %r", block_id, sensor, exc,
                            extra={"block_id": block_id, "sensor": sensor})
                raise UploadError(503, "Kafka is unavailable; retry the same upload later") from None
            progress.mark("ingest", uploads=1, bytes=size, packets=idx.packets)
            progress.mark(f"sensor:{sensor}", uploads=1, packets=idx.packets)
            log.info("upload accepted block=%s sensor=%s chunks=%d packets=%d bytes=%d",
                     block_id, sensor, chunks, idx.packets, size, extra={"block_id": block_id, "sensor": sensor})
            return 202, {**answer, "chunks": chunks, "duplicate": False}
        finally:
            arriving.end()
            os.unlink(path)

