"""GET /metrics: Prometheus text format (version 0.0.4).

Counters come from every component's progress marks (app/progress.py):
``flowsight_<component>_<name>_total``, e.g. ``flowsight_ingest_bytes_total``,
``flowsight_decode_skipped_truncated_total`` (packets skipped, by reason),
``flowsight_flows_by_end_window_closed_total``, ``flowsight_alerts_L2_total``,
``flowsight_ingest_rejected_413_total`` (upload errors by status). Per sensor:
``flowsight_sensor_packets_total{sensor="..."}``. Gauges: open windows and the
capture-time watermark per partition, the oldest producer batch, and whether the
placebo round trip passes.
"""
from __future__ import annotations

import re
import time

from faust.web import View

from agents import flows as flows_agent, placebo, watchdog
from app import progress

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _name(*parts: str) -> str:
    return "flowsight_" + "_".join(_BAD.sub("_", p) for p in parts)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render() -> str:
    lines: list[str] = []
    seen: set[str] = set()

    def metric(name: str, kind: str, value: float, labels: dict | None = None) -> None:
        if name not in seen:
            seen.add(name)
            lines.append(f"# TYPE {name} {kind}")
        lab = "{" + ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items()) + "}" if labels else ""
        lines.append(f"{name}{lab} {value}")

    snap = progress.snapshot()
    for component, counts in sorted(snap.items()):
        labels = None
        base = component
        if component.startswith("sensor:"):
            base, labels = "sensor", {"sensor": component.split(":", 1)[1]}
        for key, value in sorted(counts.items()):
            if key == "last_progress_s_ago":
                metric(_name(base, "last_progress_seconds_ago"), "gauge", value, labels)
            else:
                metric(_name(base, key) + "_total", "counter", value, labels)
    status = flows_agent.status()
    for p, n in status["open_windows"].items():
        metric(_name("open_windows"), "gauge", n, {"partition": p})
    now_ms = time.time() * 1000
    for p, wm in status["watermark_ms"].items():
        if wm > 0:
            metric(_name("watermark_lag_seconds"), "gauge", round((now_ms - wm) / 1000, 3), {"partition": p})
    w = watchdog.status()
    metric(_name("producer_oldest_batch_seconds"), "gauge", w["oldest_batch_s"])
    metric(_name("producer_stuck_batches"), "gauge", w["stuck_batches"])
    ok = placebo.state.status(time.time()).get("passing")
    metric(_name("placebo_passing"), "gauge", 1 if ok else 0)
    return "\n".join(lines) + "\n"


class Metrics(View):
    async def get(self, request):
        return self.text(render(), content_type="text/plain; version=0.0.4")
