"""app/runtime/compat.py: produce requests encode to aiokafka's bytes, with one copy of each record batch; the pins are checked."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import pytest
from aiokafka.protocol import produce
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import Array, Int32, Schema
from hypothesis import given, settings, strategies as st

from app.runtime import compat

batches = st.one_of(st.none(), st.binary(max_size=64))
partitions = st.lists(st.tuples(st.integers(0, 2**31 - 1), batches), max_size=4)
topics = st.lists(st.tuples(st.text(max_size=12), partitions), max_size=3)


aiokafka_bytes = Struct.encode   # aiokafka's own encoding, whatever install() did to the subclasses


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from(compat.VERSIONS), tid=st.one_of(st.none(), st.text(max_size=10)),
       acks=st.sampled_from([-1, 0, 1]), timeout=st.integers(0, 2**31 - 1), topics=topics)
def test_a_produce_request_encodes_to_the_bytes_of_aiokafkas_schema(version, tid, acks, timeout, topics):
    req = getattr(produce, f"ProduceRequest_v{version}")(tid, acks, timeout, topics)
    assert compat.encode_produce(req) == aiokafka_bytes(req)


def test_install_takes_every_version_and_the_requests_encode_with_it():
    assert compat.install_produce_encoding() == list(compat.VERSIONS)
    assert compat.install_produce_encoding() == list(compat.VERSIONS)   # twice is the same
    for v in compat.VERSIONS:
        cls = getattr(produce, f"ProduceRequest_v{v}")
        assert cls.encode is compat.encode_produce
        req = cls("tx", -1, 1000, [("pcap-chunks", [(3, b"batch")])])
        assert req.encode() == aiokafka_bytes(req)


def test_a_version_whose_schema_changed_keeps_aiokafkas_encoding(monkeypatch):
    class Changed(produce.ProduceRequest_v8):      # as if a later aiokafka added a field to v8
        SCHEMA = Schema(*zip(produce.ProduceRequest_v8.SCHEMA.names, produce.ProduceRequest_v8.SCHEMA.fields),
                        ("extra", Array(Int32)))

        def __init__(self, *args):
            super().__init__(*args, [])
    monkeypatch.setattr(produce, "ProduceRequest_v8", Changed)
    assert 8 not in compat.install_produce_encoding()
    assert "encode" not in Changed.__dict__


def peak_bytes(encode, req) -> int:
    tracemalloc.start()
    try:
        encode(req)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("batch_mib", [1, 8])
def test_a_record_batch_is_copied_once(batch_mib):
    batch = os.urandom(batch_mib << 20)
    req = produce.ProduceRequest_v8(None, -1, 30000, [("pcap-chunks", [(0, batch), (1, b"small")])])
    size = len(batch)
    assert peak_bytes(compat.encode_produce, req) < 1.1 * size     # the joined request only
    assert peak_bytes(aiokafka_bytes, req) > 1.9 * size                 # nested joins hold two at a time


def test_the_worker_encodes_its_produce_requests_so():
    # in a process of its own: this one may have installed it already
    probe = ("import app.main\nfrom aiokafka.protocol import produce\nfrom app.runtime import compat\n"
             "print(produce.ProduceRequest_v8.encode is compat.encode_produce)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-1:] == ["True"], out.stderr[-2000:]


def test_install_checks_the_pinned_versions_and_says_what_it_installed(caplog, monkeypatch):
    import logging

    from aiokafka.protocol import produce

    with caplog.at_level(logging.INFO, logger="app.runtime.compat"):
        done = compat.install(patches=True)
    assert done["patches"] is True and set(done["produce_encoding"]) == set(compat.VERSIONS)
    assert "produce requests v" in caplog.text and compat.version_mismatches() == {}   # the pins hold here
    monkeypatch.setitem(compat.PINNED, "aiokafka", "0.0.1")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.runtime.compat"):
        off = compat.install(patches=False)
    assert off["produce_encoding"] == [] and off["hardened_errors"] is False
    assert "aiokafka 0.14.0 is installed, this code was written for 0.0.1" in caplog.text
    assert compat.version_mismatches() == {"aiokafka": ("0.0.1", "0.14.0")}
    assert produce.ProduceRequest_v8.encode is compat.encode_produce   # installed earlier; idempotent
