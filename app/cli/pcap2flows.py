"""Captures to flow records without Kafka: the engine of ``faust -A app pcap2flows``.

Pure code (no Faust). It runs the pipeline's own functions -- pcap.index,
pcap.chunks, decode.decode, flows.aggregate_arrays -- chunk by chunk, and
merges the chunks' aggregates, so it prints the records the pipeline would emit
once every window has closed.
"""
from __future__ import annotations

import io
import json
import mmap
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO
from collections.abc import Iterable

import numpy as np

from app.capture import pcap
from app.flows import decode
from app.flows import parts as flows
from app.export import text as textout
from app.records import NAME

#: Packets decoded at a time: bounds the memory of the per-packet columns.
BATCH_PACKETS = 1 << 20
#: Read buffer of the streaming pcap reader: small enough to stay in the CPU cache.
BLOCK_BYTES = 4 << 20


@dataclass
class Summary:
    """What the offline command read and made: files, packets, bytes, flows and errors (printed to stderr)."""

    files: int = 0
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    tunnel_packets: int = 0
    skipped: Counter = field(default_factory=Counter)
    unsupported_linktypes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"files {self.files}  packets {self.packets}  bytes {self.bytes}  flows {self.flows}"]
        if self.tunnel_packets:
            lines.append(f"tunnel packets with an inner flow: {self.tunnel_packets}")
        if self.skipped:
            lines.append("skipped packets: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if self.unsupported_linktypes:
            lines.append("unsupported link types: " +
                         ", ".join(f"{k} ({v} packets)" for k, v in sorted(self.unsupported_linktypes.items())))
        lines += [f"warning: {e}" for e in self.warnings]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def file_aggregate(path: str, into: flows.Aggregator, summary: Summary, progress=None) -> None:
    """Aggregate one capture. Classic pcap streams through a small buffer (the walk stays in cache and
    memory stays bounded); pcapng is indexed whole, then decoded in batches of packets."""
    if path != "-":
        try:
            with open(path, "rb") as f:
                head = f.read(28)
                if head[:4] in (pcap.PCAP_US_LE, pcap.PCAP_US_BE, pcap.PCAP_NS_LE, pcap.PCAP_NS_BE):
                    f.seek(0)
                    summary.files += 1
                    return _stream_pcap(path, f, into, summary, progress)
        except OSError as exc:
            summary.errors.append(f"{path}: {exc.strerror}")
            return None
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
            mm = None
        else:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            data = mm if mm is not None else b""
    except OSError as exc:
        summary.errors.append(f"{path}: {exc.strerror}")
        return None
    summary.files += 1
    try:
        return _aggregate(path, data, mm, into, summary, progress)
    finally:
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a view outlived us; the map closes when it is collected
                pass


def _aggregate(path, data, mm, into, summary, progress) -> None:
    if mm is not None:
        mm.madvise(mmap.MADV_SEQUENTIAL)
    buf = pcap.as_bytes_array(data)
    try:
        idx = pcap.index(buf)
    except pcap.CaptureError as exc:
        summary.errors.append(f"{path}: {exc}")
        return None
    if idx.error is not None and idx.error.kind == "truncated" and idx.packets:
        summary.warnings.append(f"{path}: ends inside a record at byte {idx.end}; its {idx.packets} whole packets "
                                "are read")
    elif idx.error is not None:
        summary.errors.append(f"{path}: {idx.error}; the {idx.packets} packets before it are read")
    dropped = 0
    for lo in range(0, idx.packets, BATCH_PACKETS):
        sub = idx.slice(lo, min(lo + BATCH_PACKETS, idx.packets))
        _add(summary, into, buf, sub)
        done = int(sub.record_start[-1])
        if mm is not None:  # keep resident memory bounded: these pages are read
            upto = done // mmap.PAGESIZE * mmap.PAGESIZE
            if upto > dropped:
                mm.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                dropped = upto
        if progress:
            progress(path, done, len(buf))
    del buf


def _stream_pcap(path: str, f, into: flows.Aggregator, summary: Summary, progress) -> None:
    size = os.fstat(f.fileno()).st_size
    head = f.read(24)
    try:
        pcap.check_header(head)
    except pcap.CaptureError as exc:
        summary.errors.append(f"{path}: {exc}")
        return None
    buf = bytearray(head) + bytearray(BLOCK_BYTES)
    have = 24 + (f.readinto(memoryview(buf)[24:]) or 0)
    consumed = 24  # file offset of buf[24]
    while have > 24:
        view = np.frombuffer(buf, np.uint8, count=have)
        idx = pcap.index(view)
        eof = have < len(buf)
        if idx.packets:
            _add(summary, into, view, idx)
        err = idx.error
        if err is not None and (eof or err.kind != "truncated" or idx.packets == 0):
            if err.kind == "truncated" and idx.packets == 0 and not eof:  # one record bigger than the buffer
                buf.extend(bytearray(len(buf)))
                have += f.readinto(memoryview(buf)[have:]) or 0
                continue
            if err.kind == "truncated" and summary.packets:   # as the server takes it: whole packets, a warning
                summary.warnings.append(f"{path}: ends inside a record at byte {consumed - 24 + err.offset}; "
                                        f"its {summary.packets} whole packets are read")
            else:
                summary.errors.append(f"{path}: {err.kind} at byte {consumed - 24 + err.offset}; "
                                      f"the {summary.packets} packets before it are read")
            break
        end = idx.end if err is not None else have
        rest = have - end
        buf[24:24 + rest] = buf[end:have]
        consumed += end - 24
        have = 24 + rest + (f.readinto(memoryview(buf)[24 + rest:]) or 0)
        if progress:
            progress(path, consumed, size)


def _add(summary: Summary, into: flows.Aggregator, buf, idx: pcap.Index) -> None:
    pk = decode.decode(buf, idx)
    if into.inner_tunnels:
        inner = decode.decode(buf, idx, inner=True)
        summary.tunnel_packets += int((inner.status == decode.OK).sum())
        into.add_packets(inner)
    summary.packets += idx.packets
    summary.bytes += int(pk.nbytes[pk.status == decode.OK].sum())
    summary.skipped.update(pk.skipped())
    summary.unsupported_linktypes.update(pk.unsupported_linktypes())
    into.add_packets(pk)


def aggregate_files(paths: Iterable[str], window_ms: int, summary: Summary,
                    progress=None, inner_tunnels: bool = False) -> flows.Aggregate | None:
    """All packets of all files, as flows."""
    into = flows.Aggregator(window_ms)
    into.inner_tunnels = inner_tunnels
    for path in paths:
        file_aggregate(path, into, summary, progress)
    agg = into.result()
    summary.flows = len(agg)
    return agg if len(agg) else None


def lines(agg: flows.Aggregate, fmt: str, sensor: str, window_ms: int):
    """UTF-8 text of every flow, in pieces, rendered from the columns in compiled code."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format {fmt!r}: expected jsonl or csv")
    if fmt == "csv":
        yield (",".join(textout.CSV_FIELDS) + "\n").encode()
    fid = textout.flow_ids(agg.ver, agg.src, agg.dst, agg.sport, agg.dport, agg.proto, agg.vlan, agg.tos,
                           agg.first_ms, agg.w, sensor)
    step = 200_000
    for lo in range(0, len(agg), step):
        sl = slice(lo, lo + step)
        yield textout.render(fmt, agg.ver[sl], agg.src[sl], agg.dst[sl], agg.sport[sl], agg.dport[sl], agg.proto[sl],
                             agg.vlan[sl], agg.tos[sl], agg.packets[sl], agg.nbytes[sl], agg.first_ms[sl],
                             agg.last_ms[sl], agg.flags[sl], agg.w[sl], fid[sl], sensor, window_ms)


def write(pieces, out: IO) -> None:
    """Write byte pieces to a binary stream, or to a text stream's underlying buffer."""
    target = getattr(out, "buffer", None)
    if target is None and isinstance(out, io.TextIOBase):
        for piece in pieces:
            out.write(piece.decode())
        return
    target = target or out
    for piece in pieces:
        target.write(piece)


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


def records_of_files(paths: list[str], window_s: int, sensor: str = "default"):
    """The flow records of capture files, as the pipeline would emit them (no broker), in batches."""
    summary = Summary()
    agg = aggregate_files(paths, window_s * 1000, summary)
    if agg is None:
        return
    for piece in lines(agg, "jsonl", sensor, window_s * 1000):
        yield [json.loads(line) for line in piece.decode().splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    """``python -m app.cli.pcap2flows FILE...``: the same as ``faust -A app pcap2flows``, without loading Faust."""
    import argparse

    ap = argparse.ArgumentParser(prog="pcap2flows", description="Print the flow records of capture files.")
    ap.add_argument("files", nargs="+", help="pcap or pcapng files ('-' reads standard input)")
    ap.add_argument("--window", type=int, default=60, help="window length in seconds; 0 = whole capture")
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ap.add_argument("--sensor", default="default")
    ap.add_argument("--inner-tunnels", action="store_true", help="also emit the inner flow of tunnel packets")
    args = ap.parse_args(argv)
    return run(args.files, args.window, args.format, args.sensor, inner_tunnels=args.inner_tunnels)


def run(files: list[str], window_s: int, fmt: str, sensor: str, out: IO | None = None,
        inner_tunnels: bool = False) -> int:
    if window_s < 0:
        print("pcap2flows: --window must be 0 or more seconds", file=sys.stderr)
        return 2
    summary = Summary()
    if not NAME.match(sensor):
        print(f"pcap2flows: --sensor {sensor!r}: use letters, digits, '.', '_', ':' and '-' (at most 128)",
              file=sys.stderr)
        return 2
    agg = aggregate_files(files, window_s * 1000, summary, ProgressBar(), inner_tunnels)
    if agg is not None:
        write(lines(agg, fmt, sensor, window_s * 1000), out or sys.stdout)
    print(summary.text(), file=sys.stderr)
    return 1 if summary.errors and summary.flows == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
