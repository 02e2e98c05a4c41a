"""/metrics' own families (web/metrics.py): every counter of a closed set from the start at 0, progress as
Unix times, and the standard exposition formats."""
from __future__ import annotations

import time

from app.flows.decode import SKIP_REASONS
from app.runtime import progress
from web import metrics


def test_every_declared_counter_is_there_at_zero_before_its_first_event():
    fams = metrics.families()
    for component, names in metrics.DECLARED.items():
        for name in names:
            full = metrics._name(component, name)
            assert full in fams and fams[full][0] == "counter", full
    seen = progress.snapshot().get("ingest", {}).get("rejected_413", 0)
    assert fams["flowsight_ingest_rejected_413"][1] == [({}, float(seen))]
    assert {metrics._name("decode_skipped", r) for r in SKIP_REASONS.values()} <= set(fams)
    assert {"flowsight_alerts_L0", "flowsight_alerts_L1", "flowsight_alerts_L2"} <= set(fams)


def test_a_mark_counts_and_its_time_is_a_unix_timestamp():
    before = metrics.families().get("flowsight_ingest_rejected_429", ("counter", [({}, 0.0)]))[1][0][1]
    progress.mark("ingest", rejected_429=1)
    fams = metrics.families()
    assert fams["flowsight_ingest_rejected_429"][1] == [({}, before + 1)]
    (kind, [(labels, t)]) = fams["flowsight_ingest_last_progress_timestamp_seconds"]
    assert kind == "gauge" and abs(t - time.time()) < 5
    progress.mark("sensor:tap9", uploads=1)
    fams = metrics.families()
    assert ({"sensor": "tap9"}, 1.0) in fams["flowsight_sensor_uploads"][1]
    assert any(lab == {"sensor": "tap9"} for lab, _ in fams["flowsight_sensor_last_progress_timestamp_seconds"][1])


def test_the_exposition_is_prometheus_text_0_0_4_or_openmetrics_when_asked():
    from prometheus_client import REGISTRY
    collector = metrics.FlowsightCollector()
    REGISTRY.register(collector)
    try:
        body, ctype = metrics.exposition("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert b"\nflowsight_ingest_rejected_507_total 0.0\n" in body
        assert b"# TYPE flowsight_ingest_rejected_507_total counter" in body
        body, ctype = metrics.exposition("application/openmetrics-text; version=1.0.0")
        assert ctype.startswith("application/openmetrics-text") and body.rstrip().endswith(b"# EOF")
    finally:
        REGISTRY.unregister(collector)


def test_faust_table_operations_and_sends_are_counted_per_table_and_topic():
    import web.routes  # noqa: F401  (sets the app's monitor up)
    from prometheus_client import REGISTRY

    from app.main import app

    class Table:
        name = "probe"

    def sample(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    mon = app.monitor
    before = sample("faust_table_operations_total", table="table.probe", operation="keys_updated")
    for i in range(3):
        mon.on_table_set(Table(), i, i)
    mon.on_table_get(Table(), 1)
    mon.on_table_del(Table(), 1)
    assert sample("faust_table_operations_total", table="table.probe", operation="keys_updated") == before + 3
    assert sample("faust_table_operations_total", table="table.probe", operation="keys_retrieved") >= 1
    assert sample("faust_table_operations_total", table="table.probe", operation="keys_deleted") >= 1
    assert mon.tables["probe"].keys_updated >= 3          # Faust's own sensor still counts too
    sent = sample("faust_topic_messages_sent_total", topic="topic.probe-topic")
    mon.on_send_initiated(None, "probe-topic", None, 1, 2)
    mon.on_send_initiated(None, "probe-topic", None, 1, 2)
    assert sample("faust_topic_messages_sent_total", topic="topic.probe-topic") == sent + 2
    # the sensor is a service: what it keeps must not land among the children it stops with the worker
    assert all(callable(getattr(c, "stop", None)) for c in mon._children)
