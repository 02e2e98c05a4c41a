"""export_flows: topic flows -> NetFlow v5 and IPFIX collectors over UDP (FLOWSIGHT_NETFLOW_V5, FLOWSIGHT_IPFIX).

UDP export is best effort, as with every NetFlow exporter: a record emitted twice
after a crash (same flowId) reaches the collector twice.

Where it starts: from where it stopped (the group's committed offsets) once it has run;
the first time export is turned on, from then on (``FLOWSIGHT_EXPORT_FROM=now``, the
default: records already on the topic are not sent, so a collector is not flooded with
days of retained flows) or from the start of the retained topic (``start``). Where it was
first turned on is kept per partition in table ``export_marks``, as an offset: the topic's
end when the partition was assigned (its records carry their capture time, which says
nothing of when they were written).
"""
from __future__ import annotations

import asyncio
import json
import logging

from app.runtime import progress
from app.runtime import status as status_registry
from app.export.netflow import Exporter, parse_collectors
from app.main import app, settings
from app.topics import flows
from tables import export_marks

log = logging.getLogger(__name__)
#: flows partition -> the topic's end offset when it was assigned here (FLOWSIGHT_EXPORT_FROM=now)
assigned_ends: dict[int, int] = {}
#: set once the end offsets of the partitions assigned were asked for (the agent's first event may come first)
ends_asked = asyncio.Event()


async def end_offsets(partitions: list[int]) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None,
                         request_timeout_ms=15000, **settings.kafka_kwargs())
    await c.start()
    try:
        tps = [TopicPartition(flows.get_topic_name(), p) for p in partitions]
        return {tp.partition: off for tp, off in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


exporter = Exporter(parse_collectors(settings.netflow_v5), parse_collectors(settings.ipfix))


def status() -> dict:
    return {"datagrams": exporter.datagrams, "v5_skipped_ipv6": exporter.skipped, "send_errors": exporter.errors}


if settings.netflow_v5 or settings.ipfix:
    @app.on_partitions_assigned.connect
    async def _note_ends(app_, assigned, **kwargs) -> None:
        mine = [tp.partition for tp in assigned if tp.topic == flows.get_topic_name()]
        if settings.export_from != "now" or not mine:
            return
        try:
            for p, end in (await end_offsets(mine)).items():
                assigned_ends.setdefault(p, end)
        except Exception as exc:  # the agent asks again for the partition it reads
            log.warning("export: the flows topic's end offsets are not known (%r)", exc)
        finally:
            ends_asked.set()

    async def where_export_begins(p: int) -> int:
        """The end of partition ``p`` when it was assigned (asked again here if that failed)."""
        if settings.export_from != "now":
            return 0
        if p not in assigned_ends:
            try:
                await asyncio.wait_for(ends_asked.wait(), 30)
            except TimeoutError:
                pass
        if p not in assigned_ends:
            assigned_ends.update(await end_offsets([p]))
        return assigned_ends[p]

    @app.agent(flows, concurrency=1)
    async def export_flows(stream):
        async for event in stream.events():  # one message: a batch of the records of one window
            p = event.message.partition
            key = f"p{p}"
            mark = export_marks.get(key)
            if not isinstance(mark, dict):   # new here, or an older version's row (a time: export began long ago)
                mark = export_marks[key] = {"offset": await where_export_begins(p) if mark is None else 0}
            if event.message.offset < mark["offset"]:
                progress.mark("export", skipped_before_start=1)
                continue
            records = json.loads(event.value)["records"]
            skipped, datagrams = exporter.skipped, exporter.datagrams
            exporter.send(records)
            progress.mark("export", records=len(records), datagrams=exporter.datagrams - datagrams,
                          v5_skipped_ipv6=exporter.skipped - skipped)


status_registry.register("export", status)
