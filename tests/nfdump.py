"""Debian's nfcapd on loopback as a collector, and nfdump reading back what it stored: shared by the export
and the filter tests."""
from __future__ import annotations

import csv
import io
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict

import pytest


def free_udp_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key(src, dst, proto, sport, dport):
    proto = int(proto)
    return (src, dst, proto) + ((int(sport), int(dport)) if proto in (6, 17) else ())


def collected(flowdir, flt: str | None = None) -> dict:
    """Packets and bytes per flow key of what nfcapd stored, through nfdump's filter ``flt`` if given."""
    text = subprocess.run(["nfdump", "-R", str(flowdir), "-o", "csv", "-q", *([flt] if flt else [])],
                          capture_output=True, text=True, check=True).stdout
    out = defaultdict(lambda: [0, 0])
    rows = csv.reader(io.StringIO(text))
    for row in rows:
        if len(row) < 13 or row[0] == "ts":
            continue
        name = row[7].strip()
        proto = int(name) if name.isdigit() else {"ICMP6": 58}.get(name) or socket.getprotobyname(name.lower())
        sport, dport = row[5], row[6]
        k = key(row[3], row[4], proto, sport if proto in (6, 17) else 0, dport if proto in (6, 17) else 0)
        out[k][0] += int(row[11])
        out[k][1] += int(row[12])
    return dict(out)


@pytest.fixture
def nfcapd(tmp_path):
    if shutil.which("nfcapd") is None:
        pytest.fail("nfcapd is not installed: the export tests need Debian's nfdump (make test installs it)")
    port = free_udp_port()
    flowdir = tmp_path / "flows"
    flowdir.mkdir()
    proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(flowdir), "-t", "3600"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    assert proc.poll() is None, proc.stdout.read()

    def stop() -> str:
        proc.send_signal(signal.SIGTERM)   # nfcapd writes its current file on SIGTERM
        out, _ = proc.communicate(timeout=30)
        return out

    yield port, flowdir, stop
    if proc.poll() is None:
        proc.kill()


