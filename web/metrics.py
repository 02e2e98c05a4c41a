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
"""
from __future__ import annotations

import re

from app.runtime import progress
from app.runtime import status as status_registry

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _name(*parts: str) -> str:
    return "flowsight_" + "_".join(_BAD.sub("_", p) for p in parts)


def families() -> dict[str, tuple[str, list[tuple[dict, float]]]]:
    """name -> (counter | gauge, [(labels, value)]); counter names without the _total suffix."""
    out: dict[str, tuple[str, list[tuple[dict, float]]]] = {}

    def add(name: str, kind: str, value: float, labels: dict | None = None) -> None:
        out.setdefault(name, (kind, []))[1].append((labels or {}, float(value)))

    for component, counts in sorted(progress.snapshot().items()):
        labels = None
        base = component
        if component.startswith("sensor:"):
            base, labels = "sensor", {"sensor": component.split(":", 1)[1]}
        for key, value in sorted(counts.items()):
            if key == "last_progress_s_ago":
                add(_name(base, "last_progress_seconds_ago"), "gauge", value, labels)
            else:
                add(_name(base, key), "counter", value, labels)
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


def setup(app) -> None:
    """/metrics: Faust's Prometheus sensor (faust_* metrics) plus FlowsightCollector (flowsight_*)."""
    from faust.sensors.prometheus import setup_prometheus_sensors
    from prometheus_client import REGISTRY

    setup_prometheus_sensors(app, pattern="/metrics", name_prefix="faust")
    REGISTRY.register(FlowsightCollector())
