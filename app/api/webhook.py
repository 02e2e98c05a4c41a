"""Alert webhooks for chat and ticket systems: the body, its signature, and whether to try again. Pure code.

The body is JSON: ``{"event": "alert", "id", "text", "alert"}``; ``text`` is one line a chat system shows as
it is (Slack's and Mattermost's incoming webhooks read it), ``alert`` the alert as on topic ``alerts``. The
header ``X-Flowsight-Signature: sha256=HEX`` is the HMAC-SHA256 of the body with the shared key, so a
receiver can check that it came from Flowsight (:func:`verify`); ``X-Flowsight-Delivery`` is the alert id,
the same on every attempt, so a receiver can drop a repeat.

>>> body = payload({"id": "tap1|traffic|tap1|60000", "type": "traffic", "entity": "tap1", "sensor": "tap1",
...                 "windowStartMs": 60000, "rung": "L2", "score": 9.5, "observed": {}})
>>> sig = sign(b"key", body)
>>> sig.startswith("sha256="), verify(b"key", body, sig), verify(b"other", body, sig)
(True, True, False)
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, UTC

#: HTTP statuses worth another attempt: the receiver is busy or down, or asked to be called later.
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def title(alert: dict) -> str:
    """One line saying what the alert is about: class, entity, sensor, capture time, what stood out."""
    when = datetime.fromtimestamp(alert.get("windowStartMs", 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    if alert.get("title"):       # a detector per entity says what it found in its own words
        return (f"{alert['title']} at sensor {alert.get('sensor')}, window {when} UTC "
                f"[{alert.get('type')}, score {alert.get('score', 0):.1f}]")
    what = {"traffic": "unusual traffic", "host-bytes": "unusual outbound bytes"}.get(alert.get("type", ""),
                                                                                   alert.get("type", "alert"))
    obs = alert.get("observed") or {}
    worst = max(obs.items(), key=lambda kv: kv[1].get("observed", 0) / max(kv[1].get("expected", 0), 1),
                default=None)
    detail = ""
    if worst is not None:
        name, v = worst
        detail = f": {name} {v.get('observed', 0):,.0f} (expected about {v.get('expected', 0):,.0f})"
    return (f"{what} on {alert.get('entity')} at sensor {alert.get('sensor')}, window {when} UTC{detail} "
            f"[{alert.get('rung')}, score {alert.get('score', 0):.1f}]")


def payload(alert: dict) -> bytes:
    return json.dumps({"event": "alert", "id": alert.get("id"), "text": title(alert), "alert": alert},
                      separators=(",", ":")).encode()


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, body), signature)


def backoff_s(attempt: int) -> float:
    """Seconds before attempt ``attempt`` + 1 (1, 2, 4, ... up to a minute)."""
    return float(min(2 ** (attempt - 1), 60))
