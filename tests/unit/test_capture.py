from __future__ import annotations

import numpy as np
import pytest

from app.capture import pcap
from app.flows import decode
from tests import pcapgen, reference


def frames(n: int) -> list[tuple[float, bytes]]:
    return [(1_600_000_000 + i * 0.25, pcapgen.ipv4_tcp("10.0.0.1", "10.0.0.2", 1000 + i % 7, 80, payload=b"a" * (i % 300)))
            for i in range(n)]


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_byte_orders_and_resolutions(nano, big_endian):
    data = pcapgen.pcap(frames(10), nano=nano, big_endian=big_endian)
    idx = pcap.index(data)
    assert idx.packets == 10 and idx.error is None
    assert idx.ts_ns[1] - idx.ts_ns[0] == 250_000_000
    assert idx.ts_ns[0] == 1_600_000_000 * 10**9


@pytest.mark.parametrize("tsresol", [None, 6, 9])
def test_pcapng_timestamp_resolution(tsresol):
    data = pcapgen.pcapng(frames(5), tsresol=tsresol)
    idx = pcap.index(data)
    assert idx.packets == 5
    assert list(idx.ts_ns[:2]) == [1_600_000_000 * 10**9, 1_600_000_000 * 10**9 + 250_000_000]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("chunk_bytes", [300, 4096, 1 << 20])
def test_chunks_hold_every_packet_once_and_are_deterministic(fmt, chunk_bytes):
    data = (pcapgen.pcap if fmt == "pcap" else pcapgen.pcapng)(frames(200))
    idx = pcap.index(data)
    first = [c.data for c in pcap.chunks(data, idx, chunk_bytes)]
    again = [c.data for c in pcap.chunks(data, pcap.index(data), chunk_bytes)]
    assert first == again
    assert len(first) > 1 or chunk_bytes >= len(data)
    ts = np.concatenate([pcap.index(c).ts_ns for c in first])
    assert np.array_equal(ts, idx.ts_ns)
    for c in first:  # a chunk is a capture of its own, no bigger than asked unless one packet is
        sub = pcap.index(c)
        assert sub.error is None
        assert len(c) <= chunk_bytes or sub.packets == 1


def test_multi_interface_pcapng_chunks_keep_their_interfaces():
    path = reference.pcaps_dir() / "edge" / "zeek-ldap-modify-request.pcapng"
    data = path.read_bytes()
    idx = pcap.index(data)
    whole = decode.decode(data, idx)
    parts = []
    for c in pcap.chunks(data, idx, 4096):
        sub = pcap.index(c.data)
        parts.append(decode.decode(c.data, sub).linktype)
    assert np.array_equal(np.concatenate(parts), whole.linktype)


@pytest.mark.parametrize("body, kind", [
    (b"", "empty"),
    (b"\x1f\x8b\x08\x00rest", "gzip"),
    (b"GET / HTTP/1.1\r\n\r\n", "bad-magic"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "short-header"),
])
def test_unreadable_headers_raise_capture_error(body, kind):
    with pytest.raises(pcap.CaptureError) as exc:
        pcap.index(body)
    assert exc.value.kind == kind


def test_damage_after_good_records_keeps_the_good_ones():
    data = pcapgen.pcap(frames(10))
    cut = data[: len(data) - 30]
    idx = pcap.index(cut)
    assert idx.packets == 9
    assert idx.error.kind == "truncated" and idx.error.offset > 24


def test_broken_corpus_reports_documented_kinds():
    base = reference.pcaps_dir() / "broken"
    expected = {  # file: (readable packets, error kind) -- from MANIFEST.tsv's "readable before error"
        "sv-bug-6875-fuzz.pcap": (1, "bad-record-length"),
        "sv-tls_DER-incomplete-header.pcap": (6, "bad-record-length"),
        "sv-smtp-to-comma-damaged.pcap": (18, "bad-record-length"),
        "sv-http-mime-truncated.pcap": (2696, "truncated"),
        "derived-cut-in-record-header-zeek-wikipedia.pcap": (2, "truncated"),
        "tcpdump-timestamp_invalid_micro.pcap": (1, "bad-timestamp"),
        "tcpdump-timestamp_invalid_nano.pcap": (1, "bad-timestamp"),
    }
    for name, (packets, kind) in expected.items():
        idx = pcap.index((base / name).read_bytes())
        assert (idx.packets, idx.error.kind if idx.error else None) == (packets, kind), name


def test_every_capture_in_the_corpus_reads_without_a_foreign_exception():
    base = reference.pcaps_dir()
    for path in sorted(p for d in ("real", "attack", "edge", "broken") for p in (base / d).iterdir()):
        pcapgen.read_through(path.read_bytes())


def test_snaplen_truncated_packets_count_true_bytes():
    frame = pcapgen.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, payload=b"z" * 1000)
    data = pcapgen.pcap([(1.0, frame)], snaplen=64)
    pk = decode.decode(data, pcap.index(data))
    assert pk.status[0] == decode.OK and pk.nbytes[0] == len(frame) - 14 and pk.sport[0] == 1
