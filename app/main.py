"""The one Faust application of Flowsight.

Run a worker from the repository root::

    faust -A app worker -l info            # web server on :6066 (FLOWSIGHT_WEB_PORT)

Settings come from ``FLOWSIGHT_*`` variables (see app/settings.py); the worker
prints them, redacted, when it starts.
"""
from __future__ import annotations

import json
import logging
import socket
import sys
import time

import faust

from app.runtime import compat
from app.runtime import memory
from app.settings import Settings, SettingsError

try:
    settings = Settings.from_env()
except SettingsError as exc:
    sys.exit(f"flowsight: {exc}")
log = logging.getLogger("flowsight")
memory.keep_freed(settings.malloc_keep_mb)
compat.install(settings.compat_patches)

# The web server: Faust's aiohttp driver with our middleware, client timeouts and TLS (web/security.py).
from faust.web.drivers import DRIVERS  # noqa: E402
DRIVERS.aliases["flowsight"] = "web.security:FlowsightWeb"

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    store=settings.store,
    datadir=settings.datadir,
    autodiscover=False,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication,
    producer_acks=-1,
    # Faust's default (20 min) is also how long a batch may wait for a partition's leader and how
    # long one request may hang; a minute bounds both, and agents send failed messages again
    producer_request_timeout=60.0,
    producer_max_request_size=settings.chunk_bytes + (1 << 20),
    consumer_max_fetch_size=max(4 << 20, settings.chunk_bytes * 2),
    # events an agent may have waiting: at most about 64 MiB of pcap chunks (a flow-parts message is small;
    # at 128 MiB one worker peaked at 1,044 MB in bench/e2e.sh, at 64 MiB at 992 MB, for the same CPU)
    stream_buffer_maxsize=max(4, min(64, (64 << 20) // settings.chunk_bytes)),
    broker_credentials=settings.faust_credentials(),
    web="flowsight://",
    web_port=settings.web_port,
    web_bind=settings.web_host,
    web_ssl_context=settings.web_ssl_context,
    **({"canonical_url": f"https://{socket.gethostname()}:{settings.web_port}"} if settings.tls_cert else {}),
    web_router_enabled=False,
    web_tables_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
    web_metrics_enabled=False,
    broker_commit_interval=1.0,
    # a partition's messages waiting while a request is in flight go out as one record batch (one CRC
    # and header), not one batch per message over aiokafka's 16 KiB default (bench/README.md)
    producer_max_batch_size=1 << 20,
    table_standby_replicas=settings.standby_replicas,
    broker_session_timeout=settings.session_timeout_s,
    # after a broker dies, a client that got no error for a partition keeps the dead leader until
    # its metadata ages out (5 min by default): consumption of that partition stalls that long
    consumer_metadata_max_age_ms=15_000,
    producer_metadata_max_age_ms=15_000,
    broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the upload's block_id and sensor when the record has them."""

    FIELDS = ("block_id", "sensor")

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


JsonFormatter.converter = time.gmtime

def escape_controls(text: str) -> str:
    """``text`` with every non-printable character (a newline too) written as its escape."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)


class EscapeControls(logging.Formatter):
    """Wraps a handler's formatter: control characters in a record's message are escaped (its traceback stays
    as it is), so what a client sent (a path with ``%0a``, a header) can never start a line of its own in the
    plain-text log. The record itself is left alone (other handlers and filters see it as it was)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.escape = escape_controls   # kept: a message logged while the interpreter exits finds it still here

    def format(self, record: logging.LogRecord) -> str:
        out = self.inner.format(record)
        try:
            msg = record.getMessage()
        except Exception:  # logging reports a message it cannot format itself
            return out
        if msg.isprintable():
            return out
        return out.replace(msg, self.escape(msg), 1) if msg in out else self.escape(out)


@app.task
async def _print_settings() -> None:
    """A starting worker prints its settings (redacted) to stderr; commands stay quiet."""
    for handler in logging.getLogger().handlers:
        # JSON lines escape control characters by themselves
        handler.setFormatter(JsonFormatter() if settings.log_json else EscapeControls(handler.formatter))
    if not settings.quiet:
        print("flowsight settings: " + json.dumps(settings.redacted(), sort_keys=True), file=sys.stderr, flush=True)


# Registering agents, tables and views imports them; they import `app` from here.
from agents import decode as _decode, export as _export, flows as _flows, placebo as _placebo  # noqa: E402,F401
from agents import ledger as _ledger, score as _score, ticks as _ticks, watchdog as _watchdog  # noqa: E402,F401
from agents import entities as _entities, webhooks as _webhooks  # noqa: E402,F401
from web import routes as _routes  # noqa: E402,F401
from app.cli import commands as _commands  # noqa: E402,F401

# everything is imported: what start-up made stays out of the garbage collector's way (app/runtime/memory.py)
memory.settle()
memory.track_collections()
from app.runtime import status as _status  # noqa: E402
_status.register("memory", memory.gc_report)
