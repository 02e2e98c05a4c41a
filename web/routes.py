"""Every HTTP route of Flowsight, in one place."""
from __future__ import annotations

from app.main import app
from app.topics import actions, alerts, anomalies, flows
from web.dashboard import Actions, Index, Login, Logout, Static, Suppressions
from web.egress import TopView, poll_view
from web.health import Health, Healthz, Readyz
from web import metrics
from web.ingest import Blocks, Captures
from web.openapi import OpenAPI

app.page("/v1/captures", name="captures")(Captures)
app.page("/v1/flows", name="flows")(poll_view(flows.get_topic_name(), batched=True))
app.page("/v1/anomalies", name="anomalies")(poll_view(anomalies.get_topic_name()))
app.page("/v1/alerts", name="alerts")(poll_view(alerts.get_topic_name()))
app.page("/v1/top", name="top")(TopView)
app.page("/v1/actions", name="actions")(type("ActionsView", (Actions, poll_view(actions.get_topic_name(), 1)), {}))
app.page("/v1/suppressions", name="suppressions")(Suppressions)
app.page("/v1/health", name="health")(Health)
app.page("/", name="index")(Index)
app.page("/ui/{name}", name="static")(Static)
app.page("/healthz", name="healthz")(Healthz)
app.page("/readyz", name="readyz")(Readyz)
metrics.setup(app)
app.page("/v1/blocks/{key}", name="blocks")(Blocks)
app.page("/v1/login", name="login")(Login)
app.page("/v1/logout", name="logout")(Logout)
app.page("/openapi.json", name="openapi")(OpenAPI)
