"""End-to-end cost, scale-out and latency of the whole pipeline, with tcpdump and softflowd in the same run.

Run through bench/e2e.sh (it installs the peer tools). What it does:

1. Generates SIZE_MB of mixed traffic as files of about 100 MB (app/capture/synth.py, seeded; 2,000 inside and
   2,000 outside hosts, 10% IPv6, 10% 802.1Q), each file the next 10 minutes of capture time.
2. Starts one Kafka broker, then for N = 1 and 2 workers (each with its own data folder and port, fresh
   topics): ships every file with the project's shipper (app/cli/ship.py: PUT, block id per file), several
   files in flight spread over the workers, and reads every record back over GET /v1/flows (long polls
   with the cursor of the last answer, each to the next worker in turn; BENCH_READ=kafka: straight from
   the flows topic) until every packet of the generator's truth is in a flow record (flowId-deduplicated).
   Records: wall time, CPU-seconds of each worker process and of the broker (/proc/PID/stat), each
   worker's peak RSS (VmHWM), Kafka messages per topic. Then, the pipeline idle, a second full read over
   /v1/flows: egress alone. BENCH_PROFILE=1: py-spy on each worker and JFR on the broker over both
   spans, and their CPU by stage (bench/stages.py).
3. Times `TZ=UTC tcpdump -nn -r F` and `softflowd -r F` on the same files (CPU-seconds, user + sys).
4. Latency: one worker with 10 s windows (default lateness and idle flush); a small capture stamped
   with the wall clock is uploaded every second for 60 s, each under its own sensor name, while a long
   poll of /v1/flows (from the end) notes when each sensor's first record arrives, measured from the
   upload's 202.
5. Alert latency: per sensor (5), the capture of tests/integration/test_alerts.py (90 windows of
   ordinary traffic, a SYN flood in two of them) uploaded at once; the time from the flood window's first
   flow record at /v1/flows (the window has closed) to its alert at /v1/alerts.

Prints a Markdown table; writes the raw numbers to bench/out/e2e.json.

BENCH_NEIGHBOUR=memory or =compute runs one busy process beside the pipeline runs (not beside the peers):
``memory`` copies 8 MiB buffers without end, as a worker's chunk path does; ``compute`` spins in the
interpreter on a few cache lines. With one worker, this shows what a second busy process on the same two
cores costs the worker, without a second worker's share of the work.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app.cli import ship  # noqa: E402
from app.capture import synth  # noqa: E402
from app.api.auth import hash_token, new_token  # noqa: E402

OUT = ROOT / "bench" / "out"
KAFKA_SH = ROOT / "compose" / "kafka" / "kafka.sh"
BASE_PORT = int(os.environ.get("BENCH_KAFKA_PORT", "39292"))
FILE_MB = 100
INSIDE = OUTSIDE = 2000
TICK = os.sysconf("SC_CLK_TCK")
#: How the run reads its flows back: over GET /v1/flows, as a user does (egress counted in the workers'
#: CPU), or BENCH_READ=kafka straight from the flows topic (the figures of the runs before 2026-12-07).
READ = os.environ.get("BENCH_READ", "http")


NEIGHBOURS = {
    "memory": "import os\nb = os.urandom(8 << 20)\nwhile True:\n    c = bytes(bytearray(b))[4096:]\n",
    "compute": "x = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n",
}


@contextlib.contextmanager
def neighbour():
    """The BENCH_NEIGHBOUR process while the block runs; yields its kind (or None)."""
    kind = os.environ.get("BENCH_NEIGHBOUR")
    if not kind:
        yield None
        return
    if kind not in NEIGHBOURS:
        raise SystemExit(f"BENCH_NEIGHBOUR={kind}: use one of {', '.join(NEIGHBOURS)}")
    print(f"beside every pipeline run: a {kind}-bound process (BENCH_NEIGHBOUR)")
    busy = subprocess.Popen([sys.executable, "-c", NEIGHBOURS[kind]])
    try:
        yield kind
    finally:
        busy.kill()
        busy.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int, *at: int) -> list[int]:
    """Fields of /proc/PID/stat, counted from the one after the command name: minflt 7, cminflt 8,
    utime 11, stime 12, cutime 13, cstime 14."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(fields[i]) for i in at]


def cpu_s(pid: int) -> float:
    """user + sys CPU-seconds of a process and its waited-for children."""
    return sum(_stat(pid, 11, 12, 13, 14)) / TICK


def sys_s_and_faults(pid: int) -> tuple[float, int]:
    """sys CPU-seconds and minor page faults of a process (and its waited-for children)."""
    stime, cstime, minflt, cminflt = _stat(pid, 12, 14, 7, 8)
    return (stime + cstime) / TICK, minflt + cminflt


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_files(size_mb: int) -> tuple[list[Path], int, int]:
    """The capture files, and their total packets and bytes on disk (cached by size)."""
    folder = OUT / "e2e"
    folder.mkdir(parents=True, exist_ok=True)
    n = max(1, round(size_mb / FILE_MB))
    files, packets = [], 0
    meta = folder / "meta.json"
    known = json.loads(meta.read_text()) if meta.exists() else {}
    for i in range(n):
        path = folder / f"part{i:02d}.pcap"
        if not path.exists() or str(i) not in known:
            scale = FILE_MB / 1024
            tr = synth.generate(seed=100 + i, conversations=int(200_000 * scale), packets=int(1_900_000 * scale),
                                inside=INSIDE, outside=OUTSIDE, v6_share=0.1, vlan_share=0.1,
                                start_s=1_767_225_600 + i * 600, duration_s=600, mean_payload=560,
                                in_memory=False, path=str(path))
            known[str(i)] = int(tr.packets.sum())
            meta.write_text(json.dumps(known))
        files.append(path)
        packets += known[str(i)]
    return files, packets, sum(f.stat().st_size for f in files)


class Tokens:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flowsight-bench-"))
        self.token = new_token()
        (self.dir / "sensors").write_text(f"*:{hash_token(self.token)}\n")
        (self.dir / "api").write_text(f"bench:{hash_token(self.token)}\n")
        (self.dir / "secret").write_text(new_token() + "\n")
        self.env = {"FLOWSIGHT_SENSOR_TOKENS": str(self.dir / "sensors"), "FLOWSIGHT_API_TOKENS": str(self.dir / "api"),
                    "FLOWSIGHT_CLUSTER_SECRET_FILE": str(self.dir / "secret")}
        self.headers = {"Authorization": f"Bearer {self.token}"}


class Broker:
    def __init__(self) -> None:
        self.env = {**os.environ, "FLOWSIGHT_VAR": str(ROOT / "var" / "bench"), "KAFKA_BASE_PORT": str(BASE_PORT)}
        self.bootstrap = f"127.0.0.1:{BASE_PORT}"

    def run(self, *args: str) -> str:
        return subprocess.run([str(KAFKA_SH), *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    @property
    def pid(self) -> int:
        return int((ROOT / "var" / "bench" / "kafka" / "node1" / "pid").read_text())


class Worker:
    def __init__(self, broker: Broker, tokens: Tokens, tag: str, i: int, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.datadir = ROOT / "var" / "bench" / f"{tag}-w{i}"
        self.env = {**os.environ, **tokens.env, "FLOWSIGHT_BROKER": f"kafka://{broker.bootstrap}",
                    "FLOWSIGHT_APP_ID": f"fs-{tag}", "FLOWSIGHT_TOPIC_PREFIX": f"{tag}-",
                    "FLOWSIGHT_DATADIR": str(self.datadir), "FLOWSIGHT_WEB_PORT": str(self.port),
                    "FLOWSIGHT_PLACEBO_SOURCE": "false", "FLOWSIGHT_PLACEBO_SINK": "false",
                    "FLOWSIGHT_PARTITIONS": "8", "FLOWSIGHT_SENSOR_UPLOADS_PER_MIN": "100000", **settings}
        self.headers = tokens.headers
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.datadir.mkdir(parents=True, exist_ok=True)
        log = open(self.datadir / "worker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "app", "worker", "-l", "info",
                                      "--web-port", str(self.port)], cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        return self

    async def health(self, s: aiohttp.ClientSession) -> dict:
        async with s.get(self.url + "/v1/health", headers=self.headers) as r:
            return await r.json()

    async def assigned(self, s: aiohttp.ClientSession) -> list[str]:
        try:
            body = await self.health(s)
            return body.get("assigned", []) if body.get("status") == "ok" else []
        except (aiohttp.ClientError, OSError, ValueError):
            return []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextlib.contextmanager
def profiled(workers: list[Worker], broker: Broker, span: str):
    """BENCH_PROFILE=1: py-spy samples each worker over the span (attached to it, so that the worker's own
    CPU-seconds stay its own) into <datadir>/profile-<span>.txt, and the broker is recorded by JFR into
    var/bench/kafka/broker-<span>.jfr (both kept beside the run's numbers)."""
    if not os.environ.get("BENCH_PROFILE"):
        yield
        return
    spy = str(Path(sys.executable).parent / "py-spy")
    procs = [subprocess.Popen([spy, "record", "--format", "raw", "-r", "97", "--nonblocking", "--pid",
                               str(w.proc.pid), "-o", str(w.datadir / f"profile-{span}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for w in workers if w.proc]
    jfr = ROOT / "var" / "bench" / "kafka" / f"broker-{span}.jfr"
    jcmd = shutil.which("jcmd")
    if jcmd:
        subprocess.run([jcmd, str(broker.pid), "JFR.start", f"name={span}", "settings=profile"],
                       capture_output=True, check=False)
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(60)
        if jcmd:
            subprocess.run([jcmd, str(broker.pid), "JFR.stop", f"name={span}", f"filename={jfr}"],
                           capture_output=True, check=False)


async def work_share(w: Worker) -> dict[str, object]:
    """What a worker did, from its progress counters: MB uploaded to it, chunks decoded, flow-parts messages
    merged, records emitted, windows scored; and the CPU-seconds of its garbage collections."""
    async with aiohttp.ClientSession() as s:
        h = await w.health(s)
    p = h.get("progress", {})
    return {"MB in": p.get("ingest", {}).get("bytes", 0) >> 20, "chunks": p.get("decode", {}).get("chunks", 0),
            "merged": p.get("merge", {}).get("messages", 0), "records": p.get("emit", {}).get("records", 0),
            "scored": p.get("score", {}).get("windows", 0), "gc CPU-s": h.get("memory", {}).get("gc_cpu_s"),
            "gc by generation": {g: (v["collections"], v["cpu_s"]) for g, v in h.get("memory", {}).get("gc", {}).items()}}


async def wait_ready(workers: list[Worker], topic_prefix: str, timeout_s: float = 180) -> None:
    """Until the workers hold every partition of the topics they consume between them.

    window-summaries, findings, entity-flows and actions count too: a topic created at the first start can
    still show no partitions in the metadata of the group's first assignment, and the metadata refresh
    that finds them some 15 s later rebalances the group. Measured from then on, a run would pay that
    rebalance (and redo what it had not committed); one such run had scored no window when its last
    record was read."""
    want = {"flow-parts": 8, "pcap-chunks": 8, "window-summaries": 1, "findings": 1, "entity-flows": 8, "actions": 1}
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            got = [a for w in workers for a in await w.assigned(s)]
            if all(sum(1 for a in got if a.startswith(topic_prefix + t + ":")) == n for t, n in want.items()):
                return
            await asyncio.sleep(1)
    raise SystemExit("workers not ready: see var/bench/*/worker.log")


async def flow_packets(bootstrap: str, topic: str, want: int, timeout_s: float) -> tuple[int, float, int, int]:
    """Read the flows topic until `want` packets are in distinct flow records; (packets, seconds waited,
    records, late records)."""
    from aiokafka import AIOKafkaConsumer
    seen: set[int] = set()
    total = late = 0
    t0 = time.monotonic()
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                         enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await c.start()
    try:
        while total < want and time.monotonic() - t0 < timeout_s:
            for batch in (await c.getmany(timeout_ms=500, max_records=20000)).values():
                for m in batch:
                    for rec in json.loads(m.value)["records"]:
                        if rec["flowId"] not in seen:
                            seen.add(rec["flowId"])
                            total += rec["packetDeltaCount"]
                            late += rec["flowsight"]["late"]
    finally:
        await c.stop()
    return total, time.monotonic() - t0, len(seen), late


async def http_flow_packets(workers: list[Worker], want: int, timeout_s: float,
                            seen: set[int] | None = None) -> tuple[int, float, int, int, int]:
    """Read every record back over GET /v1/flows, as a client does: long polls with the cursor of the last
    answer, each poll to the next worker in turn (any worker answers any cursor), until ``want`` packets are
    in distinct flow records. (packets, seconds waited, records, late records, polls)."""
    seen = set() if seen is None else seen
    total = late = polls = 0
    cursor = ""
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        while time.monotonic() - t0 < timeout_s and total < want:
            w = workers[polls % len(workers)]
            polls += 1
            params = {"timeout": "1", "limit": "5000", **({"cursor": cursor} if cursor else {})}
            try:
                async with s.get(w.url + "/v1/flows", params=params, headers=w.headers) as r:
                    if r.status != 200:
                        await asyncio.sleep(0.5)
                        continue
                    body = json.loads(await r.read())
            except (TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.sleep(0.5)
                continue
            cursor = body["cursor"]
            for rec in body["records"]:
                if rec["flowId"] not in seen:
                    seen.add(rec["flowId"])
                    total += rec["packetDeltaCount"]
                    late += rec["flowsight"]["late"]
    return total, time.monotonic() - t0, len(seen), late, polls


async def topic_messages(bootstrap: str, prefix: str) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        out = {}
        names = [t for t in await admin.list_topics() if t.startswith(prefix) or t.startswith(f"fs-{prefix[:-1]}-")]
        for desc in await admin.describe_topics(names):
            topic = desc["topic"]
            ends = await c.end_offsets([TopicPartition(topic, p["partition"]) for p in desc["partitions"]])
            out[topic.replace(prefix, "", 1).replace(f"fs-{prefix[:-1]}-", "", 1)] = sum(ends.values())
        return out
    finally:
        await c.stop()
        await admin.close()


async def ship_all(files: list[Path], workers: list[Worker], in_flight: int) -> None:
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int, path: Path) -> None:
        async with sem:
            w = workers[i % len(workers)]
            async with aiohttp.ClientSession(headers=w.headers,
                                             timeout=aiohttp.ClientTimeout(total=None, sock_read=600)) as s:
                res = await ship.ship_file(s, w.url, path, "bench")
            if not 200 <= res.status < 300:
                raise SystemExit(f"{path}: {res.status} {res.answer}")

    await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))


async def pipeline_run(broker: Broker, tokens: Tokens, n: int, files: list[Path], packets: int) -> dict:
    tag = f"e2e{n}-{int(time.time())}"
    workers = [Worker(broker, tokens, tag, i).start() for i in range(n)]
    try:
        await wait_ready(workers, f"{tag}-")
        await asyncio.sleep(3)
        cpu0 = {w.proc.pid: cpu_s(w.proc.pid) for w in workers}
        sys0 = {w.proc.pid: sys_s_and_faults(w.proc.pid) for w in workers}
        b0 = cpu_s(broker.pid)
        t0 = time.monotonic()
        with profiled(workers, broker, "pipeline"):
            shipping = asyncio.create_task(ship_all(files, workers, in_flight=3))
            if READ == "kafka":
                got, _, records, late = await flow_packets(broker.bootstrap, f"{tag}-flows", packets, timeout_s=3600)
            else:
                got, _, records, late, _ = await http_flow_packets(workers, packets, timeout_s=3600)
            await shipping
            wall = time.monotonic() - t0
            cpu = [cpu_s(w.proc.pid) - cpu0[w.proc.pid] for w in workers]
            rss = [peak_rss_mb(w.proc.pid) for w in workers]
            sys_faults = [[a - b for a, b in zip(sys_s_and_faults(w.proc.pid), sys0[w.proc.pid])] for w in workers]
            broker_cpu = cpu_s(broker.pid) - b0
        # egress alone: once the pipeline is idle, a second client reads every record back from the start
        await asyncio.sleep(3)
        e_cpu0 = {w.proc.pid: cpu_s(w.proc.pid) for w in workers}
        e_b0, e_t0 = cpu_s(broker.pid), time.monotonic()
        with profiled(workers, broker, "egress"):
            again, _, again_records, _, polls = await http_flow_packets(workers, packets, timeout_s=600)
        egress = {"wall_s": time.monotonic() - e_t0, "polls": polls, "records": again_records,
                  "worker_cpu_s": [cpu_s(w.proc.pid) - e_cpu0[w.proc.pid] for w in workers],
                  "broker_cpu_s": cpu_s(broker.pid) - e_b0}
        if again != packets:
            raise SystemExit(f"{n} worker(s): {again} packets on the second read of /v1/flows, {packets} uploaded")
        msgs = await topic_messages(broker.bootstrap, f"{tag}-")
        shares = [await work_share(w) for w in workers]
        if got != packets:
            raise SystemExit(f"{n} worker(s): {got} packets at egress, {packets} uploaded")
        return {"workers": n, "wall_s": wall, "worker_cpu_s": cpu, "broker_cpu_s": broker_cpu, "peak_rss_mb": rss,
                "worker_sys_s": [round(x[0], 2) for x in sys_faults], "worker_minor_faults": [x[1] for x in sys_faults],
                "worker_shares": shares, "egress_alone": egress, "read": READ,
                "profiles": {span: [str(w.datadir / f"profile-{span}.txt") for w in workers] +
                             [str(ROOT / "var" / "bench" / "kafka" / f"broker-{span}.jfr")]
                             for span in ("pipeline", "egress")} if os.environ.get("BENCH_PROFILE") else {},
                "messages": msgs, "packets_out": got, "records": records, "late_records": late}
    finally:
        for w in workers:
            w.stop()


def peer_cpu(cmd: list[str], files: list[Path]) -> float:
    total = 0.0
    for f in files:
        with tempfile.NamedTemporaryFile() as t:
            subprocess.run(["/usr/bin/time", "-f", "%U %S", "-o", t.name, *[c.replace("{F}", str(f)) for c in cmd]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TZ": "UTC"},
                           check=True)
            u, s = map(float, Path(t.name).read_text().split()[-2:])
            total += u + s
    return total


async def follow(s: aiohttp.ClientSession, url: str, stop: asyncio.Event, note, timeout_s: int) -> None:
    """Long-poll ``url`` from its end until ``stop``; ``note(record, arrival time)`` for every record."""
    cursor = None
    while not stop.is_set():
        params = {"timeout": str(timeout_s), **({"cursor": cursor} if cursor else {"from": "end"})}
        async with s.get(url, params=params) as r:
            body = await r.json()
        now = time.time()
        cursor = body["cursor"]
        for rec in body["records"]:
            note(rec, now)


async def latency_run(broker: Broker, tokens: Tokens, window_s: int = 10, uploads: int = 60) -> dict:
    """Default lateness (5 s) and idle flush (5 s); 10 s windows to keep the run short."""
    tag = f"lat-{int(time.time())}"
    w = Worker(broker, tokens, tag, 0, FLOWSIGHT_WINDOW_S=str(window_s)).start()
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    span: dict[str, tuple[int, int]] = {}    # first and last capture time (ms) of each upload
    try:
        await wait_ready([w], f"{tag}-")
        async with aiohttp.ClientSession(headers=tokens.headers) as s:
            stop = asyncio.Event()

            watcher = asyncio.create_task(follow(s, w.url + "/v1/flows", stop,
                                                 lambda rec, now: seen.setdefault(rec["flowsight"]["sensor"], now), 5))
            await asyncio.sleep(2)
            for i in range(uploads):
                now = time.time()
                tr = synth.generate(seed=i, conversations=20, packets=200, inside=10, outside=10,
                                    start_s=int(now) - 1, duration_s=0.9)
                sensor = f"lat{i:03d}"
                async with s.put(w.url + "/v1/captures", data=tr.pcap,
                                 headers={"X-Sensor": sensor, "Content-Type": "application/vnd.tcpdump.pcap"}) as r:
                    assert r.status == 202, await r.text()
                acked[sensor] = time.time()
                span[sensor] = (int(tr.pkt_ts_ns.min()) // 1_000_000, int(tr.pkt_ts_ns.max()) // 1_000_000)
                await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))
            deadline = time.time() + 3 * window_s + 30
            while len(seen) < uploads and time.time() < deadline:
                await asyncio.sleep(0.5)
            stop.set()
            await watcher
    finally:
        w.stop()
    from_ack = sorted(seen[k] - acked[k] for k in acked if k in seen)
    # what the pipeline adds: from the 202 of the first upload whose capture time passed the sensor's first
    # window's end plus the lateness (the upload that closes it) to the record at /v1/flows
    window_ms, lateness_ms = window_s * 1000, 5000
    order = sorted(acked, key=acked.get)
    pipeline = []
    for k in order:
        if k not in seen:
            continue
        due = span[k][0] - span[k][0] % window_ms + window_ms + lateness_ms
        closer = next((j for j in order if span[j][1] >= due), None)
        if closer is not None and seen[k] >= acked[closer]:
            pipeline.append(seen[k] - acked[closer])
    pipeline.sort()

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
    return {"window_s": window_s, "uploads": uploads, "arrived": len(seen),
            "from_ack_p50": pct(from_ack, 0.5), "from_ack_p99": pct(from_ack, 0.99), "from_ack_max": max(from_ack),
            "pipeline_n": len(pipeline), "pipeline_p50": pct(pipeline, 0.5), "pipeline_p99": pct(pipeline, 0.99),
            "from_ack": from_ack, "pipeline": pipeline}


async def alert_latency_run(broker: Broker, tokens: Tokens, sensors: int = 5) -> dict:
    """Alerts: per sensor, 90 one-minute windows of ordinary traffic with a SYN flood in windows 80-81 (the
    capture of tests/integration/test_alerts.py), uploaded at once. For the flood window, the time from its
    first flow record at /v1/flows (the window has closed) to its scored anomaly at /v1/anomalies and to its
    alert at /v1/alerts. The floods share one target host, so attention control lets the first sensor's
    alert through and marks the others' anomalies suppressed: the anomaly is the scoring path's latency.
    Each sensor's capture starts where the one before ended, as live sensors' captures follow the clock
    (each sensor has its own capture clock, so the captures need not follow one another)."""
    from tests.integration.test_alerts import FLOOD_AT, T0, WINDOWS, capture
    span_s = (WINDOWS + 2) * 60

    def flood_ms_of(i: int) -> int:
        return (T0 + i * span_s + FLOOD_AT * 60) * 1000
    tag = f"alert-{int(time.time())}"
    w = Worker(broker, tokens, tag, 0).start()
    closed: dict[str, float] = {}
    scored: dict[str, float] = {}
    alerted: dict[str, float] = {}
    try:
        await wait_ready([w], f"{tag}-")
        async with aiohttp.ClientSession(headers=tokens.headers) as s:
            stop = asyncio.Event()

            def flood(sensor: str, window_ms: int) -> bool:
                return sensor.startswith("site") and window_ms == flood_ms_of(int(sensor[4:]))

            def on_flow(rec: dict, now: float) -> None:
                if flood(rec["flowsight"]["sensor"], rec["flowsight"]["window"]):
                    closed.setdefault(rec["flowsight"]["sensor"], now)

            def on(seen: dict):
                def note(rec: dict, now: float) -> None:
                    if flood(rec.get("sensor", ""), rec.get("windowStartMs")):
                        seen.setdefault(rec["sensor"], now)
                return note

            watchers = [asyncio.create_task(follow(s, w.url + path, stop, note, 2))
                        for path, note in (("/v1/flows", on_flow), ("/v1/anomalies", on(scored)),
                                           ("/v1/alerts", on(alerted)))]
            await asyncio.sleep(3)
            for i in range(sensors):
                async with s.put(w.url + "/v1/captures", data=capture(seed=7 + i, t0=T0 + i * span_s),
                                 headers={"X-Sensor": f"site{i}", "Content-Type": "application/vnd.tcpdump.pcap"}) as r:
                    assert r.status == 202, await r.text()
                deadline = time.time() + 30
                while f"site{i}" not in scored and time.time() < deadline:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)
            stop.set()
            await asyncio.gather(*watchers)
    finally:
        w.stop()
    return {"sensors": sensors, "alerted": len(alerted), "scored": len(scored),
            "anomaly_delays_s": sorted(scored[k] - closed[k] for k in scored if k in closed),
            "alert_delays_s": sorted(alerted[k] - closed[k] for k in alerted if k in closed)}


def main() -> int:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    counts = [int(x) for x in sys.argv[2:]] or [1, 2]
    files, packets, nbytes = make_files(size_mb)
    tokens = Tokens()
    broker = Broker()
    broker.run("wipe")
    broker.run("start", "1")
    results: dict = {"size_bytes": nbytes, "packets": packets, "files": len(files), "runs": []}
    try:
        repeat = int(os.environ.get("BENCH_REPEAT", "1"))
        tries: dict[int, list[dict]] = {n: [] for n in counts}
        # BENCH_REPEAT=K: K rounds, each running every worker count once, so that a drift in the machine's
        # speed over the minutes falls on all counts alike
        with neighbour() as kind:
            results["neighbour"] = kind
            for _ in range(repeat):
                for n in counts:
                    r = asyncio.run(pipeline_run(broker, tokens, n, files, packets))
                    tries[n].append(r)
                    print(f"{n} worker(s): {r['wall_s']:.1f} s wall, worker CPU {sum(r['worker_cpu_s']):.1f} s {[round(c, 1) for c in r['worker_cpu_s']]}, "
                          f"broker CPU {r['broker_cpu_s']:.1f} s (worker sys CPU-s {r['worker_sys_s']}, "
                          f"minor faults {r['worker_minor_faults']}; work {r['worker_shares']}); egress alone "
                          f"{egress_line(r['egress_alone'])}", file=sys.stderr, flush=True)
        if 1 in tries and 2 in tries:
            results["scale_out_rounds"] = [dedicated_scale_out(one, two) for one, two in zip(tries[1], tries[2])]
        for n in counts:
            # the run of median worker CPU is reported, every run's CPU is kept (in round order)
            median = sorted(tries[n], key=lambda r: sum(r["worker_cpu_s"]))[len(tries[n]) // 2]
            median["all_worker_cpu_s"] = [r["worker_cpu_s"] for r in tries[n]]
            results["runs"].append(median)
        if os.environ.get("BENCH_QUICK"):  # cost and scale-out only: no latency runs
            return quick(results, files)
        results["latency"] = asyncio.run(latency_run(broker, tokens))
        results["alert_latency"] = asyncio.run(alert_latency_run(broker, tokens))
    finally:
        broker.run("stop")
    results["tcpdump_cpu_s"] = peer_cpu(["tcpdump", "-nn", "-r", "{F}"], files)
    results["softflowd_cpu_s"] = peer_cpu(["softflowd", "-r", "{F}", "-n", f"127.0.0.1:{free_port()}",
                                           "-m", "2000000", "-d"], files)
    (OUT / "e2e.json").write_text(json.dumps(results, indent=1))
    report(results)
    return 0


def egress_line(e: dict) -> str:
    return (f"(a second read of every record over /v1/flows, {e['polls']} polls, {e['wall_s']:.1f} s): worker CPU "
            f"{sum(e['worker_cpu_s']):.1f} s, broker CPU {e['broker_cpu_s']:.1f} s")


def all_in(res: dict) -> None:
    """Worker and broker CPU-s per GiB, with every record read back over /v1/flows, against tcpdump's."""
    gib, tcp = res["size_bytes"] / 2**30, res["tcpdump_cpu_s"]
    print("\n| workers | read back | worker CPU-s/GiB | broker CPU-s/GiB | all-in CPU-s/GiB | all-in / tcpdump "
          "| worker / tcpdump | broker / tcpdump | egress alone: worker + broker CPU-s/GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["runs"]:
        w, b, e = sum(r["worker_cpu_s"]) / gib, r["broker_cpu_s"] / gib, r["egress_alone"]
        t = tcp / gib
        print(f"| {r['workers']} | {r['read']} | {w:.1f} | {b:.1f} | {w + b:.1f} | {(w + b) / t:.2f} | {w / t:.2f} "
              f"| {b / t:.2f} | {sum(e['worker_cpu_s']) / gib:.1f} + {e['broker_cpu_s'] / gib:.1f} |")
    print(f"TZ=UTC tcpdump -nn -r: {tcp / gib:.2f} CPU-s per GiB")


def stage_tables(res: dict) -> None:
    """BENCH_PROFILE=1: each run's CPU by stage (bench/stages.py), the workers' and the broker's, per GiB."""
    import stages
    gib = res["size_bytes"] / 2**30
    for r in res["runs"]:
        for span, paths in r.get("profiles", {}).items():
            e = r["egress_alone"] if span == "egress" else r
            for who, files, cpu in (("workers", [Path(x) for x in paths[:-1]], sum(e["worker_cpu_s"])),
                                    ("broker", [Path(paths[-1])], e["broker_cpu_s"])):
                files = [f for f in files if f.exists()]
                if not files:
                    continue
                print(f"\n{r['workers']} worker(s), {span}, {who}: {cpu:.1f} CPU-s by stage ({', '.join(map(str, files))})")
                stages.main([*map(str, files), "--cpu-s", str(cpu), "--gib", str(gib)])


def dedicated_scale_out(one: dict, two: dict) -> float:
    """On dedicated cores a CPU-bound worker's wall time is its CPU time: the busier of the two decides.
    The broker's CPU is left out of both, as it would run on cores of its own."""
    return sum(one["worker_cpu_s"]) / max(two["worker_cpu_s"])


def print_rounds(res: dict) -> None:
    xs = res.get("scale_out_rounds") or []
    if len(xs) < 2:
        return
    mid = sorted(xs)[len(xs) // 2]
    print(f"scale-out on dedicated cores, round by round (one worker's CPU-s over the busier of two workers' in "
          f"the same round): {', '.join(f'{x:.2f}' for x in xs)}x; median {mid:.2f}x")


def quick(res: dict, files: list[Path]) -> int:
    res["tcpdump_cpu_s"] = peer_cpu(["tcpdump", "-nn", "-r", "{F}"], files)
    res["softflowd_cpu_s"] = peer_cpu(["softflowd", "-r", "{F}", "-n", f"127.0.0.1:{free_port()}", "-m", "2000000",
                                       "-d"], files)
    gib = res["size_bytes"] / 2**30
    print(f"peers on the same files: TZ=UTC tcpdump -nn -r {res['tcpdump_cpu_s']:.2f} CPU-s "
          f"({res['tcpdump_cpu_s'] / gib:.2f} per GiB), softflowd -r {res['softflowd_cpu_s']:.2f} CPU-s "
          f"({res['softflowd_cpu_s'] / gib:.2f} per GiB)")
    (OUT / "e2e.json").write_text(json.dumps(res, indent=1))
    for r in res["runs"]:
        if len(r["all_worker_cpu_s"]) > 1:
            print(f"{r['workers']} worker(s), each run's worker CPU-s (in round order): "
                  f"{', '.join(' + '.join(f'{c:.1f}' for c in run) for run in r['all_worker_cpu_s'])}; the median run:")
        print(f"{r['workers']} worker(s): {r['wall_s']:.1f} s wall, worker CPU-s {' + '.join(f'{c:.1f}' for c in r['worker_cpu_s'])}"
              f" = {sum(r['worker_cpu_s']) / res['tcpdump_cpu_s']:.2f}x tcpdump ({res['tcpdump_cpu_s']:.2f}), broker {r['broker_cpu_s']:.1f},"
              f" late {r['late_records']}/{r['records']}, peak RSS {' / '.join(f'{m:.0f}' for m in r['peak_rss_mb'])} MB")
    runs = {r["workers"]: r for r in res["runs"]}
    if 1 in runs and 2 in runs:
        print(f"scale-out on dedicated cores (median runs): {dedicated_scale_out(runs[1], runs[2]):.2f}x")
    print_rounds(res)
    all_in(res)
    stage_tables(res)
    print("messages per GiB:", {k: round(v / (res["size_bytes"] / 2**30)) for k, v in res["runs"][-1]["messages"].items() if v})
    return 0


def report(res: dict) -> None:
    gib = res["size_bytes"] / 2**30
    bits = res["size_bytes"] * 8
    print(f"machine: {os.cpu_count()} cores; capture: {len(res['runs']) and res['files']} files, "
          f"{res['size_bytes'] / 1e6:.0f} MB, {res['packets']:,} packets, {INSIDE}+{OUTSIDE} hosts")
    print()
    print("| workers | wall s | Gb/s | packets/s | worker CPU-s | per worker | broker CPU-s | "
          "packets per worker CPU-s | worker CPU / tcpdump | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    tcp = res["tcpdump_cpu_s"]
    for r in res["runs"]:
        cpu = sum(r["worker_cpu_s"])
        print(f"| {r['workers']} | {r['wall_s']:.1f} | {bits / r['wall_s'] / 1e9:.3f} | {res['packets'] / r['wall_s']:,.0f} "
              f"| {cpu:.1f} | {' + '.join(f'{c:.1f}' for c in r['worker_cpu_s'])} | {r['broker_cpu_s']:.1f} "
              f"| {res['packets'] / cpu:,.0f} | {cpu / tcp:.2f} | {' / '.join(f'{m:.0f}' for m in r['peak_rss_mb'])} |")
    for r in res["runs"]:
        if len(r.get("all_worker_cpu_s", ())) > 1:
            print(f"\n{r['workers']} worker(s), {len(r['all_worker_cpu_s'])} runs (the table shows the median), in round order, "
                  "worker CPU-s of each: " + ", ".join(" + ".join(f"{c:.1f}" for c in run)
                                                       for run in r["all_worker_cpu_s"]))
    all_in(res)
    stage_tables(res)
    print()
    print(f"peers on the same files: TZ=UTC tcpdump -nn -r: {tcp:.2f} CPU-s ({tcp / gib:.2f} per GiB); "
          f"softflowd -r: {res['softflowd_cpu_s']:.2f} CPU-s ({res['softflowd_cpu_s'] / gib:.2f} per GiB)")
    runs = {r["workers"]: r for r in res["runs"]}
    if 1 in runs and 2 in runs:
        one, two = runs[1], runs[2]
        raw = one["wall_s"] / two["wall_s"]
        dedicated = dedicated_scale_out(one, two)
        print(f"scale-out 1 -> 2 workers: raw wall-clock {raw:.2f}x (2 cores shared with the broker); "
              f"on dedicated cores (1 worker's CPU-s / the busier of 2 workers' CPU-s) {dedicated:.2f}x")
        print_rounds(res)
    print()
    for r in res["runs"]:
        if "records" in r:
            print(f"{r['workers']} worker(s): {r['records']:,} flow records, {r['late_records']:,} of them late "
                  f"(three files in flight, each the next 10 minutes of capture time)")
    print("Kafka messages per GiB: " + ", ".join(
        f"{t} {m / gib:,.0f}" for t, m in sorted(res["runs"][-1]["messages"].items())))
    lat = res.get("latency")
    if lat:
        print(f"latency ({lat['window_s']} s windows, lateness and idle flush 5 s (the defaults), "
              f"{lat['arrived']}/{lat['uploads']} paced uploads arrived): 202 -> its first flow record at /v1/flows "
              f"p50 {lat['from_ack_p50']:.1f} s, p99 {lat['from_ack_p99']:.1f} s, max {lat['from_ack_max']:.1f} s "
              f"(target: window + 5 s = {lat['window_s'] + 5} s; the window and the 5 s lateness are waited out "
              f"by design, with the 1 s upload cadence on top)")
        if "pipeline_p50" in lat:
            print(f"  of which the pipeline (from the 202 of the upload whose capture time closes the window to the "
                  f"record at /v1/flows, {lat['pipeline_n']} windows): p50 {lat['pipeline_p50']:.2f} s, "
                  f"p99 {lat['pipeline_p99']:.2f} s")
    al = res.get("alert_latency")
    if al:
        def fmt(d: list[float]) -> str:
            return ", ".join(f"{x:.1f}" for x in d) + " s" if d else "none"
        print(f"from the flood window's first flow record at /v1/flows (window closed) to its anomaly at "
              f"/v1/anomalies ({al['scored']}/{al['sensors']} sensors): {fmt(al['anomaly_delays_s'])}; to its alert at "
              f"/v1/alerts ({al['alerted']} let through by attention control): {fmt(al['alert_delays_s'])} (target: 5 s)")


if __name__ == "__main__":
    sys.exit(main())
