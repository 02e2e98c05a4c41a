"""Captures to flow records without Kafka: the engine of ``faust -A app pcap2flows``.

Pure code (no Faust). It runs the pipeline's own functions -- capture.index,
capture.chunks, decode.decode, flows.aggregate_arrays -- chunk by chunk, and
merges the chunks' aggregates, so it prints the records the pipeline would emit
once every window has closed.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Iterable

import numpy as np

from app import capture, decode, flows

#: Chunk size of the offline reader: bounds memory, not message size.
OFFLINE_CHUNK_BYTES = 64 << 20
CSV_FIELDS = ["flowStartMilliseconds", "flowEndMilliseconds", "sourceAddress", "destinationAddress",
              "sourceTransportPort", "destinationTransportPort", "protocolIdentifier", "vlanId",
              "ipClassOfService", "packetDeltaCount", "octetDeltaCount", "tcpControlBits", "window", "flowId"]


@dataclass
class Summary:
    files: int = 0
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    skipped: Counter = field(default_factory=Counter)
    unsupported_linktypes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"files {self.files}  packets {self.packets}  bytes {self.bytes}  flows {self.flows}"]
        if self.skipped:
            lines.append("skipped packets: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if self.unsupported_linktypes:
            lines.append("unsupported link types: " +
                         ", ".join(f"{k} ({v} packets)" for k, v in sorted(self.unsupported_linktypes.items())))
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def file_aggregate(path: str, window_ms: int, summary: Summary, progress=None) -> flows.Aggregate | None:
    try:
        buf = np.fromfile(path, dtype=np.uint8) if path != "-" else np.frombuffer(sys.stdin.buffer.read(), np.uint8)
    except OSError as exc:
        summary.errors.append(f"{path}: {exc.strerror}")
        return None
    summary.files += 1
    try:
        idx = capture.index(buf)
    except capture.CaptureError as exc:
        summary.errors.append(f"{path}: {exc}")
        return None
    if idx.error is not None:
        summary.errors.append(f"{path}: {idx.error}; the {idx.packets} packets before it are read")
    aggs = []
    done = 0
    for chunk in capture.chunks(buf, idx, OFFLINE_CHUNK_BYTES):
        sub = capture.index(chunk.data)
        pk = decode.decode(chunk.data, sub)
        summary.packets += sub.packets
        summary.bytes += int(pk.nbytes[pk.status == decode.OK].sum())
        summary.skipped.update(pk.skipped())
        summary.unsupported_linktypes.update(pk.unsupported_linktypes())
        aggs.append(flows.aggregate_arrays(pk, window_ms))
        done += len(chunk.data)
        if progress:
            progress(path, done, len(buf))
    return flows.combine(aggs) if aggs else None


def records(paths: Iterable[str], window_ms: int, sensor: str, summary: Summary, progress=None):
    aggs = [a for a in (file_aggregate(p, window_ms, summary, progress) for p in paths) if a is not None]
    if not aggs:
        return
    agg = flows.combine(aggs)
    summary.flows = len(agg)
    for w, key, p, b, f, last, fl in flows.rows(agg):
        ks = flows.key_string(sensor, key)
        yield flows.record(w, ks, [p, b, f, last, fl], window_ms, end_reason=flows.END_FORCED)


def write(recs, fmt: str, out: IO[str]) -> None:
    if fmt == "jsonl":
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        buf = io.StringIO()
        for n, rec in enumerate(recs, 1):
            buf.write(dumps(rec))
            buf.write("\n")
            if n % 10000 == 0:
                out.write(buf.getvalue())
                buf = io.StringIO()
        out.write(buf.getvalue())
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for r in recs:
            w.writerow([r["flowStartMilliseconds"], r["flowEndMilliseconds"],
                        r.get("sourceIPv4Address") or r.get("sourceIPv6Address"),
                        r.get("destinationIPv4Address") or r.get("destinationIPv6Address"),
                        r["sourceTransportPort"], r["destinationTransportPort"], r["protocolIdentifier"],
                        r["vlanId"], r["ipClassOfService"], r["packetDeltaCount"], r["octetDeltaCount"],
                        r["tcpControlBits"], r["flowsight"]["window"], r["flowId"]])
    else:
        raise ValueError(f"format {fmt!r}: expected jsonl or csv")


class ProgressBar:
    """A one-line bar on stderr, only on a terminal and only for files over ``min_bytes``."""

    def __init__(self, stream=sys.stderr, min_bytes: int = 100 << 20):
        self.stream, self.min_bytes = stream, min_bytes
        self.on = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, path: str, done: int, total: int) -> None:
        if not self.on or total < self.min_bytes:
            return
        width = 30
        fill = int(width * done / total)
        self.stream.write(f"\r{path[-40:]} [{'#' * fill}{'.' * (width - fill)}] {done * 100 // total:3d}%")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m app.offline FILE...``: the same as ``faust -A app pcap2flows``, without loading Faust."""
    import argparse

    ap = argparse.ArgumentParser(prog="pcap2flows", description="Print the flow records of capture files.")
    ap.add_argument("files", nargs="+", help="pcap or pcapng files ('-' reads standard input)")
    ap.add_argument("--window", type=int, default=60, help="window length in seconds; 0 = whole capture")
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ap.add_argument("--sensor", default="default")
    args = ap.parse_args(argv)
    return run(args.files, args.window, args.format, args.sensor)


def run(files: list[str], window_s: int, fmt: str, sensor: str, out: IO[str] | None = None) -> int:
    if window_s < 0:
        print("pcap2flows: --window must be 0 or more seconds", file=sys.stderr)
        return 2
    summary = Summary()
    write(records(files, window_s * 1000, sensor, summary, ProgressBar()), fmt, out or sys.stdout)
    print(summary.text(), file=sys.stderr)
    return 1 if summary.errors and summary.flows == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
