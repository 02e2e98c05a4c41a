"""Egress cursors: opaque, URL-safe strings holding the next Kafka offset per partition. Pure code."""
from __future__ import annotations

import base64
import json


class CursorError(ValueError):
    """A cursor that this service did not issue."""


def encode(offsets: dict[int, int]) -> str:
    raw = json.dumps({str(p): o for p, o in sorted(offsets.items())}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> dict[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        out = {int(p): int(o) for p, o in data.items()}
    except (ValueError, TypeError, AttributeError):
        raise CursorError("cursor is not one this service issued; omit it to start at the beginning") from None
    if any(p < 0 or o < 0 for p, o in out.items()):
        raise CursorError("cursor holds a negative partition or offset")
    return out
