"""Scale-out with workers capped by cgroup CPU quotas: 1, 2, 4 and 8 workers against one uncapped broker.

Run through bench/scale.sh. On a 2-core machine the broker and the workers share the cores, so a wall-clock
scale-out says little; capping each worker at a fraction of a core (cgroup v1 ``cpu.cfs_quota_us``, each
worker in a group of its own under /sys/fs/cgroup/cpu/flowsight-bench) makes every worker a machine of its
own size, and the question becomes whether N of them do N times the work.

For each worker count N (fresh topics, 8 partitions, Kafka as the only state):
1. N workers start uncapped and wait until they hold every partition (window-summaries included); then
   each is put into its own capped group.
2. A tiny upload (a few hundred packets of another sensor) is timed from its 202 to its last record on the
   flows topic: the latency that does not shrink with more workers (window close, idle flush, polls).
3. SIZE_MB of capture as FILES files (the seeded generator of bench/e2e.py) are shipped, file i to worker
   i mod N, all in flight, and the flows topic is read by this process (not capped, not counted) until
   every packet of the generator's truth is in a flow record.
4. Throughput = bytes / (wall - tiny latency). Per worker: CPU-s, time throttled by its quota, and what
   it held of the single-partition topics (window-summaries: the scoring; findings; actions).

Prints a Markdown table; writes bench/out/scale.json.

Environment: SCALE_QUOTA (cores per worker, default 0.1), SCALE_FILES (default 8), SCALE_REPEAT (rounds,
default 1; the table gives each count's median).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e
from e2e import Broker, Tokens, Worker, cpu_s, flow_packets, peak_rss_mb, wait_ready

from app.capture import synth

CGROUP = Path("/sys/fs/cgroup/cpu/flowsight-bench")
PERIOD_US = 100_000


class Group:
    """One cgroup v1 CPU group with a quota, holding one process (all its threads)."""

    def __init__(self, name: str, cores: float) -> None:
        self.path = CGROUP / name
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))

    def hold(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_s(self) -> float:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["throttled_time"]) / 1e9

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (CGROUP.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass


def make_files(size_mb: int, n: int) -> tuple[list[Path], int, int]:
    folder = e2e.OUT / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "meta.json"
    known = json.loads(meta.read_text()) if meta.exists() else {}
    files, packets = [], 0
    scale = size_mb / n / 1024
    for i in range(n):
        path = folder / f"{size_mb}mb-{i:02d}-of-{n}.pcap"
        if not path.exists() or path.name not in known:
            tr = synth.generate(seed=200 + i, conversations=int(200_000 * scale), packets=int(1_900_000 * scale),
                                inside=e2e.INSIDE, outside=e2e.OUTSIDE, v6_share=0.1, vlan_share=0.1,
                                start_s=1_767_225_600 + i * 600, duration_s=600, mean_payload=560,
                                in_memory=False, path=str(path))
            known[path.name] = int(tr.packets.sum())
            meta.write_text(json.dumps(known))
        files.append(path)
        packets += known[path.name]
    return files, packets, sum(f.stat().st_size for f in files)


async def held(w: Worker) -> list[str]:
    """The single-partition topics whose partition this worker holds."""
    async with aiohttp.ClientSession() as s:
        got = await w.assigned(s)
    return sorted({a.split(":")[0].split("-", 2)[-1] for a in got
                   if any(a.split(":")[0].endswith(t) for t in ("window-summaries", "findings", "actions"))})


async def tiny_latency(broker: Broker, w: Worker, topic: str) -> tuple[float, int]:
    """Seconds from the 202 of a tiny upload of its own sensor to its last record on the flows topic, and
    its packets."""
    tr = synth.generate(seed=7, conversations=30, packets=300, inside=10, outside=10,
                        start_s=1_767_225_600, duration_s=20)
    want = int(tr.packets.sum())
    async with aiohttp.ClientSession(headers=w.headers) as s:
        async with s.put(w.url + "/v1/captures", data=tr.pcap,
                         headers={"X-Sensor": "tiny", "Content-Type": "application/vnd.tcpdump.pcap"}) as r:
            assert r.status == 202, await r.text()
    t0 = time.monotonic()
    got, waited, _, _ = await flow_packets(broker.bootstrap, topic, want, timeout_s=120)
    if got < want:
        raise SystemExit(f"tiny upload: {got} of {want} packets")
    return time.monotonic() - t0, want


async def run(broker: Broker, tokens: Tokens, n: int, cores: float, files: list[Path], packets: int) -> dict:
    tag = f"scale{n}-{int(time.time())}"
    workers = [Worker(broker, tokens, tag, i).start() for i in range(n)]
    groups: list[Group] = []
    try:
        await wait_ready(workers, f"{tag}-")
        await asyncio.sleep(3)
        groups = [Group(f"{tag}-w{i}", cores) for i in range(n)]
        for g, w in zip(groups, workers):
            g.hold(w.proc.pid)
        single = [await held(w) for w in workers]
        tiny, tiny_packets = await tiny_latency(broker, workers[0], f"{tag}-flows")
        await asyncio.sleep(2)
        cpu0 = [cpu_s(w.proc.pid) for w in workers]
        thr0 = [g.throttled_s() for g in groups]
        b0 = cpu_s(broker.pid)
        t0 = time.monotonic()
        shipping = asyncio.create_task(e2e.ship_all(files, workers, in_flight=len(files)))
        # the flows topic holds the tiny upload's records too
        got, _, records, late = await flow_packets(broker.bootstrap, f"{tag}-flows", packets + tiny_packets,
                                                   timeout_s=3600)
        got -= tiny_packets
        await shipping
        wall = time.monotonic() - t0
        if got != packets:
            raise SystemExit(f"{n} worker(s): {got} packets read back, {packets} uploaded")
        return {"workers": n, "wall_s": wall, "tiny_s": tiny, "net_s": max(0.1, wall - tiny),
                "worker_cpu_s": [cpu_s(w.proc.pid) - c for w, c in zip(workers, cpu0)],
                "throttled_s": [g.throttled_s() - t for g, t in zip(groups, thr0)],
                "broker_cpu_s": cpu_s(broker.pid) - b0, "peak_rss_mb": [peak_rss_mb(w.proc.pid) for w in workers],
                "single_partition": single, "records": records, "late": late}
    finally:
        for g in groups:    # uncapped first: a capped worker takes a long time to stop
            g.remove()
        for w in workers:
            w.stop()


def main() -> int:
    if not os.access(CGROUP.parent, os.W_OK):
        raise SystemExit(f"{CGROUP.parent} is not writable: bench/scale.sh needs cgroup v1's cpu controller as root")
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    counts = [int(x) for x in sys.argv[2:]] or [1, 2, 4, 8]
    cores = float(os.environ.get("SCALE_QUOTA", "0.1"))
    nfiles = int(os.environ.get("SCALE_FILES", "8"))
    repeat = int(os.environ.get("SCALE_REPEAT", "1"))
    files, packets, nbytes = make_files(size_mb, nfiles)
    tokens, broker = Tokens(), Broker()
    broker.run("wipe")
    broker.run("start", "1")
    tries: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        for _ in range(repeat):
            for n in counts:
                r = asyncio.run(run(broker, tokens, n, cores, files, packets))
                tries[n].append(r)
                print(f"{n} worker(s): {r['wall_s']:.1f} s wall ({r['tiny_s']:.1f} s tiny upload), worker CPU-s "
                      f"{[round(c, 1) for c in r['worker_cpu_s']]}, throttled s {[round(c, 1) for c in r['throttled_s']]}, "
                      f"broker {r['broker_cpu_s']:.1f}; single-partition topics {r['single_partition']}",
                      file=sys.stderr, flush=True)
    finally:
        broker.run("stop")
    runs = [sorted(tries[n], key=lambda r: r["net_s"])[len(tries[n]) // 2] for n in counts]
    e2e.OUT.mkdir(parents=True, exist_ok=True)
    (e2e.OUT / "scale.json").write_text(json.dumps({"size_bytes": nbytes, "packets": packets, "files": nfiles,
                                                     "quota_cores": cores, "runs": runs,
                                                     "all": {n: tries[n] for n in counts}}, indent=1))
    report(runs, nbytes, packets, nfiles, cores)
    return 0


def report(runs: list[dict], nbytes: int, packets: int, nfiles: int, cores: float) -> None:
    print(f"machine: {os.cpu_count()} cores; capture: {nfiles} files, {nbytes / 1e6:.0f} MB, {packets:,} packets; "
          f"each worker capped at {cores:g} core (cfs_quota_us {int(cores * PERIOD_US)} of {PERIOD_US}), "
          "one uncapped broker")
    print()
    print("| workers | wall s | tiny upload s | net s | MB/s | speed-up | per worker | worker CPU-s (each) "
          "| throttled s (each) | broker CPU-s | scoring worker |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = runs[0]["net_s"] * runs[0]["workers"]
    for r in runs:
        n = r["workers"]
        speed = base / r["net_s"]
        scoring = next((i for i, s in enumerate(r["single_partition"]) if "window-summaries" in s), None)
        print(f"| {n} | {r['wall_s']:.1f} | {r['tiny_s']:.1f} | {r['net_s']:.1f} | {nbytes / 1e6 / r['net_s']:.1f} "
              f"| {speed:.2f}x | {speed / n:.2f} | {' + '.join(f'{c:.1f}' for c in r['worker_cpu_s'])} "
              f"| {' + '.join(f'{c:.1f}' for c in r['throttled_s'])} | {r['broker_cpu_s']:.1f} | w{scoring} |")
    print()
    print("speed-up: one worker's net seconds over N workers' (throughput at N over throughput at 1); "
          "net s: wall s less the tiny upload's latency, which more workers do not shorten.")


if __name__ == "__main__":
    sys.exit(main())
