"""Tokens, sessions and rate limits: the pure part of Flowsight's access control.

Two files hold who may do what, one ``name:hash`` line each (``#`` starts a comment):

* ``FLOWSIGHT_SENSOR_TOKENS``: ``sensor:hash``. The token decides the sensor an upload is counted
  under. A line ``*:hash`` is a relay token: it may upload under any sensor it names in ``X-Sensor``.
* ``FLOWSIGHT_API_TOKENS``: ``name:hash``. Readers of flows, anomalies, alerts and health, and
  the analyst's page.

Only salted hashes are stored: ``sha256$SALT$HEX`` with HEX = sha256(SALT || token). Tokens are
32 random bytes, so a slow password hash would add cost and no strength. Every check compares
every stored hash in constant time, so a timing side channel neither tells which line matched nor how
much of a hash did.

Workers also share a cluster secret (``FLOWSIGHT_CLUSTER_SECRET_FILE``): it authenticates a worker's
own requests (the placebo upload, block-id lookups routed to the worker that owns the block) and
signs the page's session cookies, so any worker accepts a session another one issued.

Create a token with ``faust -A app token NAME --file F`` (``--sensor`` or ``--api``); the token is
printed once and only its hash is written.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.records import NAME_PATTERN

#: a token's sensor: a sensor name, or ``*`` for every sensor
NAME = re.compile(r"^(\*|" + NAME_PATTERN[1:-1] + r")$")
SESSION_COOKIE = "flowsight_session"
SESSION_S = 12 * 3600


class AuthError(ValueError):
    """A token file that cannot be used (the message says which line and why)."""


def new_token() -> str:
    return "fs_" + secrets.token_urlsafe(32)


def hash_token(token: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    return f"sha256${salt.hex()}${hashlib.sha256(salt + token.encode()).hexdigest()}"


def _parse_hash(text: str) -> tuple[bytes, bytes]:
    algo, salt, digest = text.split("$")
    if algo != "sha256" or len(digest) != 64:
        raise ValueError
    return bytes.fromhex(salt), bytes.fromhex(digest)


def read_tokens(path: str | os.PathLike | None) -> list[tuple[str, bytes, bytes]]:
    """``[(name, salt, digest)]`` from a token file, or AuthError naming the bad line."""
    if not path:
        return []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AuthError(f"cannot read token file {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.rpartition(":")
        try:
            if not sep or not NAME.match(name):
                raise ValueError
            out.append((name, *_parse_hash(hashed)))
        except ValueError:
            raise AuthError(f"{path} line {n}: expected NAME:sha256$SALT$HEX (make one with "
                            "`faust -A app token NAME`)") from None
    return out


def add_token(path: str | os.PathLike, name: str) -> str:
    """Append a new token's hash for ``name`` to ``path`` (created 0600) and return the token."""
    if not NAME.match(name):
        raise AuthError(f"name {name!r}: use 1-128 letters, digits, '.', '_', ':' or '-' (or * for a relay)")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{name}:{hash_token(token)}\n")
    return token


def _match(entries: list[tuple[str, bytes, bytes]], token: str) -> list[str]:
    """Names whose hash the token matches; every entry is checked, whatever matched before."""
    found = []
    raw = token.encode()
    for name, salt, digest in entries:
        if hmac.compare_digest(hashlib.sha256(salt + raw).digest(), digest):
            found.append(name)
    return found


@dataclass(frozen=True)
class Principal:
    """Who a request is: the sensors it may upload as, whether it may read, whether it is a worker."""

    name: str
    sensors: frozenset[str] = frozenset()
    reader: bool = False
    internal: bool = False
    #: authenticated by the page's session cookie (its writes must come from the page)
    cookie: bool = False

    def may_upload_as(self, sensor: str) -> bool:
        return self.internal or "*" in self.sensors or sensor in self.sensors


@dataclass
class Keyring:
    """The tokens a worker accepts (sensor and API tokens, as salted hashes), the cluster secret that signs page
    sessions, and each API token's last sign-out."""

    sensor_entries: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    api_entries: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    cluster_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: API token name -> time (ms) of its last sign-out: the sessions issued before it are void
    signed_out: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, sensor_file: str = "", api_file: str = "", secret_file: str = "") -> Keyring:
        ring = cls(read_tokens(sensor_file), read_tokens(api_file))
        if secret_file:
            try:
                secret = Path(secret_file).read_text().strip()
            except OSError as exc:
                raise AuthError(f"cannot read cluster secret file {secret_file}: {exc.strerror}") from None
            if len(secret) < 16:
                raise AuthError(f"cluster secret in {secret_file} is shorter than 16 characters")
            ring.cluster_secret = secret
        return ring

    def principal(self, token: str) -> Principal | None:
        if not token or not token.isascii() or not token.isprintable():   # tokens are URL-safe ASCII
            return None
        sensors = _match(self.sensor_entries, token)
        readers = _match(self.api_entries, token)
        internal = hmac.compare_digest(token.encode(), self.cluster_secret.encode())
        if internal:
            return Principal("worker", reader=True, internal=True)
        if not sensors and not readers:
            return None
        return Principal((readers or sensors)[0], frozenset(sensors), bool(readers))

    # Sessions: NAME.EXPIRY.MAC, MAC = HMAC-SHA256(cluster secret, NAME.EXPIRY); no server-side state.
    def issue_session(self, name: str, now: float | None = None) -> str:
        """``name64.expiry_ms.mac``: a session of SESSION_S for the API token ``name``."""
        body = f"{base64.urlsafe_b64encode(name.encode()).decode()}.{int(((now or time.time()) + SESSION_S) * 1000)}"
        return f"{body}.{self._mac(body)}"

    def sign_out(self, name: str, at_ms: int) -> None:
        """Every session of ``name`` issued up to ``at_ms`` is void from now on (on every worker that hears it)."""
        self.signed_out[name] = max(self.signed_out.get(name, 0), at_ms)

    def session(self, cookie: str, now: float | None = None) -> Principal | None:
        if not cookie.isascii():   # one we issued is ASCII; hmac compares nothing else
            return None
        try:
            name64, expiry, mac = cookie.split(".")
            body = f"{name64}.{expiry}"
            expiry_ms = int(expiry)
            if not hmac.compare_digest(mac, self._mac(body)) or expiry_ms < (now or time.time()) * 1000:
                return None
            name = base64.urlsafe_b64decode(name64).decode()
            # void once its token is gone from the token file, or its name signed out after it was issued
            if name not in {n for n, _, _ in self.api_entries} or \
                    expiry_ms - SESSION_S * 1000 <= self.signed_out.get(name, -1):
                return None
            return Principal(name, reader=True, cookie=True)
        except (ValueError, UnicodeDecodeError):
            return None

    def _mac(self, body: str) -> str:
        return hmac.new(self.cluster_secret.encode(), b"session:" + body.encode(), hashlib.sha256).hexdigest()


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts of ``burst``."""

    def __init__(self, per_minute: int, burst: int, max_keys: int = 100_000):
        self.rate, self.burst, self.max_keys = per_minute / 60.0, float(burst), max_keys
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a request may go now (and count it), else the seconds until one may."""
        now = time.monotonic() if now is None else now
        level, at = self.buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level >= 1.0:
            self.buckets[key] = (level - 1.0, now)
            if len(self.buckets) > self.max_keys:
                self.buckets.pop(next(iter(self.buckets)))
            return 0.0
        self.buckets[key] = (level, now)
        return (1.0 - level) / self.rate if self.rate > 0 else float("inf")
