"""An upload still arriving holds its sensor's clock (web.ingest.Arriving): when it ends while its announce is
still being sent, no send is cut off, and each partition hears the release after the announce."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace


class SlowParts:
    """flow_parts as the producer sees it: each send is queued at once, and its future resolves later."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, dict]] = []
        self.futures: list[asyncio.Future] = []

    async def send(self, key: bytes, value: bytes, partition: int) -> asyncio.Future:
        self.sent.append((partition, json.loads(value)))
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, lambda: fut.done() or fut.set_result(None))
        self.futures.append(fut)
        await asyncio.sleep(0.01)                       # the producer's queue takes its time
        return fut


async def test_an_upload_that_ends_while_its_hold_is_being_announced_cuts_no_send_and_releases_last(monkeypatch):
    import web.routes  # noqa: F401  (imports web.ingest in its order)
    from web import ingest
    parts = SlowParts()
    monkeypatch.setattr(ingest, "flow_parts", parts)
    monkeypatch.setattr(ingest, "settings", SimpleNamespace(partitions=4))
    up = ingest.Arriving("s")
    up.task = asyncio.ensure_future(up._hold(1_000))
    await asyncio.sleep(0.015)                          # the announce is half-way over the partitions
    up.end()
    for _ in range(100):
        if not ingest._orphans:
            break
        await asyncio.sleep(0.02)
    assert not ingest._orphans
    await asyncio.sleep(0.1)
    assert not any(f.cancelled() for f in parts.futures)
    for p in range(4):
        seen = [m for q, m in parts.sent if q == p]
        assert [m.get("release", False) for m in seen] == [False, True], (p, seen)
        assert seen[0]["top"] == 1_000 and seen[0]["block"] == seen[1]["block"] == up.name
