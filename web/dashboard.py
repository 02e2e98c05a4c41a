"""The analyst's page (GET /, static files under /ui/) and the actions it sends (POST /v1/actions).

Plain HTML, CSS and JavaScript served by the worker: no build step, nothing
fetched from the internet. The page long-polls /v1/alerts, draws the fired
metric's recent windows with the expected band from the alert itself, polls
/v1/health for throughput and liveness, and posts acknowledgements and
suppressions, which are records on topic ``actions`` (so they survive restarts
and feed attention control, agents/score.py).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from aiokafka.errors import KafkaError
from faust.web import View

from app.api.auth import SESSION_COOKIE, SESSION_S, RateLimiter
from app.main import settings
from app.records import entity_key
from app.topics import actions

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html", ".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def _file(name: str):
    path = STATIC / name
    if not _NAME.match(name) or not path.is_file():
        return None
    return path.read_bytes(), TYPES.get(path.suffix, "application/octet-stream")


class Index(View):
    """The page; without a session (and with authentication on) it opens on the sign-in form."""

    async def get(self, request):
        from web.security import who
        body, ctype = _file("index.html")
        if settings.auth and who(request) is None:
            body = body.replace(b"<body>", b'<body data-signed-in="no">', 1)
        return self.bytes(body, content_type=ctype, headers=HEADERS)


class Static(View):
    """GET /ui/{name}: a file of the analyst's page."""
    async def get(self, request, name: str):
        found = _file(name)
        if found is None:
            return self.json({"error": f"no file {name}"}, status=404)
        return self.bytes(found[0], content_type=found[1], headers=HEADERS)


#: An alert id (``sensor|type|entity|window``), and an entity (a sensor name or an address), as the scorer writes
#: them; anything else cannot name an alert or an entity, and is refused before it reaches Kafka.
ALERT_ID = re.compile(r"^[A-Za-z0-9._:~*-]{1,128}\|[a-z-]{1,32}\|[A-Za-z0-9._:*-]{1,128}\|[0-9]{1,16}$")
ENTITY = re.compile(r"^[A-Za-z0-9._:*-]{1,128}$")
NOTE_CHARS = 500


def check_action(body) -> dict:
    """An analyst's action, checked: every field bounded in length and characters, types from a closed set."""
    from app.detect.scorer import FAMILIES
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    kind = body.get("action")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > NOTE_CHARS or not note.replace("\n", " ").isprintable():
        raise ValueError(f"note must be text of at most {NOTE_CHARS} printable characters")
    if kind == "ack":
        if not isinstance(body.get("id"), str) or not ALERT_ID.fullmatch(body["id"]):
            raise ValueError("ack needs the id of an alert (sensor|type|entity|window, at most 300 characters)")
        return {"action": "ack", "id": body["id"], "note": note}
    if kind == "suppress":
        if body.get("type") not in FAMILIES:
            raise ValueError(f"type must be one of {', '.join(FAMILIES)}")
        if not isinstance(body.get("entity"), str) or not ENTITY.fullmatch(body["entity"]):
            raise ValueError("entity must be a sensor name or an address (at most 128 of A-Z a-z 0-9 . _ : * -)")
        for_s = body.get("for_s", 3600)
        if type(for_s) is not int or not 60 <= for_s <= 30 * 86400:
            raise ValueError("for_s must be a whole number of seconds from 60 to 2592000")
        return {"action": "suppress", "type": body["type"], "entity": body["entity"], "for_s": for_s, "note": note}
    if kind == "lift":
        if body.get("type") not in FAMILIES or not isinstance(body.get("entity"), str) \
                or not ENTITY.fullmatch(body["entity"]):
            raise ValueError("lift needs the type and entity of a suppression")
        return {"action": "lift", "type": body["type"], "entity": body["entity"], "note": note}
    raise ValueError("action must be 'ack', 'suppress' or 'lift'")


#: Failed logins per client address (a token has 256 bits; this only keeps the log and CPU quiet).
login_failures = RateLimiter(per_minute=10, burst=10)


class Login(View):
    """POST /v1/login {"token": API token}: sets the page's session cookie (HttpOnly, SameSite=Strict)."""

    async def post(self, request):
        from web.security import from_the_page, keyring
        if not from_the_page(request):
            return self.json({"error": "sign in from the page (a cross-site form may not sign anyone in)"}, status=403)
        addr = request.remote or "?"
        try:
            body = json.loads(await request.text() or "null")
            token = body["token"] if isinstance(body, dict) and isinstance(body.get("token"), str) else None
        except (ValueError, RecursionError):   # RecursionError: a body nested thousands deep
            token = None
        if token is None:
            return self.json({"error": 'expected {"token": "..."}'}, status=400)
        p = keyring.principal(token)
        if p is None or not p.reader:
            wait = login_failures.take(addr)
            if wait:
                return self.json({"error": "too many failed sign-ins; wait"}, status=429,
                                 headers={"Retry-After": str(int(wait) + 1)})
            return self.json({"error": "that is not an API token"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="flowsight"'})
        response = self.json({"signed_in": p.name})
        response.set_cookie(SESSION_COOKIE, keyring.issue_session(p.name), max_age=SESSION_S, httponly=True,
                            samesite="Strict", secure=bool(settings.tls_cert), path="/")
        return response


class Logout(View):
    """POST /v1/logout: ends every session of the signed-in name, on every worker (a record on topic
    ``actions`` that each worker reads, web/security.py), and clears the cookie."""

    async def post(self, request):
        from web.security import from_the_page, keyring, who
        if not from_the_page(request):
            return self.json({"error": "sign out from the page"}, status=403)
        p = who(request)
        if p is not None and p.cookie:
            at_ms = int(time.time() * 1000)
            keyring.sign_out(p.name, at_ms)
            try:
                fut = await actions.send(key=p.name.encode(), value={"action": "logout", "name": p.name,
                                                                     "at_ms": at_ms})
                await fut
            except KafkaError as exc:
                return self.json({"error": f"Kafka is unavailable ({type(exc).__name__}); sign out again"},
                                 status=503, headers={"Retry-After": "5"})
        response = self.json({"signed_in": None})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


class Actions(View):
    """POST /v1/actions: an analyst's ack of an alert, suppression of a (type, entity) or lifting of one; each
    recorded with who (the token's name), when and a note."""

    async def post(self, request):
        from agents import ledger
        from web.security import principal
        try:
            action = check_action(json.loads(await request.text() or "null"))
        except RecursionError:
            return self.json({"error": "expected a JSON object, not one nested that deep"}, status=400)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        if action["action"] == "ack" and action["id"] not in ledger.alert_ids:
            if not ledger.caught_up["alerts"]:
                return self.json({"error": "this worker is still reading the alerts; retry"}, status=503,
                                 headers={"Retry-After": "2"})
            return self.json({"error": f"no alert {action['id']}"}, status=404)
        if action["action"] == "lift" and entity_key(action["type"], action["entity"]) not in \
                {entity_key(s["type"], s["entity"]) for s in ledger.ledger.active(int(time.time() * 1000))}:
            return self.json({"error": f"no active suppression of {action['type']} {action['entity']}"}, status=404)
        p = principal(request)
        action.update(by=p.name if p is not None else None, at_ms=int(time.time() * 1000))
        key = action.get("id") or entity_key(action["type"], action["entity"])
        try:
            fut = await actions.send(key=key.encode(), value=action)
            await fut
        except KafkaError as exc:
            return self.json({"error": f"Kafka is unavailable ({type(exc).__name__}); retry"}, status=503,
                             headers={"Retry-After": "5"})
        return self.json({"accepted": action}, status=202)


class Suppressions(View):
    """GET /v1/suppressions: the suppressions active now, with who made them, when, why and until when."""

    async def get(self, request):
        from agents import ledger
        now_ms = int(time.time() * 1000)
        return self.json({"suppressions": ledger.ledger.active(now_ms), "now_ms": now_ms,
                          "complete": ledger.caught_up["actions"]})
