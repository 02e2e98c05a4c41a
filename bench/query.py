"""Searching a retained flows topic: records read per second, and how much a time-bounded search reads.

    .venv/bin/python bench/query.py [MILLION_RECORDS] [DAYS]      (default: 10 million records over 10 days)

It starts a Kafka broker of its own (compose/kafka/kafka.sh, port 39392), writes MILLION_RECORDS million flow
records to a flows topic of 4 partitions exactly as the flows agent writes them (batches of 500 records of one
window, each message's record time its window's capture time), spread over DAYS days of capture time and
50,000 hosts, then runs the searches of GET /v1/flows and /v1/top (app.runtime.egress.search) in this process
and prints, per search, the records it read, the megabytes of messages it fetched (the time index,
app/flows/index.py, spares it those outside a time range; BENCH_QUERY_INDEX=0 writes none), the CPU-seconds
and the records per CPU-second (each search run BENCH_QUERY_REPEAT times, 3 by default; the run of least CPU is shown). The search
is one consumer: what one worker does for one query. BENCH_QUERY_COLUMNS=0 writes the messages without their
columns (as written before them).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PORT = int(os.environ.get("BENCH_KAFKA_PORT", "39392"))
os.environ.setdefault("FLOWSIGHT_BROKER", f"kafka://127.0.0.1:{PORT}")
os.environ.setdefault("FLOWSIGHT_PARTITIONS", "4")
os.environ.setdefault("FLOWSIGHT_QUIET", "true")
os.environ.setdefault("FLOWSIGHT_PLACEBO_SOURCE", "false")

import app.main  # noqa: E402,F401  (the worker's settings and modules, as a worker loads them)
from app import records  # noqa: E402
from app.flows.index import Index  # noqa: E402
from app.query.filter import compile_filter  # noqa: E402
from app.query.top import Query, Top, Visit  # noqa: E402

TOPIC = "bench-query-flows"
W_MS = 60_000
DAY_MS = 86_400_000
T0 = 1_764_547_200_000   # 2025-12-01 00:00 UTC
#: BENCH_QUERY_COLUMNS=0: messages without their columns (as written before them): searches cut fields out of text
COLUMNS = os.environ.get("BENCH_QUERY_COLUMNS", "1") != "0"
#: CPU-seconds spent writing the records: as JSON messages, and as JSON messages with their columns
WRITE_S = {"json": 0.0, "json+columns": 0.0}
#: how many times each search runs (the machine's noise: the run of least CPU is shown)
REPEAT = int(os.environ.get("BENCH_QUERY_REPEAT", "3"))


def kafka(*args: str) -> None:
    env = {**os.environ, "FLOWSIGHT_VAR": str(ROOT / "var" / "bench-query"), "KAFKA_BASE_PORT": str(PORT)}
    subprocess.run([str(ROOT / "compose" / "kafka" / "kafka.sh"), *args], env=env, check=True, capture_output=True)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def fill(n_records: int, days: int) -> int:
    """Write the records; returns how many messages."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{PORT}")
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, 4, 1, topic_configs={"retention.ms": "-1"}),
                               NewTopic(TOPIC + "-index", 4, 1, topic_configs={"retention.ms": "-1"})])
    await admin.close()
    prod = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{PORT}", max_batch_size=1 << 20, linger_ms=20,
                            max_request_size=4 << 20)
    await prod.start()
    rng = random.Random(1)
    windows = days * DAY_MS // W_MS
    per_window = max(1, n_records // windows)
    messages = 0
    sent = 0
    acks = []
    for wi in range(windows):
        w = T0 + wi * W_MS
        made = []
        for _ in range(per_window):
            src, dst = f"10.{rng.randint(0, 199)}.{rng.randint(0, 249)}.{rng.randint(1, 250)}", \
                f"198.51.{rng.randint(0, 99)}.{rng.randint(1, 250)}"
            proto = 6 if rng.random() < 0.8 else 17
            dport = rng.choice((443, 443, 443, 80, 53, 22, 8080, 123)) if proto == 6 else rng.choice((53, 123, 443))
            key = records.flow_key("tap1", src, dst, proto, rng.randint(1024, 65535), dport, 0, 0)
            first = w + rng.randint(0, W_MS - 1000)
            fields, counts = key.split("|"), [rng.randint(1, 50), rng.randint(60, 200_000), first,
                                              first + rng.randint(0, 900), 0x1B if proto == 6 else 0]
            made.append((fields, counts, sent))
            sent += 1
        # what writing costs the flows agent: the records' JSON text and messages, then their columns besides
        t0 = time.process_time()
        texts = [records.record_json(w, f, c, W_MS, 2, False, '"tap1"', '["b"]', i) for f, c, i in made]
        records.batches(texts)
        t1 = time.process_time()
        rows = [records.column_row(f, c, False) for f, c, _ in made]
        out = records.flows_messages(texts, rows, "tap1")
        t2 = time.process_time()
        WRITE_S["json"] += t1 - t0
        WRITE_S["json+columns"] += t2 - t0
        for batch, headers in out:
            acks.append((await prod.send(TOPIC, batch, partition=messages % 4, timestamp_ms=w,
                                         headers=headers if COLUMNS else None), w))
            messages += 1
        if sent >= n_records:
            break
    await prod.flush()
    # the time index, as the flows agent writes it (BENCH_QUERY_INDEX=0: none)
    idx = Index(int(os.environ.get("FLOWSIGHT_FLOWS_INDEX_EVERY", "256")))
    for fut, w in acks if os.environ.get("BENCH_QUERY_INDEX", "1") != "0" else ():
        meta = fut.result()
        entry = idx.add(meta.partition, meta.offset, w)
        if entry is not None:
            await prod.send(TOPIC + "-index", json.dumps(entry).encode(), partition=meta.partition)
    await prod.flush()
    await prod.stop()
    return messages


async def run(name: str, query: Query, top: str | None = None) -> dict:
    """One search; ``top``: an aggregate by that element instead (GET /v1/top)."""
    from app.runtime.egress import answer_body, pages

    agg = Top(top) if top else None
    got, scanned, fetched = 0, 0, 0
    c0, t0 = cpu_s(), time.perf_counter()
    # the records as GET /v1/flows answers them: each kept record's stored text, joined into the answer
    async for page in pages(TOPIC, query, visit=Visit(agg) if agg else None, partitions=4, raw=not top):
        if not top:
            answer_body({k: v for k, v in page.items() if k not in ("ends", "count")})
        got += page["count"]
        scanned += page["scanned"]
        fetched += page["fetched"]
    cpu, wall = cpu_s() - c0, time.perf_counter() - t0
    return {"search": name, "matched": agg.records if agg else got, "read": scanned, "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2), "fetched_mb": round(fetched / 1e6)}


async def main() -> None:
    n = int(float(sys.argv[1]) * 1_000_000) if len(sys.argv) > 1 else 10_000_000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    kafka("wipe")
    kafka("start", "1")
    try:
        t = time.perf_counter()
        messages = await fill(n, days)
        print(f"{n:,} records in {messages:,} messages over {days} days of capture time, written in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
        write = (f"Writing them (as the flows agent does, in this process): JSON text and messages "
                 f"{WRITE_S['json'] * 1e6 / n:.2f} µs a record; with their columns "
                 f"{WRITE_S['json+columns'] * 1e6 / n:.2f} µs a record.")
        day = T0 + (days // 2) * DAY_MS
        cases = [
            ("every record, no filter", Query.of(None, None, None, W_MS), None),
            ("'dst port 443 and src net 10.0.0.0/8'", Query.of(compile_filter("dst port 443 and src net 10.0.0.0/8"),
                                                               None, None, W_MS), None),
            ("'bytes > 150k' (no needle: every message's columns read)",
             Query.of(compile_filter("bytes > 150k"), None, None, W_MS), None),
            ("'host 10.1.2.3' (needle: messages without it unread)",
             Query.of(compile_filter("host 10.1.2.3"), None, None, W_MS), None),
            (f"one day of {days}, 'proto udp'", Query.of(compile_filter("proto udp"), day, day + DAY_MS, W_MS), None),
            (f"top srcip, one hour of {days} days", Query.of(None, day, day + 3_600_000, W_MS), "srcip"),
            ("top dstport of 'proto tcp', every record", Query.of(compile_filter("proto tcp"), None, None, W_MS),
             "dstport"),
            (f"top srcip, one day of {days}", Query.of(None, day, day + DAY_MS, W_MS), "srcip"),
        ]
        rows = []
        for name, q, top in cases:
            tries = []
            for _ in range(REPEAT):
                tries.append(await run(name, q, top))
                print(json.dumps(tries[-1]), file=sys.stderr)
            r = min(tries, key=lambda x: x["cpu_s"])
            r["cpu_all"] = " ".join(str(x["cpu_s"]) for x in tries)
            r["read_per_cpu_s"] = round(r["read"] / max(r["cpu_s"], 1e-9))
            rows.append(r)
        print(f"\n{n:,} flow records, 4 partitions, {days} days; one search = one consumer in one process; "
              f"each search run {REPEAT} times, the run of least CPU shown (every run's CPU-s beside it)\n")
        print(write + "\n")
        print("| search | matched | records read | MB fetched | CPU-s | wall-s | records read per CPU-s | "
              "CPU-s of each run |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['search']} | {r['matched']:,} | {r['read']:,} ({r['read'] / n:.1%}) | {r['fetched_mb']:,} | "
                  f"{r['cpu_s']} | "
                  f"{r['wall_s']} | {r['read_per_cpu_s']:,} | {r['cpu_all']} |")
    finally:
        kafka("stop")


if __name__ == "__main__":
    asyncio.run(main())
