"""Egress cursors: opaque, URL-safe strings holding where to go on in each partition. Pure code.

A position is the next Kafka offset, or ``(offset, skip)`` when an answer ended inside a
message that carries several records (a flows batch): the first ``skip`` records of the
message at ``offset`` were delivered already.
"""
from __future__ import annotations

import base64
import json

Position = int | tuple[int, int]


class CursorError(ValueError):
    """A cursor that this service did not issue."""


def encode(positions: dict[int, Position]) -> str:
    data = {str(p): (list(o) if isinstance(o, tuple) else o) for p, o in sorted(positions.items())}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(o) -> Position:
    if isinstance(o, list):
        if len(o) != 2:
            raise ValueError
        off, skip = int(o[0]), int(o[1])
        if off < 0 or skip < 0:
            raise CursorError("cursor holds a negative partition or offset")
        return (off, skip) if skip else off
    out = int(o)
    if out < 0:
        raise CursorError("cursor holds a negative partition or offset")
    return out


def decode(cursor: str) -> dict[int, Position]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        out = {int(p): _position(o) for p, o in data.items()}
    except CursorError:
        raise
    except (ValueError, TypeError, AttributeError):
        raise CursorError("cursor is not one this service issued; omit it to start at the beginning") from None
    if any(p < 0 for p in out):
        raise CursorError("cursor holds a negative partition or offset")
    return out


def split(position: Position) -> tuple[int, int]:
    """``(offset, records of that message to skip)``."""
    return position if isinstance(position, tuple) else (position, 0)
