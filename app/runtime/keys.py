"""This worker's keys (the tokens it accepts and the cluster secret, app/api/auth.py), and how it calls its own
web server (the placebo source does, as a capture server would)."""
from __future__ import annotations

import ssl

from app.api.auth import AuthError, Keyring
from app.main import settings

try:
    keyring = Keyring.load(settings.sensor_tokens, settings.api_tokens, settings.cluster_secret_file)
except AuthError as exc:
    raise SystemExit(f"flowsight: {exc}") from None


def self_url(path: str) -> tuple[str, dict]:
    """URL and request options for a worker's request to its own web server."""
    scheme = "https" if settings.tls_cert else "http"
    opts: dict = {"headers": {"Authorization": f"Bearer {keyring.cluster_secret}"}}
    if settings.tls_cert:
        ctx = ssl.create_default_context(cafile=settings.tls_cert)
        ctx.check_hostname = False  # our own certificate, pinned; it names the public host, not 127.0.0.1
        opts["ssl"] = ctx
    return f"{scheme}://127.0.0.1:{settings.web_port}{path}", opts
