"""export_flows: topic flows -> NetFlow v5 and IPFIX collectors over UDP (FLOWSIGHT_NETFLOW_V5, FLOWSIGHT_IPFIX).

UDP export is best effort, as with every NetFlow exporter: a record emitted twice
after a crash (same flowId) reaches the collector twice.

Where it starts: from where it stopped (the group's committed offsets) once it has run;
the first time export is turned on, from then on (``FLOWSIGHT_EXPORT_FROM=now``, the
default: records already on the topic are not sent, so a collector is not flooded with
days of retained flows) or from the start of the retained topic (``start``). The time it
was first turned on is kept per partition in table ``export_marks``.
"""
from __future__ import annotations

import json

import time

from app.runtime import progress
from app.runtime import status as status_registry
from app.export.netflow import Exporter, parse_collectors
from app.main import app, settings
from app.topics import flows
from tables import export_marks

#: When this process started: with FLOWSIGHT_EXPORT_FROM=now, what the topic held before is not exported.
STARTED_MS = int(time.time() * 1000)

exporter = Exporter(parse_collectors(settings.netflow_v5), parse_collectors(settings.ipfix))


def status() -> dict:
    return {"datagrams": exporter.datagrams, "v5_skipped_ipv6": exporter.skipped, "send_errors": exporter.errors}


if settings.netflow_v5 or settings.ipfix:
    @app.agent(flows, concurrency=1)
    async def export_flows(stream):
        async for event in stream.events():  # one message: a batch of the records of one window
            key = f"p{event.message.partition}"
            start = export_marks.get(key)
            if start is None:   # export is new on this partition
                start = export_marks[key] = STARTED_MS if settings.export_from == "now" else 0
            if event.message.timestamp * 1000 < start:
                progress.mark("export", skipped_before_start=1)
                continue
            records = json.loads(event.value)["records"]
            skipped, datagrams = exporter.skipped, exporter.datagrams
            exporter.send(records)
            progress.mark("export", records=len(records), datagrams=exporter.datagrams - datagrams,
                          v5_skipped_ipv6=exporter.skipped - skipped)


status_registry.register("export", status)
