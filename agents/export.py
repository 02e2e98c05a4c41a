"""export_flows: topic flows -> NetFlow v5 and IPFIX collectors over UDP (FLOWSIGHT_NETFLOW_V5, FLOWSIGHT_IPFIX).

UDP export is best effort, as with every NetFlow exporter: a record emitted twice
after a crash (same flowId) reaches the collector twice.
"""
from __future__ import annotations

import json

from app import progress
from app.export import Exporter, parse_collectors
from app.main import app, settings
from app.topics import flows

exporter = Exporter(parse_collectors(settings.netflow_v5), parse_collectors(settings.ipfix))


def status() -> dict:
    return {"datagrams": exporter.datagrams, "v5_skipped_ipv6": exporter.skipped, "send_errors": exporter.errors}


if settings.netflow_v5 or settings.ipfix:
    @app.agent(flows, concurrency=1)
    async def export_flows(stream):
        async for batch in stream:  # one message: a batch of the records of one window
            records = json.loads(batch)["records"]
            skipped, datagrams = exporter.skipped, exporter.datagrams
            exporter.send(records)
            progress.mark("export", records=len(records), datagrams=exporter.datagrams - datagrams,
                          v5_skipped_ipv6=exporter.skipped - skipped)
