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


#: Kafka offsets are signed 64-bit; a skip counts records inside one message.
MAX_OFFSET = (1 << 63) - 1
MAX_SKIP = 1 << 31
MAX_PARTITIONS = 1 << 16


def _whole(o, upto: int) -> int:
    """A JSON whole number from 0 to ``upto`` (a float, a boolean or a huge number is no offset)."""
    if type(o) is not int:
        raise CursorError("cursor is not one this service issued; omit it to start at the beginning")
    if not 0 <= o <= upto:
        raise CursorError("cursor holds a negative or impossible partition or offset")
    return o


def _position(o) -> Position:
    if isinstance(o, list):
        if len(o) != 2:
            raise ValueError
        off, skip = _whole(o[0], MAX_OFFSET), _whole(o[1], MAX_SKIP)
        return (off, skip) if skip else off
    return _whole(o, MAX_OFFSET)


def decode(cursor: str, partitions: int | None = None) -> dict[int, Position]:
    """The positions of a cursor; ``partitions``: how many the topic has (a cursor naming another is refused)."""
    if len(cursor) > 64 * 1024:
        raise CursorError("cursor is too long to be one this service issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        out = {_whole(int(p), MAX_PARTITIONS) if str(p).isdigit() else -1: _position(o) for p, o in data.items()}
    except CursorError:
        raise
    except (ValueError, TypeError, AttributeError, RecursionError):
        raise CursorError("cursor is not one this service issued; omit it to start at the beginning") from None
    if any(p < 0 or (partitions is not None and p >= partitions) for p in out):
        raise CursorError("cursor names a partition the topic does not have")
    return out


def split(position: Position) -> tuple[int, int]:
    """``(offset, records of that message to skip)``."""
    return position if isinstance(position, tuple) else (position, 0)
