"""GET /metrics: Prometheus text format, from Faust's Prometheus sensor and our own collector.

Counters come from every component's progress marks (app/runtime/progress.py):
``flowsight_<component>_<name>_total``, e.g. ``flowsight_ingest_bytes_total``,
``flowsight_decode_skipped_truncated_total`` (packets skipped, by reason),
``flowsight_flows_by_end_window_closed_total``, ``flowsight_alerts_L2_total``,
``flowsight_ingest_rejected_413_total`` (upload errors by status). Per sensor:
``flowsight_sensor_packets_total{sensor="..."}``. Gauges: open windows and the
capture-time watermark of each sensor (``flowsight_sensor_watermark_timestamp_seconds``), the
oldest producer batch, and whether the placebo round trip passes. Per sensor, from the
worker that scores: ``flowsight_sensor_late_records_total`` (records that came after their
window was closed or scored), ``flowsight_sensor_ahead_records_total`` (records far ahead of
the sensor's clock, not scored) and ``flowsight_sensor_scored_windows_total``.

Every counter of a closed set (:data:`DECLARED`: rejections per status, skips per reason, alerts
per rung, ...) is there from the start at 0, so that ``rate()`` and ``absent()`` rules work before
the first event. Each component's last progress is a Unix time,
``flowsight_<component>_last_progress_timestamp_seconds``. The answer is Prometheus' text format
0.0.4, or OpenMetrics when the scraper asks for it (``Accept: application/openmetrics-text``).
"""
from __future__ import annotations

import re
import typing

from app.flows.decode import SKIP_REASONS
from app.runtime import progress
from app.runtime import status as status_registry

#: component -> the counters it has from the start, at 0 until their first event
DECLARED: dict[str, tuple[str, ...]] = {
    "ingest": ("uploads", "bytes", "packets", "duplicates",
               *(f"rejected_{s}" for s in (400, 401, 403, 404, 408, 409, 411, 413, 415, 429, 503, 507))),
    "decode": ("chunks", "packets", "duplicate_chunks", "conflicting_chunks"),
    "decode_skipped": tuple(SKIP_REASONS.values()),
    "merge": ("messages",),
    "emit": ("records", "messages"),
    "flows_by_end": ("window_closed", "idle_flush", "late"),
    "score": ("windows",),
    "alerts": ("L0", "L1", "L2", "entity"),
    "entities": ("messages", "rows", "findings"),
    "send_retries": ("messages",),
    "placebo-source": ("uploads",),
    "placebo-sink": ("packets",),
    "export": ("records", "datagrams", "skipped_before_start"),
    "webhooks": ("sent", "refused", "failed", "retries"),
}

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _name(*parts: str) -> str:
    return "flowsight_" + "_".join(_BAD.sub("_", p) for p in parts)


def families() -> dict[str, tuple[str, list[tuple[dict, float]]]]:
    """name -> (counter | gauge, [(labels, value)]); counter names without the _total suffix."""
    out: dict[str, tuple[str, list[tuple[dict, float]]]] = {}

    def add(name: str, kind: str, value: float, labels: dict | None = None) -> None:
        out.setdefault(name, (kind, []))[1].append((labels or {}, float(value)))

    snap = progress.snapshot()
    last = progress.last_times()
    for component in sorted(set(snap) | set(DECLARED)):
        counts = {**dict.fromkeys(DECLARED.get(component, ()), 0), **snap.get(component, {})}
        counts.pop("last_progress_s_ago", None)
        labels = None
        base = component
        if component.startswith("sensor:"):
            base, labels = "sensor", {"sensor": component.split(":", 1)[1]}
        for key, value in sorted(counts.items()):
            add(_name(base, key), "counter", value, labels)
        if component in last:
            add(_name(base, "last_progress_timestamp_seconds"), "gauge", round(last[component], 3), labels)
    status = status_registry.read("flows")
    for p, n in status.get("open_windows", {}).items():
        add(_name("open_windows"), "gauge", n, {"partition": p})
    add(_name("open_flows"), "gauge", status.get("open_flows", 0))
    add(_name("windows_closed_early"), "counter", status.get("windows_closed_early", 0))
    for sensor, clock in sorted(status.get("sensors", {}).items()):
        if clock["watermark_ms"] is not None:
            add(_name("sensor_watermark_timestamp_seconds"), "gauge", clock["watermark_ms"] / 1000,
                {"sensor": sensor})
        add(_name("sensor_clock_jumps_held"), "gauge", clock["held_jumps"], {"sensor": sensor})
    for sensor, m in sorted(status_registry.read("scoring").get("models", {}).items()):
        if "late_records" in m:
            add(_name("sensor_late_records"), "counter", m["late_records"], {"sensor": sensor})
            add(_name("sensor_ahead_records"), "counter", m["ahead_records"], {"sensor": sensor})
            add(_name("sensor_scored_windows"), "counter", m["scored_windows"], {"sensor": sensor})
    w = status_registry.read("producer")
    add(_name("producer_oldest_batch_seconds"), "gauge", w.get("oldest_batch_s", 0.0))
    add(_name("producer_stuck_batches"), "gauge", w.get("stuck_batches", 0))
    add(_name("placebo_passing"), "gauge", 1 if status_registry.read("placebo").get("passing") else 0)
    return out


class FlowsightCollector:
    """Our counters and gauges, in the same registry as Faust's Prometheus sensor."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        for name, (kind, samples) in families().items():
            keys = sorted({k for labels, _ in samples for k in labels})
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = cls(name, f"Flowsight {name[len('flowsight_'):].replace('_', ' ')}", labels=keys)
            for labels, value in samples:
                fam.add_metric([labels.get(k, "") for k in keys], value)
            yield fam

    def describe(self):
        return []


def exposition(accept: str) -> tuple[bytes, str]:
    """The registry's metrics and their content type: OpenMetrics if ``accept`` asks for it, else
    Prometheus' text format 0.0.4 (what every scraper reads)."""
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    if "application/openmetrics-text" in accept:
        from prometheus_client.openmetrics import exposition as om
        return om.generate_latest(REGISTRY), om.CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def setup(app) -> None:
    """/metrics: Faust's Prometheus sensor (faust_* metrics) plus FlowsightCollector (flowsight_*)."""
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
    from faust.web import View
    from prometheus_client import REGISTRY

    from faust.sensors.monitor import Monitor as BaseMonitor

    class Monitor(PrometheusMonitor):
        """Faust's Prometheus sensor with its labelled children kept: it looked up the labels of a table
        operation or a topic on every key set and every message sent (about 1 CPU-s per GiB of capture)."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self._labelled: dict[tuple, typing.Any] = {}

        def _op(self, table, op: str):
            child = self._labelled.get((table.name, op))
            if child is None:
                child = self._labelled[table.name, op] = self._metrics.table_operations.labels(
                    table=f"table.{table.name}", operation=op)
            return child

        def on_table_get(self, table, key) -> None:
            BaseMonitor.on_table_get(self, table, key)
            self._op(table, self.KEYS_RETRIEVED).inc()

        def on_table_set(self, table, key, value) -> None:
            BaseMonitor.on_table_set(self, table, key, value)
            self._op(table, self.KEYS_UPDATED).inc()

        def on_table_del(self, table, key) -> None:
            BaseMonitor.on_table_del(self, table, key)
            self._op(table, self.KEYS_DELETED).inc()

        def on_send_initiated(self, producer, topic, message, keysize, valsize):
            child = self._labelled.get(topic)
            if child is None:
                child = self._labelled[topic] = self._metrics.topic_messages_sent.labels(topic=f"topic.{topic}")
            child.inc()
            return BaseMonitor.on_send_initiated(self, producer, topic, message, keysize, valsize)

    app.monitor = Monitor(metrics=FaustMetrics.create(REGISTRY, "faust"))
    REGISTRY.register(FlowsightCollector())

    class Metrics(View):
        """GET /metrics."""

        async def get(self, request):
            body, content_type = exposition(request.headers.get("Accept", ""))
            return self.bytes(body, headers={"Content-Type": content_type})   # it names a charset

    app.page("/metrics", name="metrics")(Metrics)
