"""Flow records for people: a table like nfdump's, and CSV with the offline command's columns. Pure code.

>>> r = {"sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "10.0.0.2", "sourceTransportPort": 40000,
...      "destinationTransportPort": 22, "protocolIdentifier": 6, "flowStartMilliseconds": 1764583200123,
...      "flowEndMilliseconds": 1764583201456, "packetDeltaCount": 12, "octetDeltaCount": 2048,
...      "tcpControlBits": 0x1B, "flowsight": {"sensor": "tap1", "window": 1764583200000}}
>>> print(table_row(r))
2025-12-01 10:00:00.123     1.333 tcp         10.0.0.1:40000   ->          10.0.0.2:22    .AP.SF       12     2048 tap1
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, UTC

from app.records import CSV_COLUMNS, proto_name

HEADER = (f"{'Date first seen':<23} {'Duration':>9} {'Proto':<5} {'Src IP Addr:Port':>25}    "
          f"{'Dst IP Addr:Port':<20} {'Flags':<6} {'Packets':>8} {'Bytes':>8} Sensor")
_FLAG_LETTERS = ((0x20, "U"), (0x10, "A"), (0x08, "P"), (0x04, "R"), (0x02, "S"), (0x01, "F"))


def flags_text(bits: int) -> str:
    """TCP flags as nfdump prints them: ``UAPRSF`` with dots for the flags not set."""
    return "".join(c if bits & b else "." for b, c in _FLAG_LETTERS)


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def table_row(r: dict) -> str:
    first = datetime.fromtimestamp(r["flowStartMilliseconds"] / 1000, UTC)
    src = r.get("sourceIPv4Address") or r.get("sourceIPv6Address", "")
    dst = r.get("destinationIPv4Address") or r.get("destinationIPv6Address", "")
    dur = (r["flowEndMilliseconds"] - r["flowStartMilliseconds"]) / 1000
    flags = flags_text(r.get("tcpControlBits", 0)) if r["protocolIdentifier"] == 6 else "......"
    return (f"{first:%Y-%m-%d %H:%M:%S}.{first.microsecond // 1000:03d} {dur:9.3f} "
            f"{proto_name(r['protocolIdentifier']):<5} {_endpoint(src, r['sourceTransportPort']):>20}   -> "
            f"{_endpoint(dst, r['destinationTransportPort']):>20}    {flags:<6} {r['packetDeltaCount']:>8} "
            f"{r['octetDeltaCount']:>8} {r['flowsight']['sensor']}")


def csv_rows(records: list[dict], header: bool) -> str:
    """The records as CSV with :data:`app.records.CSV_COLUMNS` (the header first if asked)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(CSV_COLUMNS)
    for r in records:
        row = {**r, "sourceAddress": r.get("sourceIPv4Address") or r.get("sourceIPv6Address"),
               "destinationAddress": r.get("destinationIPv4Address") or r.get("destinationIPv6Address"),
               "window": r["flowsight"]["window"]}
        w.writerow([row[c] for c in CSV_COLUMNS])
    return out.getvalue()
