"""Historic replay: does scoring keep up with a month of one sensor's captures shipped at pipeline speed?

    .venv/bin/python bench/replay.py [DAYS]        # default 30: a month of one-minute windows

Generates DAYS of one sensor's ordinary traffic (the warm-up of tests/integration/test_clocks.py: a few
conversations a minute with a daily rhythm, about 7,000 packets an hour), as one capture per week, starts
one Kafka broker and one worker (8 partitions, placebo off), uploads the weeks oldest first, and then
notes, from the last upload's 202:

- when every flow record is out (the pipeline's part), read straight from the flows topic;
- when every window is scored (the scorer's part), from /v1/health;

and prints windows, the seconds of each, the windows scored per second, and the worker's CPU-seconds.
Scoring keeps up when it ends about when the records do.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import Broker, Tokens, Worker, cpu_s, flow_packets, wait_ready  # noqa: E402
from tests.integration.test_clocks import warm_up  # noqa: E402


async def run(days: int) -> dict:
    t_end = 1_619_605_800                                   # 2021-04-28 10:30 UTC, as in the test
    weeks, windows = warm_up(t_end, days=days)
    packets = sum((len(w) - 24) // 70 for w in weeks)         # 16 + 54 bytes a packet (tests/pcapgen.tcp_pcap)
    broker, tokens = Broker(), Tokens()
    broker.run("wipe")
    broker.run("start", "1")
    tag = f"replay{int(time.time())}"
    w = Worker(broker, tokens, tag, 0).start()
    try:
        await wait_ready([w], f"{tag}-")
        cpu0 = cpu_s(w.proc.pid)
        async with aiohttp.ClientSession(headers=tokens.headers, timeout=aiohttp.ClientTimeout(total=600)) as s:
            for body in weeks:
                async with s.put(w.url + "/v1/captures", data=body,
                                 headers={"X-Sensor": "replay", "Content-Type": "application/vnd.tcpdump.pcap"}) as r:
                    assert r.status == 202, await r.text()
            t0 = time.monotonic()
            flows_task = asyncio.ensure_future(flow_packets(broker.bootstrap, f"{tag}-flows", packets, 900))
            scored_s = None
            while time.monotonic() - t0 < 900:
                m = (await w.health(s))["scoring"]["models"].get("replay", {})
                if m.get("scored_windows", 0) >= windows:
                    scored_s = time.monotonic() - t0
                    break
                await asyncio.sleep(0.5)
            got, flows_s, _, _ = await flows_task
        return {"days": days, "windows": windows, "packets": packets, "records_out_s": round(flows_s, 1),
                "scored_s": scored_s and round(scored_s, 1),
                "windows_per_s": scored_s and round(windows / scored_s), "worker_cpu_s": round(cpu_s(w.proc.pid) - cpu0, 1),
                "packets_out": got}
    finally:
        w.stop()
        broker.run("stop")


def main() -> int:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    res = asyncio.run(run(days))
    print(json.dumps(res))
    print(f"\n| days | windows | records out (s) | all scored (s) | windows/s | worker CPU-s |\n|---|---|---|---|---|---|\n"
          f"| {res['days']} | {res['windows']:,} | {res['records_out_s']} | {res['scored_s']} | {res['windows_per_s']} "
          f"| {res['worker_cpu_s']} |")
    return 0 if res["scored_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
