"""Who may call what, how much, and what a response may show.

One aiohttp middleware in front of every route:

* authentication: ``Authorization: Bearer TOKEN`` (sensor, API or the workers' cluster secret) or the
  page's session cookie; ``401`` with ``WWW-Authenticate`` when there is none or it is wrong, ``403``
  when the caller is known but not allowed (a sensor token reading flows, an API token uploading);
* the routes without a token: liveness and readiness probes, the OpenAPI document, the page's
  static files and its login;
* cookie-authenticated writes must come from the page itself (Origin and a custom header), so another
  site cannot post actions with an analyst's cookie;
* security headers on every response, and no stack trace or file path in any error body: an
  unexpected exception is logged with an id and answered ``500 {"error": ..., "id": ...}``.

The web server itself (``FlowsightWeb``) closes a connection that sends nothing for
``client_idle_timeout_s`` (a client trickling its headers included), and speaks TLS when a
certificate is set.
"""
from __future__ import annotations

import logging
import secrets
import ssl

from aiohttp import web
from aiohttp.web_runner import AppRunner
from faust.web.drivers import aiohttp as faust_aiohttp

from app.api.auth import SESSION_COOKIE, Principal, RateLimiter
from app.main import settings
from app.runtime import compat
from app.runtime.keys import keyring, self_url  # noqa: F401  (this worker's keys, and its own URL)

log = logging.getLogger(__name__)

PUBLIC_PATHS = {"/healthz", "/readyz", "/openapi.json", "/", "/v1/login", "/v1/logout", "/favicon.ico"}
PUBLIC_PREFIXES = ("/ui/",)
SENSOR_PATHS = {"/v1/captures"}
HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
upload_rate = RateLimiter(settings.sensor_uploads_per_min, max(5, settings.sensor_uploads_per_min // 10))


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a plain-text log line: control characters (a newline could forge a line) and
    anything beyond ASCII escaped, and cut to ``limit`` characters."""
    return text[:limit].encode("ascii", "backslashreplace").decode("ascii").translate(_CONTROLS)


_CONTROLS = {i: f"\\x{i:02x}" for i in [*range(32), 127]}


def bearer(request: web.Request) -> str:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def who(request: web.Request) -> Principal | None:
    token = bearer(request)
    if token:
        return keyring.principal(token)
    cookie = request.cookies.get(SESSION_COOKIE)
    return keyring.session(cookie) if cookie else None


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def allowed(request: web.Request, p: Principal) -> str | None:
    """None when ``p`` may make this request, else why not (a 403)."""
    path = request.path
    if path in SENSOR_PATHS:
        if p.internal or p.sensors:
            return None
        return "this token may not upload; uploads take a sensor token"
    if path.startswith("/v1/blocks/"):
        sensor = path[len("/v1/blocks/"):].split("~", 1)[0]
        if p.reader or p.may_upload_as(sensor):
            return None
        return "a sensor token reads only its own sensor's blocks"
    if not p.reader:
        return "a sensor token may only upload; reading takes an API token"
    if p.cookie and request.method not in ("GET", "HEAD") and not from_the_page(request):
        # a write riding on the page's cookie must come from the page (no cross-site form posts)
        return "a write with the page's session must come from the page"
    return None


def from_the_page(request: web.Request) -> bool:
    """A request the page sent: its custom header (a cross-site form or simple request cannot set one), and
    an Origin, when there is one, of this very scheme and host."""
    origin = request.headers.get("Origin")
    return request.headers.get("X-Flowsight-Page") == "1" and (
        origin is None or origin == f"{request.scheme}://{request.host}")


@web.middleware
async def guard(request: web.Request, handler):
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        response = exc if exc.status < 400 else _error(exc.status, exc.reason)
    except (UnicodeError, RecursionError) as exc:   # a client's malformed text or nesting: its fault, one line
        log.info("malformed request refused: %s %s: %s", request.method, printable(request.path), type(exc).__name__)
        response = _error(400, "malformed request: text that is not valid UTF-8, or nested too deep")
    except Exception:
        ref = secrets.token_hex(6)
        log.exception("error %s serving %s %s", ref, printable(request.method), printable(request.path))
        response = web.json_response({"error": "internal error; the worker logged it", "id": ref}, status=500)
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    return response


async def _guarded(request: web.Request, handler):
    path = request.path
    if not settings.auth or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    p = who(request)
    if p is None:
        reason = "a token is required" if not bearer(request) else "the token is not valid"
        return _error(401, f"{reason}: send Authorization: Bearer TOKEN",
                      **{"WWW-Authenticate": 'Bearer realm="flowsight"'})
    why = allowed(request, p)
    if why is not None:
        return _error(403, why)
    request["principal"] = p
    return await handler(request)


def principal(request) -> Principal | None:
    """The caller of a Faust view's request (None when authentication is off)."""
    return request.get("principal") if hasattr(request, "get") else None


def client_ssl() -> ssl.SSLContext | bool:
    """How a worker talks to itself and its peers: trusting our own certificate as well as the system's."""
    if not settings.tls_cert:
        return False
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(settings.tls_cert)
    return ctx


class _BadRequestsQuiet(logging.Filter):
    """A malformed request is the client's fault: one line without a traceback (a hostile client
    must not be able to fill the log with stack traces)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused (%s): %s", (exc.code, str(exc.message).strip()[:200])
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        return True


http_log = logging.getLogger("flowsight.http")
http_log.addFilter(_BadRequestsQuiet())


def harden(response: web.StreamResponse) -> web.StreamResponse:
    """What every response carries: the security headers, no server version, HSTS under TLS."""
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    response.headers["Server"] = "flowsight"
    if settings.tls_cert:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


async def _harden(request: web.BaseRequest, response: web.StreamResponse) -> None:
    harden(response)


class FlowsightWeb(faust_aiohttp.Web):
    """Faust's aiohttp server with our middleware, client timeouts and TLS."""

    def __init__(self, app, **kwargs):
        super().__init__(app, **kwargs)
        self.web_app.middlewares.append(guard)
        self.web_app.on_response_prepare.append(_harden)
        # keepalive_timeout also bounds a new connection's wait for a complete request head
        # a cursor names every partition: long enough for 1024 of them in the request line
        # Faust's own runner, replaced (app/runtime/compat.py)
        runner = compat.hardened_runner(harden) if settings.compat_patches else AppRunner
        self._runner = runner(self.web_app, access_log=None, keepalive_timeout=settings.client_idle_timeout_s,
                              max_line_size=65536, logger=http_log)

    async def on_start(self) -> None:
        if settings.auth and not (keyring.sensor_entries or keyring.api_entries):
            log.error("authentication is on but no token is configured (FLOWSIGHT_SENSOR_TOKENS, "
                      "FLOWSIGHT_API_TOKENS): every upload and read is refused with 401; make tokens with "
                      "`faust -A app token NAME --file F`")
        if not settings.cluster_secret_file:
            log.warning("no FLOWSIGHT_CLUSTER_SECRET_FILE: this worker made up its own secret, so other workers "
                        "cannot route block lookups to it and its page sessions are valid on it alone")
        if settings.tls_cert:  # table routing to peers over HTTPS, trusting our certificate too
            import aiohttp
            self.app.http_client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl()))
        await super().on_start()

