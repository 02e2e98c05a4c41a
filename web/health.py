"""GET /v1/health: Kafka connectivity, assigned partitions, consumer lag, watermarks, the last progress
of each component (sensors included) and whether the placebo round trip passes."""
from __future__ import annotations

from faust.web import View


from app.runtime import compat, progress, status
from app.main import app, settings
from app.topics import flow_parts, pcap_chunks


async def consumer_lag() -> dict[str, int] | None:
    """Messages not yet committed by the group, per input topic (summed over partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=app.conf.id, enable_auto_commit=False,
                         request_timeout_ms=5000, **settings.kafka_kwargs())
    try:
        await c.start()
        out = {}
        for topic in (pcap_chunks, flow_parts):
            tps = [TopicPartition(topic.get_topic_name(), p) for p in range(settings.partitions)]
            ends = await c.end_offsets(tps)
            lag = 0
            for tp in tps:
                committed = await c.committed(tp) or 0
                lag += max(0, ends[tp] - committed)
            out[topic.get_topic_name()] = lag
        return out
    except Exception:  # health must answer even when Kafka does not
        return None
    finally:
        await c.stop()


def producer_connected() -> bool:
    """Faust's producer started, and the Kafka client's sender task alive."""
    p = compat.kafka_producer(app)
    if p is None:
        return False
    return bool(app.producer.started and compat.sender_alive(p))


class Healthz(View):
    """Liveness, cheap: the process answers."""

    async def get(self, request):
        return self.json({"status": "alive"})


class Readyz(View):
    """Readiness: table recovery done, not rebalancing, producer connected."""

    async def get(self, request):
        reasons = []
        if not producer_connected():
            reasons.append("producer not connected")
        if not status.read("kafka").get("reachable"):
            reasons.append("Kafka does not answer")
        if app.rebalancing:
            reasons.append("rebalancing")
        recovery = getattr(app.tables, "recovery", None)
        if app.in_recovery or (recovery is not None and not recovery.completed.is_set()):
            reasons.append("recovering tables")
        if reasons:
            return self.json({"status": "not ready", "reasons": reasons}, status=503)
        return self.json({"status": "ready"})


class Health(View):
    """GET /v1/health: what this worker and the pipeline did lately, per component and per sensor."""
    async def get(self, request):
        connected = producer_connected()
        kafka = status.read("kafka")
        reachable, ago = kafka.get("reachable", False), kafka.get("last_answer_s_ago")
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_actives())
        body = {
            "kafka": {"producer_connected": connected, "reachable": reachable, "last_answer_s_ago": ago,
                      "rebalancing": bool(app.rebalancing)},
            "assigned": assigned,
            "lag": await consumer_lag(),
            "flows": status.read("flows"),
            "scoring": status.read("scoring"),
            "entities": status.read("entities"),
            "producer": status.read("producer"),
            "export": status.read("export"),
            "progress": progress.snapshot(),
            "placebo": status.read("placebo"),
            "memory": status.read("memory"),
        }
        ok = connected and reachable and not app.rebalancing
        return self.json({"status": "ok" if ok else "degraded", **body}, status=200 if ok else 503)
