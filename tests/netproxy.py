"""A TCP proxy for fault tests: adds latency with jitter to every piece of data, and can reset one
connection mid-stream. Run: python tests/netproxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS JITTER_MS
RESET_AFTER_BYTES STATS_FILE. It writes its counters to STATS_FILE as JSON every second."""
from __future__ import annotations

import asyncio
import json
import random
import sys
import time

stats = {"connections": 0, "pieces_delayed": 0, "bytes": 0, "resets": 0, "delay_ms_total": 0.0}


async def pipe(reader, writer, delay_s, jitter_s, conn, reset_after):
    queue: asyncio.Queue = asyncio.Queue()

    async def pump():  # keeps order: each piece leaves no earlier than its own due time
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(pump())
    try:
        while data := await reader.read(65536):
            d = max(0.0, delay_s + random.uniform(-jitter_s, jitter_s))
            stats["pieces_delayed"] += 1
            stats["delay_ms_total"] += d * 1000
            stats["bytes"] += len(data)
            conn["bytes"] += len(data)
            await queue.put((time.monotonic() + d, data))
            if reset_after and not stats["resets"] and conn["bytes"] > reset_after:
                stats["resets"] += 1
                conn["reset"] = True
                break
        await queue.put((0, None))
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()
    finally:
        if conn.get("reset"):
            for w in conn["writers"]:
                w.transport.abort()  # an RST to both sides, mid-stream
        else:
            writer.close()


async def main():
    listen, target, delay_ms, jitter_ms, reset_after, stats_file = sys.argv[1:7]
    lh, lp = listen.rsplit(":", 1)
    th, tp = target.rsplit(":", 1)

    async def handle(cr, cw):
        stats["connections"] += 1
        try:
            ur, uw = await asyncio.open_connection(th, int(tp))
        except OSError:
            cw.transport.abort()
            return
        conn = {"bytes": 0, "writers": (cw, uw)}
        args = (int(delay_ms) / 1000, int(jitter_ms) / 1000, conn, int(reset_after))
        await asyncio.gather(pipe(cr, uw, *args), pipe(ur, cw, *args), return_exceptions=True)

    server = await asyncio.start_server(handle, lh, int(lp))
    async with server:
        while True:
            with open(stats_file, "w") as f:
                json.dump(stats, f)
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(main())
