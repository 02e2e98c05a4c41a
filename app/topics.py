"""Every Kafka topic of Flowsight, declared once. Agents and views import them from here.

| topic          | key                      | value                                           |
|----------------|--------------------------|-------------------------------------------------|
| pcap-chunks    | ``sensor~block id``      | a self-contained pcap/pcapng chunk (raw bytes); |
|                | (or ``tick``; chunk i on | headers: sensor, block, chunk, chunks, sha256,  |
|                | the key's partition + i, | chunk_bytes; or, empty with header ``done``, a  |
|                | mod n)                   | chunk decoded on another partition (decode.py); |
|                |                          | or a tick (empty, header ``tick``) every 5 s    |
|                |                          | from the leader                                 |
| flow-parts     | block id (or ``tick``)   | ``{block, chunk, sensor, top, n, chunks, parts}``: |
|                |                          | every partition per chunk, with the parts of its |
|                |                          | flow keys (maybe none); ``{announce, block,      |
|                |                          | sensor, chunks, top}`` from ingest; or a tick    |
| flows          | ``window|partition``     | ``{records: [...]}``: up to 500 flow records with   |
|                | (``late|partition``)     | IPFIX names (app/flows/parts.py) of one closed window  |
|                |                          | of one sensor; headers: sensor, cols (the records'  |
|                |                          | numbers and addresses, app/records.py COLUMNS)       |
| window-summaries | ``window|partition``,  | ``{window, partition, sensors: {s: Summary}}`` of one |
|                | ``frontier|partition``,  | closed (sensor, window) (``ahead``: far ahead of the |
|                | ``late|partition``       | clock, not scored); ``{frontier, partition, sensor}``: |
|                |                          | the sensor's windows closed up to there; ``{late,  |
|                |                          | sensor, window, partition, source, chunk}``: late  |
|                |                          | records (app/flows/windows.py; one partition)           |
| entity-flows   | ``sensor|partition``     | ``{v, sensor, window, windowLengthMs, origin, part,  |
|                | (on the partition of its | actors: {source: [row, ...]}}``: the records of a   |
|                | actors)                  | closed window the detectors per entity read       |
|                |                          | (app/detect/entities.py EntityRows)               |
| findings       | sensor                   | what a detector per entity found, for attention   |
|                |                          | control (one partition)                           |
| anomalies      | sensor                   | every scored window over a threshold (app/detect/scorer.py) |
| alerts         | sensor                   | what attention control lets through              |
| actions        | alert id or entity       | ``ack`` of an alert, ``suppress`` of an entity (one partition) |
| flows-index    | partition                | ``{v, partition, from, to, min, max, messages}``: |
|                | (on that partition)      | the record times of a span of the flows partition |
|                |                          | (app/flows/index.py)                              |
| heartbeats     | worker address           | ``{worker, at_ms, progress: {component: {...}}}`` |
"""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from app.main import app, settings
from app.records import source

_big = {"max.message.bytes": str(settings.chunk_bytes + (1 << 20))}
_n = settings.partitions
_pre = settings.topic_prefix

pcap_chunks = app.topic(_pre + "pcap-chunks", key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw", partitions=_n, config=_big, internal=True)
# JSON, encoded and decoded by the agents (raw here: the merge keeps a message's bytes as its slice)
flow_parts = app.topic(_pre + "flow-parts", key_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=_n, config=_big, internal=True)
# values are JSON written by app.flows.windows (raw here: encoded once, by the code that knows their shape)
# records carry their window's capture time: retention by size, never by time (a replay is years old)
flows = app.topic(_pre + "flows", key_type=bytes, key_serializer="raw", value_serializer="raw", partitions=_n,
                  internal=True, config={"retention.ms": "-1",
                                         "retention.bytes": str(settings.flows_retention_bytes)})
# the flows topic's time index (app/flows/index.py): an entry per flows partition every few hundred messages
flows_index = app.topic(_pre + "flows-index", key_type=bytes, key_serializer="raw", value_serializer="raw",
                        partitions=_n, internal=True, config={"retention.ms": "-1", "retention.bytes": str(64 << 20)})
heartbeats = app.topic(_pre + "heartbeats", key_type=bytes, key_serializer="raw", value_serializer="json",
                       partitions=1, internal=True)
# one partition: the scorer sees every partition's summaries and frontiers in one order
window_summaries = app.topic(_pre + "window-summaries", key_type=bytes, key_serializer="raw",
                             value_serializer="json", partitions=1, internal=True)
# the actors' partitions: table entities is co-partitioned with it
entity_flows = app.topic(_pre + "entity-flows", key_type=bytes, key_serializer="raw", value_serializer="json",
                         partitions=_n, internal=True)
# one partition, like table scoring: findings go through the same attention control as scored windows
findings = app.topic(_pre + "findings", key_type=bytes, key_serializer="raw", value_serializer="json",
                     partitions=1, internal=True)
anomalies = app.topic(_pre + "anomalies", key_type=bytes, key_serializer="raw", value_serializer="json",
                      partitions=_n, internal=True)
alerts = app.topic(_pre + "alerts", key_type=bytes, key_serializer="raw", value_serializer="json",
                   partitions=_n, internal=True)

actions = app.topic(_pre + "actions", key_type=bytes, key_serializer="raw", value_serializer="json",
                    partitions=1, internal=True)
ALL = (actions, pcap_chunks, flow_parts, flows, flows_index, window_summaries, entity_flows, findings, anomalies,
       alerts, heartbeats)


# -- partitioning rules: where a block's chunks go (flow parts go to the partition of their flow key,
#    app.records.partition_for)

#: A block's key (``sensor~block``): block ids are per sensor, two sensors may send identical bytes.
block_key = source


#: between a block key and its lane in the key of a lane's row; in neither a sensor name nor a block id
LANE = "@"


def home_partition(bkey: str, partitions: int) -> int:
    """The pcap-chunks partition of every chunk of a block, and so of its ``blocks`` row: the one table
    routing (GET /v1/blocks) asks: Kafka's default partitioner on the key as the table serializes it (JSON).
    Hashing the raw key would put the row on another partition."""
    every = list(range(partitions))
    from tables import blocks   # tables import this module's app

    return DefaultPartitioner()(blocks.changelog_topic.prepare_key(bkey, None)[0], every, every)


def chunk_partition(bkey: str, chunk: int, partitions: int) -> int:
    """The pcap-chunks partition of a block's chunk: lane ``chunk mod partitions`` from the block's own."""
    return (home_partition(bkey, partitions) + chunk) % partitions


def row_key(bkey: str, chunk: int, partitions: int) -> str:
    """The ``blocks`` row that remembers a chunk: the block's own for lane 0, else its lane's."""
    lane = chunk % partitions
    return bkey if lane == 0 else f"{bkey}{LANE}{lane}"
