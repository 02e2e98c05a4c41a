"""Every format Flowsight writes, defined once: names, flow keys, flowIds, flow records, table rows and the
versions of messages. Pure code (no Faust).

The encoders elsewhere are generated from what is here: the pipeline's JSON text (:func:`record_json`), the
offline command's compiled JSON and CSV writer (app/export/text.py) and the IPFIX templates
(app/export/netflow.py) all read :data:`FLOW_FIELDS`; the offline command and the pipeline compute the same
flowId (:func:`flow_ids`).

>>> key = flow_key("tap1", "10.0.0.1", "10.0.0.2", 6, 40000, 22, 0, 0)
>>> key
'tap1|10.0.0.1|10.0.0.2|6|40000|22|0|0'
>>> FlowKey.parse(key).dport
22
>>> flow_id(key, 60_000, 61_234) == flow_ids([id_text(key, 60_000, 61_234)])[0]
True
"""
from __future__ import annotations

import re
import socket
import zlib
from typing import NamedTuple, NotRequired, TypedDict
from collections.abc import Callable, Iterable

import numpy as np
from numba import njit

#: A sensor name or a block id: what a capture server may call itself and its uploads.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
NAME = re.compile(NAME_PATTERN)

#: The sensor name of the synthetic uploads every deployment makes (agents/placebo.py); never scored.
PLACEBO = "placebo"

#: Capture times are milliseconds since the epoch (UTC); a day of them.
DAY_MS = 86_400_000

# ---------------------------------------------------------------------------------------------------------
# Flow keys

#: Separates the fields of a flow key, and of table row keys.
SEP = "|"
#: Separates a sensor from a block id in a *source* (``sensor~block``): in neither name.
SOURCE_SEP = "~"


class FlowKey(NamedTuple):
    """A unidirectional flow's key (NetFlow semantics); addresses in text form."""

    sensor: str
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    vlan: int
    tos: int

    def text(self) -> str:
        """The key as the pipeline carries it: ``sensor|src|dst|proto|sport|dport|vlan|tos``."""
        return flow_key(*self)

    @classmethod
    def parse(cls, text: str) -> FlowKey:
        sensor, src, dst, proto, sport, dport, vlan, tos = text.split(SEP)
        return cls(sensor, src, dst, int(proto), int(sport), int(dport), int(vlan), int(tos))


def flow_key(sensor: str, src: str, dst: str, proto: int, sport: int, dport: int, vlan: int, tos: int) -> str:
    """:meth:`FlowKey.text` without building the tuple (the hot path makes millions)."""
    return f"{sensor}{SEP}{src}{SEP}{dst}{SEP}{proto}{SEP}{sport}{SEP}{dport}{SEP}{vlan}{SEP}{tos}"


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a flow key (the same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions


def source(sensor: str, block: str) -> str:
    """What a window remembers it applied: ``sensor~block`` (two sensors may upload the same block id)."""
    return f"{sensor}{SOURCE_SEP}{block}"


def source_sensor(src: str) -> str:
    return src.split(SOURCE_SEP, 1)[0]


def source_block(src: str) -> str:
    return src.split(SOURCE_SEP, 1)[-1]


_PROTO_NAMES = {1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah",
                58: "icmp6", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp"}


def proto_name(num: int) -> str:
    """A protocol as people write it: ``tcp``, ``udp``, ... or its number."""
    return _PROTO_NAMES.get(num, str(num))


def port_name(port: int, proto: int) -> str:
    """A port as people write it, with its protocol: ``22/tcp``; ICMP's type and code stay a number."""
    return f"{port}/{proto_name(proto)}" if proto in (6, 17, 132) else str(port)


# ---------------------------------------------------------------------------------------------------------
# flowIds: one scheme, offline and in the pipeline

def id_text(key: str, window_ms: int, first_ms: int) -> str:
    """What a record's flowId hashes: its flow key, its window and its first packet's time. A flow seen again
    in a later capture (a window of 0 s, say) starts at another time, so it gets another id."""
    return f"{key}{SEP}{window_ms}{SEP}{first_ms}"


def late_id_text(key: str, window_ms: int, first_ms: int, block: str, chunk: int) -> str:
    """A *late* delta record (its window was closed when its part came) also names the (block, chunk) it came
    from, so that it never shares an id with the window's record or with another late delta."""
    return f"{id_text(key, window_ms, first_ms)}{SEP}late{SEP}{block}{SEP}{chunk}"


@njit(cache=True, nogil=True)
def _hash_lines(buf, out):
    """FNV-1a over each ``\\n``-ended line of ``buf``, then a SplitMix64 finish, as 63-bit ints."""
    h = np.uint64(0xCBF29CE484222325)
    prime = np.uint64(0x100000001B3)
    n = 0
    for i in range(buf.shape[0]):
        c = buf[i]
        if c == 10:
            z = h + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[n] = np.int64(z >> np.uint64(1))
            n += 1
            h = np.uint64(0xCBF29CE484222325)
        else:
            h = (h ^ np.uint64(c)) * prime
    return n


def hash_lines(buf: np.ndarray, count: int) -> np.ndarray:
    """The flowId of each of ``count`` id texts in ``buf`` (uint8, each ended by ``\\n``)."""
    out = np.empty(count, np.int64)
    n = _hash_lines(buf, out)
    assert n == count, (n, count)
    return out


def flow_ids(texts: list[str]) -> list[int]:
    """The flowId of each id text (:func:`id_text`, :func:`late_id_text`): unsigned 63-bit, the same in every
    process and in the offline command."""
    if not texts:
        return []
    buf = np.frombuffer(("\n".join(texts) + "\n").encode(), np.uint8)
    return hash_lines(buf, len(texts)).tolist()


def flow_id(key: str, window_ms: int, first_ms: int, block: str | None = None, chunk: int = 0) -> int:
    """One flowId; ``block`` and ``chunk``: where a late delta record came from."""
    text = id_text(key, window_ms, first_ms) if block is None else late_id_text(key, window_ms, first_ms, block, chunk)
    return flow_ids([text])[0]


# ---------------------------------------------------------------------------------------------------------
# Flow records

#: The record's version; a consumer may check ``flowsight.v`` (absent: version 1, the same fields).
RECORD_VERSION = 1

#: IPFIX flowEndReason values used here (RFC 5102).
END_ACTIVE_TIMEOUT = 2   # the capture-time window ended
END_FORCED = 4           # flushed: the capture went idle (end of capture)


class Field(NamedTuple):
    """One field of a flow record: its IPFIX information element (the JSON name too), its IPFIX id and length
    (IPv4 and IPv6 records differ only in their addresses), and what it is made of (``column``: a flow key
    field, a count, or something of the record itself)."""

    name: str
    ie: int
    size: int
    column: str
    ie6: int = 0
    size6: int = 0

    def for_family(self, ver: int) -> tuple[str, int, int]:
        if ver == 6 and self.ie6:
            return self.name.replace("IPv4", "IPv6"), self.ie6, self.size6
        return self.name, self.ie, self.size


#: The fields of a flow record, in the order every encoder writes them.
FLOW_FIELDS: tuple[Field, ...] = (
    Field("sourceIPv4Address", 8, 4, "src", 27, 16),
    Field("destinationIPv4Address", 12, 4, "dst", 28, 16),
    Field("sourceTransportPort", 7, 2, "sport"),
    Field("destinationTransportPort", 11, 2, "dport"),
    Field("protocolIdentifier", 4, 1, "proto"),
    Field("ipClassOfService", 5, 1, "tos"),
    Field("vlanId", 58, 2, "vlan"),
    Field("flowStartMilliseconds", 152, 8, "first"),
    Field("flowEndMilliseconds", 153, 8, "last"),
    Field("packetDeltaCount", 2, 8, "packets"),
    Field("octetDeltaCount", 1, 8, "bytes"),
    Field("tcpControlBits", 6, 2, "flags"),
    Field("flowEndReason", 136, 1, "end"),
    Field("flowId", 148, 8, "id"),
)
#: What the record says of itself besides IPFIX's fields, under ``"flowsight"``.
FLOWSIGHT_FIELDS = ("sensor", "window", "windowLengthMs", "late", "blockIds")
#: Fields an IPFIX collector gets (the flowId is Flowsight's own business).
IPFIX_FIELDS = tuple(f for f in FLOW_FIELDS if f.column != "id")
#: The CSV columns of the offline command: IPFIX names, one address column per direction for both families.
CSV_COLUMNS = ("flowStartMilliseconds", "flowEndMilliseconds", "sourceAddress", "destinationAddress",
               "sourceTransportPort", "destinationTransportPort", "protocolIdentifier", "vlanId", "ipClassOfService",
               "packetDeltaCount", "octetDeltaCount", "tcpControlBits", "window", "flowId")
#: The flow key fields in key order (after the sensor), and the counts in a window's order.
KEY_COLUMNS = ("src", "dst", "proto", "sport", "dport", "vlan", "tos")
COUNT_COLUMNS = ("packets", "bytes", "first", "last", "flags")


def ipfix_template(ver: int) -> list[tuple[str, int, int]]:
    """``[(name, IE id, length)]`` of the IPFIX template for IPv4 (4) or IPv6 (6) records."""
    return [f.for_family(ver) for f in IPFIX_FIELDS]


def _json_template(ver: int) -> str:
    """The record as a %-format: each field's value comes from :func:`record_json`'s columns, in field order."""
    out = []
    for f in FLOW_FIELDS:
        name = f.for_family(ver)[0]
        fmt = '"%s"' if f.column in ("src", "dst") else "%s" if f.column in KEY_COLUMNS else "%d"
        out.append(f'"{name}":{fmt}')
    meta = '"flowsight":{"sensor":%s,"window":%d,"windowLengthMs":%d,"late":%s,"blockIds":%s}'
    return "{" + ",".join(out) + "," + meta + "}"


_JSON = {4: _json_template(4), 6: _json_template(6)}


_ARG = {"src": "src", "dst": "dst", "proto": "proto", "sport": "sport", "dport": "dport", "vlan": "vlan",
        "tos": "tos", "packets": "counts[0]", "bytes": "counts[1]", "first": "counts[2]", "last": "counts[3]",
        "flags": "counts[4]", "end": "end_reason", "id": "fid"}
_RECORD_JSON = f"""
def record_json(window_ms, key_fields, counts, window_len_ms, end_reason, late, sensor_json, blocks_json, fid):
    _, src, dst, proto, sport, dport, vlan, tos = key_fields
    return _JSON[6 if ":" in src else 4] % ({", ".join(_ARG[f.column] for f in FLOW_FIELDS)}, sensor_json,
        window_ms, window_len_ms, "true" if late else "false", blocks_json)
"""
_made: dict = {"_JSON": _JSON}
exec(compile(_RECORD_JSON, __file__, "exec"), _made)  # the arguments follow FLOW_FIELDS, with no per-record lookup
record_json: Callable[[int, list[str], list[int], int, int, bool, str, str, int], str] = _made["record_json"]
record_json.__doc__ = """:func:`record` as JSON text, written directly (the hot path writes hundreds of thousands).

``key_fields``: the flow key split at :data:`SEP`; ``counts``: packets, bytes, first, last and flags;
``sensor_json`` and ``blocks_json``: the sensor name and the sorted block ids, JSON-encoded."""


def record(window_ms: int, key: str, counts: list[int], window_len_ms: int, *, end_reason: int,
           late: bool = False, blocks: Iterable[str] = (), fid: int | None = None) -> dict:
    """One flow record as a dict (the same as :func:`record_json` decoded)."""
    k = FlowKey.parse(key)
    ver = 6 if ":" in k.src else 4
    col = {**k._asdict(), **dict(zip(COUNT_COLUMNS, counts)), "end": end_reason,
           "id": fid if fid is not None else flow_id(key, window_ms, counts[2])}
    rec: dict = {f.for_family(ver)[0]: col[f.column] for f in FLOW_FIELDS}
    rec["flowsight"] = {"sensor": k.sensor, "window": window_ms, "windowLengthMs": window_len_ms, "late": late,
                        "blockIds": sorted(blocks)}
    return rec


def record_key(rec: dict) -> tuple:
    """The flow key of a record: (sensor, src, dst, proto, sport, dport, vlan, tos)."""
    src = rec.get("sourceIPv4Address") or rec.get("sourceIPv6Address")
    dst = rec.get("destinationIPv4Address") or rec.get("destinationIPv6Address")
    return (rec["flowsight"]["sensor"], src, dst, rec["protocolIdentifier"], rec["sourceTransportPort"],
            rec["destinationTransportPort"], rec["vlanId"], rec["ipClassOfService"])


# ---------------------------------------------------------------------------------------------------------
# Messages

#: Flow records per message on the flows topic, and the size a message stays under (Kafka's default
#: limit is 1 MB; one record is about 500 bytes, more when it names many blocks).
BATCH_RECORDS = 500
BATCH_BYTES = 512 * 1024
#: The version of each message Flowsight writes, carried as its ``"v"`` (flows batches, window-summaries,
#: flow-parts) or header ``v`` (pcap-chunks); a message without one is version 1. A reader accepts the
#: versions it knows and the one before; a change of shape bumps the number here.
MESSAGE_VERSIONS = {"flows": 1, "flow-parts": 1, "window-summaries": 1, "pcap-chunks": 1}
#: A flows message is ``BATCH_HEAD + BATCH_SEP.join(records) + BATCH_TAIL``: JSON with one record a line (a
#: record's JSON text holds no newline), so that egress hands out each record's stored text without decoding it.
BATCH_HEAD = '{"v":%d,"records":[\n' % MESSAGE_VERSIONS["flows"]
BATCH_SEP, BATCH_TAIL = ",\n", "\n]}"


def _cuts(records: list[str]) -> list[tuple[int, int]]:
    """Where the records are cut into messages: at most :data:`BATCH_RECORDS` records and about
    :data:`BATCH_BYTES` each (a record naming many blocks is long)."""
    out, start, size = [], 0, 0
    for i, rec in enumerate(records):
        if i > start and (i - start >= BATCH_RECORDS or size + len(rec) > BATCH_BYTES):
            out.append((start, i))
            start, size = i, 0
        size += len(rec) + 2
    if start < len(records):
        out.append((start, len(records)))
    return out


def batches(records: list[str]) -> list[bytes]:
    """Messages of the flows topic, ``{"v": 1, "records": [...]}``, from records as JSON text."""
    return [(BATCH_HEAD + BATCH_SEP.join(records[i:j]) + BATCH_TAIL).encode() for i, j in _cuts(records)]


# ---------------------------------------------------------------------------------------------------------
# The columns of a flows message

#: Each flows message carries, beside its JSON, the numbers and addresses of its records as one binary header
#: (:data:`COLUMNS_HEADER`): a little-endian array of :data:`COLUMNS`, an element a record, in the records'
#: order. A search filters a whole message on it without reading the JSON (app/query/filter.py): 80 bytes a
#: record against some 480 of JSON. Addresses are 128-bit numbers in two words (IPv4: in ``lo``), ``fam``
#: says which (4 or 6); ``text_end``: where the record's JSON text ends in the message's value (exclusive), so
#: that the records a search keeps are cut out without looking for them. A reader that does not know the
#: header reads the JSON, which says the same.
COLUMNS_HEADER = "cols"
#: The sensor of every record of the message, UTF-8 (a message holds one sensor's window).
SENSOR_HEADER = "sensor"
COLUMNS = np.dtype([("srchi", "<u8"), ("srclo", "<u8"), ("dsthi", "<u8"), ("dstlo", "<u8"),
                    ("packets", "<u8"), ("bytes", "<u8"), ("first", "<i8"), ("last", "<i8"),
                    ("sport", "<u2"), ("dport", "<u2"), ("vlan", "<u2"), ("flags", "<u2"),
                    ("proto", "u1"), ("tos", "u1"), ("fam", "u1"), ("late", "u1"), ("text_end", "<u4")])
#: A record's JSON name -> its column (both address families' names), from :data:`FLOW_FIELDS`.
COLUMN_OF = {f.for_family(v)[0]: f.column for f in FLOW_FIELDS for v in (4, 6) if f.column in (COLUMNS.names or ())}

_WORDS: dict[str, tuple[int, int, int]] = {}
_LO = (1 << 64) - 1


def address_words(text: str) -> tuple[int, int, int]:
    """(family, high word, low word) of an address's text; family 0 if it is not one. Cached: a site's
    addresses repeat from window to window."""
    w = _WORDS.get(text)
    if w is None:
        if len(_WORDS) >= 1 << 18:
            _WORDS.clear()
        try:
            if ":" in text:
                v = int.from_bytes(socket.inet_pton(socket.AF_INET6, text))
                w = (6, v >> 64, v & _LO)
            else:
                w = (4, 0, int.from_bytes(socket.inet_pton(socket.AF_INET, text)))
        except (OSError, ValueError):
            w = (0, 0, 0)
        _WORDS[text] = w
    return w


def column_row(key_fields: list[str], counts: list[int], late: bool) -> tuple:
    """A record's element of :data:`COLUMNS`, from what :func:`record_json` is given."""
    _, src, dst, proto, sport, dport, vlan, tos = key_fields
    return columns_of(src, dst, int(proto), int(sport), int(dport), int(vlan), int(tos), counts, late)


def columns_of(src: str, dst: str, proto: int, sport: int, dport: int, vlan: int, tos: int, counts: list[int],
               late: bool) -> tuple:
    """:func:`column_row` from a flow key's fields already converted (a loop that needs them as numbers for
    other things too converts them once)."""
    fam, sh, sl = address_words(src)
    _, dh, dl = address_words(dst)
    return (sh, sl, dh, dl, counts[0], counts[1], counts[2], counts[3], sport, dport, vlan,
            counts[4], proto, tos, fam, late, 0)


def flows_messages(records: list[str], rows: list[tuple], sensor: str) -> list[tuple[bytes, list]]:
    """:func:`batches` with each message's headers: (value, [(name, bytes), ...]); ``rows``: each record's
    :func:`column_row`."""
    cols = np.array(rows, dtype=COLUMNS)
    head = [(SENSOR_HEADER, sensor.encode())]
    out = []
    for i, j in _cuts(records):
        value = (BATCH_HEAD + BATCH_SEP.join(records[i:j]) + BATCH_TAIL).encode()
        ends = np.cumsum([len(r) + len(BATCH_SEP) for r in records[i:j]]) + (len(BATCH_HEAD) - len(BATCH_SEP))
        if ends[-1] + len(BATCH_TAIL) != len(value):    # not ASCII (never written so): no columns
            out.append((value, head))
            continue
        cols["text_end"][i:j] = ends
        out.append((value, [(COLUMNS_HEADER, cols[i:j].tobytes()), *head]))
    return out


def message_columns(headers) -> tuple[np.ndarray, str] | None:
    """The columns and the sensor of a flows message as read (its headers: pairs), or None if it has none
    (written before them) or they do not hold whole elements."""
    cols = sensor = None
    for k, v in headers or ():
        if k == COLUMNS_HEADER:
            cols = v
        elif k == SENSOR_HEADER:
            sensor = v
    if cols is None or sensor is None or len(cols) % COLUMNS.itemsize:
        return None
    return np.frombuffer(cols, dtype=COLUMNS), sensor.decode("utf-8", "replace")


class ChunkHeaders(NamedTuple):
    """The headers of a pcap-chunks message (its value is the chunk's bytes): which block of which sensor,
    which chunk of how many, the whole upload's sha256 and the size it was cut with. ``done``: a lane's
    report that it decoded the chunk (an empty message to the block's own partition)."""

    block: str
    sensor: str
    chunk: int
    chunks: int
    sha256: str
    chunk_bytes: int
    done: bool = False

    def encode(self) -> list[tuple[str, bytes]]:
        out = [("v", str(MESSAGE_VERSIONS["pcap-chunks"]).encode()), ("block", self.block.encode()),
               ("sensor", self.sensor.encode()), ("chunk", str(self.chunk).encode()),
               ("chunks", str(self.chunks).encode()), ("sha256", self.sha256.encode()),
               ("chunk_bytes", str(self.chunk_bytes).encode())]
        return out + [("done", b"1")] if self.done else out

    @classmethod
    def decode(cls, headers) -> ChunkHeaders | None:
        """The headers of a message as read (pairs or a mapping; bytes or text); None for a tick
        (:data:`TICK_HEADERS`)."""
        items = headers.items() if hasattr(headers, "items") else headers or ()
        h = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in items}
        if "tick" in h:
            return None
        return cls(h["block"], h["sensor"], int(h["chunk"]), int(h.get("chunks", 0)), h.get("sha256", ""),
                   int(h.get("chunk_bytes", 0)), bool(h.get("done")))


#: The headers of the tick a leader sends into every pcap-chunks partition (agents/ticks.py).
TICK_HEADERS = [("tick", b"1")]


# The JSON messages between agents, typed (their builders and readers are annotated with these; a part is
# ``[window_ms, flow key, packets, bytes, first_ms, last_ms, flags]``, as compact on the wire as it can be).

class PartsMsg(TypedDict):
    """flow-parts: what one chunk brought to one partition (agents/decode.py -> app/flows/windows.py)."""

    block: str
    chunk: int
    sensor: str
    top: int | None          #: the chunk's robust highest capture time (ms); None without packets
    n: int                   #: the chunk's packets
    chunks: int              #: the block's chunks
    parts: list[list]
    v: NotRequired[int]


class AnnounceMsg(TypedDict):
    """flow-parts: an upload being received or accepted, so its sensor's clock waits for its chunks
    (web/ingest.py)."""

    announce: bool
    block: str
    sensor: str
    chunks: int
    top: NotRequired[int]
    release: NotRequired[bool]   #: the upload so named has ended: stop holding for it


class SummaryMsg(TypedDict):
    """window-summaries: one closed window of one sensor on one partition."""

    window: int
    windowLengthMs: int
    partition: int
    sensors: dict[str, dict]     #: sensor -> :meth:`app.flows.summary.Summary.to_json`
    ahead: NotRequired[bool]     #: far ahead of the sensor's clock (a damaged time): counted, never scored
    v: NotRequired[int]


class SummariesMsg(TypedDict):
    """window-summaries: many closed windows of one sensor on one partition, ``[window, summary, ahead]``."""

    windows: list[list]
    windowLengthMs: int
    partition: int
    sensor: str
    v: NotRequired[int]


class FrontierMsg(TypedDict):
    """window-summaries: every window of ``sensor`` ending at or before ``frontier`` is closed on ``partition``."""

    frontier: int
    partition: int
    sensor: str
    v: NotRequired[int]


class LateMsg(TypedDict):
    """window-summaries: records of a window that was closed when their part came."""

    late: dict                   #: records, packets, bytes
    sensor: str
    window: int
    partition: int
    source: str
    chunk: int
    v: NotRequired[int]


def entity_key(kind: str, entity: str) -> str:
    """``type|entity``: what an alert is about, as acknowledgements and suppressions name it."""
    return f"{kind}{SEP}{entity}"


def alert_id(sensor: str, family: str, entity: str, t_ms: int) -> str:
    return f"{sensor}{SEP}{family}{SEP}{entity}{SEP}{t_ms}"


# ---------------------------------------------------------------------------------------------------------
# Table rows (tables/__init__.py says what each row holds)

class FlowsRows:
    """Row keys of table ``flows``: a *slice* per (partition, window, chunk, source) of the parts one message
    brought, and a *closed* row per (partition, window, sensor)."""

    SLICE, CLOSED = "o", "c"

    @classmethod
    def slice(cls, p: int, w: int, src: str, chunk: int) -> str:
        return SEP.join((cls.SLICE, str(p), str(w), str(chunk), src))

    @classmethod
    def closed(cls, p: int, w: int, sensor: str) -> str:
        return SEP.join((cls.CLOSED, str(p), str(w), sensor))

    @classmethod
    def parse(cls, key: str) -> tuple[str, int, int, int | None, str | None] | None:
        """``(kind, partition, window, chunk, sensor~block)`` of a slice key, ``(kind, partition, window, None,
        sensor)`` of a closed key (sensor None: a row of an older version, for every sensor); None for a key
        of another shape."""
        f = key.split(SEP, 4)
        try:
            if f[0] == cls.SLICE and len(f) == 5:
                return cls.SLICE, int(f[1]), int(f[2]), int(f[3]), f[4]
            if f[0] == cls.CLOSED and len(f) in (3, 4):
                return cls.CLOSED, int(f[1]), int(f[2]), None, f[3] if len(f) == 4 else None
        except ValueError:
            pass
        return None


def watermark_key(p: int, sensor: str) -> str:
    """The ``watermarks`` row of a sensor's clock on partition ``p``."""
    return f"p{p}{SEP}{sensor}"


class ScoringRows:
    """Row keys of table ``scoring``."""

    CLOCK = f"clock{SEP}"          #: + sensor: its progress over partitions
    PENDING = f"pending{SEP}"      #: + sensor|window|partition, or sensor|partition|first window|batch
    SENSOR = f"sensor{SEP}"        #: + sensor: its scorer's state
    SUPPRESS = f"suppress{SEP}"    #: + type|entity: suppressed until (ms)
    BATCH = f"{SEP}batch"

    @classmethod
    def pending(cls, sensor: str, w: int, p: int) -> str:
        return f"{cls.PENDING}{sensor}{SEP}{w}{SEP}{p}"

    @classmethod
    def pending_batch(cls, sensor: str, p: int, first_w: int) -> str:
        return f"{cls.PENDING}{sensor}{SEP}{p}{SEP}{first_w}{cls.BATCH}"
