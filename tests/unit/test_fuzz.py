"""Mutated and random captures: the reader raises only CaptureError, never hangs, and stays in bounds."""
from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from app.capture import pcap
from app.flows import decode
from app.capture import synth
from tests import pcapgen, reference

SEEDS = [synth.generate(seed=s, conversations=20, packets=120, v6_share=0.5, vlan_share=0.5).pcap for s in (1, 2)]
SEEDS.append(pcapgen.pcapng([(1.5 + i, pcapgen.ipv6_udp("2001:db8::1", "2001:db8::2", 1, 2)) for i in range(30)],
                            tsresol=9))


def corpus_seeds() -> list[bytes]:
    if not (reference.SHARED / "real").exists():
        return []
    small = sorted((p for d in ("real", "edge", "broken") for p in (reference.SHARED / d).iterdir()
                    if p.stat().st_size < 60_000), key=lambda p: p.name)
    return [p.read_bytes() for p in small]


SEEDS += corpus_seeds()


def run_all(data: bytes) -> None:
    tracemalloc.start()
    try:
        _run_all(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # index and decode columns take a few dozen bytes per possible packet (one per 16 bytes)
    assert peak <= 16 * len(data) + (4 << 20), f"{peak} bytes for a {len(data)}-byte capture"


def _run_all(data: bytes) -> None:
    idx = pcapgen.read_through(data)
    if idx is None:
        return
    total = 0
    for c in pcap.chunks(data, idx, 4096):
        sub = pcap.index(c.data)
        assert sub.error is None
        total += sub.packets
        decode.decode(c.data, sub)
    assert total == idx.packets


for _seed in SEEDS:  # load the compiled kernels first: their loading is not the reader's memory
    _run_all(_seed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=30),
       st.floats(0, 1))
def test_mutated_captures(seed, flips, cut):
    data = bytearray(SEEDS[seed])
    for where, value in flips if data else ():
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(1, int(len(data) * (0.5 + cut / 2)))])
    run_all(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a"]),
       st.binary(min_size=0, max_size=3000))
def test_random_bodies_behind_a_valid_magic(magic, rest):
    run_all(magic + rest)


def test_pcapng_with_absurd_block_lengths():
    good = SEEDS[-1]
    for bad_len in (0, 3, 13, 0x7FFFFFFC, 0xFFFFFFFC):
        data = bytearray(good)
        data[4:8] = np.uint32(bad_len).tobytes()
        run_all(bytes(data))
