"""GET /v1/health: Kafka connectivity, assigned partitions, watermarks and last progress per component."""
from __future__ import annotations

from faust.web import View

from agents import flows as flows_agent
from app import progress
from app.main import app


class Health(View):
    async def get(self, request):
        producer = app.producer
        try:
            connected = bool(producer.started and producer._producer._producer._sender._sender_task
                             and not producer._producer._producer._sender._sender_task.done())
        except AttributeError:
            connected = bool(producer.started)
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_actives())
        body = {
            "kafka": {"producer_connected": connected, "rebalancing": bool(app.rebalancing)},
            "assigned": assigned,
            "flows": flows_agent.status(),
            "progress": progress.snapshot(),
        }
        ok = connected and not app.rebalancing
        return self.json({"status": "ok" if ok else "degraded", **body}, status=200 if ok else 503)
