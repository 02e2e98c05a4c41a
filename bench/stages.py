"""Where a worker's CPU goes, by stage, from a py-spy profile (``py-spy record --format raw``).

    .venv/bin/python bench/stages.py var/bench/<run>-w0/profile-pipeline.txt [--cpu-s 20.6 --gib 0.94]
    .venv/bin/python bench/stages.py var/bench/kafka/broker-pipeline.jfr [--cpu-s 21.3 --gib 0.94]

A broker's JFR recording (``.jfr``) is split by what each sample was doing, from its frames (see BROKER).

Samples of a waiting thread (the event loop in ``select``, an idle pool thread) are left out. Each other
sample's stack is read from its innermost frame outwards; the first frame that belongs to a stage names it (the Kafka client's own tasks, the producer's sender and the consumer's fetcher, have no
Flowsight frame above them). With ``--cpu-s`` (the worker's measured CPU-seconds over the profiled span)
and ``--gib`` (the capture's size) each stage's share is also given in CPU-s per GiB.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

#: (stage, pattern of a frame's file) of a worker, innermost match first. The order matters where stages nest:
#: the Kafka client's record encoding called from the ingest view is the ingest's chunk produce.
STAGES = (
    ("chunk produce (HTTP ingest)", r"aiokafka/producer/|aiokafka/record/|app/runtime/send\.py"),
    ("chunk fetch (Kafka consumer)", r"aiokafka/consumer/|aiokafka/conn\.py|aiokafka/protocol/"),
    ("HTTP receive and spool", r"web/ingest\.py|app/runtime/spool|aiohttp/"),
    ("decode", r"agents/decode\.py|app/flows/decode\.py|app/capture/"),
    ("merge and windows", r"agents/flows\.py|app/flows/(windows|parts|aggregate|complete|ranges|clock)\.py"),
    ("summaries", r"app/flows/summary\.py"),
    ("scoring", r"agents/score\.py|app/detect/(scorer|attention|models)"),
    ("entities", r"agents/entities\.py|app/detect/entities\.py"),
    ("egress (GET /v1/flows)", r"web/egress\.py|app/runtime/egress\.py|app/api/cursor\.py"),
    ("tables and changelogs", r"faust/tables/|faust/stores/|rocksdict"),
    ("Faust and mode runtime", r"faust/|mode/"),
    ("asyncio and the interpreter", r"asyncio/|selectors\.py"),
)
_COMPILED = [(name, re.compile(pat)) for name, pat in STAGES]
#: Innermost frames of a thread that waits (py-spy samples them too): left out of the shares.
IDLE = re.compile(r"^(EpollSelector\.select|_worker \(concurrent/futures/thread\.py:81\)|Condition\.wait|"
                  r"Event\.wait|_wait_for_tstate_lock|select \(selectors)")
_FRAME_FILE = re.compile(r"\(([^():]+)(?::\d+)?\)$")


def stage_of(stack: list[str]) -> str:
    """The stage of one sample: ``stack`` from the outermost frame to the innermost."""
    for frame in reversed(stack):
        m = _FRAME_FILE.search(frame)
        where = m.group(1) if m else frame
        for name, pat in _COMPILED:
            if pat.search(where):
                # the producer's request path belongs to the stage that sent, when one is on the stack
                return name
    return "other"


def read(path: Path) -> Counter:
    """Samples per stage of a raw py-spy profile (``frame;frame;... count`` a line)."""
    out: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if frames and IDLE.match(frames[-1]):
            continue
        out[stage_of(frames)] += int(count)
    return out


#: What a broker's CPU sample was doing, by its frames from the top of the stack down: the first match names it.
BROKER = (
    ("CRC checks of record batches", r"CRC32C|Crc32C|\.ensureValid|\.isValid\(|checksum"),
    ("compression", r"lz4|Lz4|zstd|Zstd|snappy|Snappy|GZIP|Deflater|Inflater"),
    ("log append and validation", r"LogValidator|UnifiedLog\.append|LogSegment\.append|FileRecords\.append|"
                                  r"MemoryRecords\.|DefaultRecordBatch|LogAppendInfo|analyzeAndValidate"),
    ("log compaction", r"LogCleaner|Cleaner\."),
    ("fetch: reading the log", r"FileRecords|LogSegment\.read|UnifiedLog\.read|ReplicaManager\.readFromLog|"
                               r"transferTo|FileChannel"),
    ("socket I/O", r"sun\.nio\.ch|SocketChannel|PlaintextTransportLayer|KafkaChannel|Selector\.poll|"
                   r"NetworkReceive|NetworkSend"),
    ("requests and responses (parse, build)", r"RequestContext|RequestChannel|parseRequest|Readable|"
                                              r"MessageUtil|ApiMessage|Request\.|Response\.|ObjectSerializationCache"),
    ("group coordinator and offsets", r"coordinator|Coordinator|OffsetCommit|OffsetFetch"),
    ("replica and partition state", r"ReplicaManager|Partition\.|DelayedFetch|DelayedProduce|Purgatory"),
)
_BROKER = [(name, re.compile(pat)) for name, pat in BROKER]


def read_jfr(path: Path) -> Counter:
    """Samples of a broker's JFR recording by what they were doing (see :data:`BROKER`)."""
    import subprocess
    text = subprocess.run(["jfr", "print", "--stack-depth", "48", "--events", "jdk.ExecutionSample", str(path)],
                          capture_output=True, text=True, check=True).stdout
    out: Counter = Counter()
    for event in text.split("jdk.ExecutionSample {")[1:]:
        frames = [ln.strip() for ln in event.split("stackTrace = [", 1)[-1].splitlines()
                  if ln.strip() and not ln.strip().startswith(("]", "}", "..."))]
        out[next((name for f in frames for name, pat in _BROKER if pat.search(f)), "other")] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", type=Path)
    ap.add_argument("--cpu-s", type=float, default=0.0, help="the worker's CPU-s over the profiled span")
    ap.add_argument("--gib", type=float, default=0.0, help="GiB of capture the span processed")
    args = ap.parse_args(argv)
    total: Counter = Counter()
    for p in args.profiles:
        total.update(read_jfr(p) if p.suffix == ".jfr" else read(p))
    n = sum(total.values())
    if not n:
        print("no samples", file=sys.stderr)
        return 1
    per_gib = args.cpu_s and args.gib
    print("| stage | samples | share |" + (" CPU-s/GiB |" if per_gib else ""))
    print("|---|---|---|" + ("---|" if per_gib else ""))
    for name, c in total.most_common():
        extra = f" {args.cpu_s * c / n / args.gib:.2f} |" if per_gib else ""
        print(f"| {name} | {c} | {100 * c / n:.1f} % |{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
