"""app/runtime/compat.py: produce requests encode to aiokafka's bytes, with one copy of each record batch; responses
are read whole and in order, however the socket cuts them; the pins are checked."""
from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tracemalloc

import pytest
from aiokafka.protocol import produce
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import Array, Int32, Schema
from hypothesis import example, given, settings, strategies as st

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


class Transport:
    """What a StreamReader asks of its transport: pause and resume."""

    def __init__(self):
        self.paused, self.pauses = False, 0

    def pause_reading(self):
        self.paused, self.pauses = True, self.pauses + 1

    def resume_reading(self):
        self.paused = False


def frame_reader(limit: int) -> tuple[asyncio.StreamReader, Transport]:
    reader = asyncio.StreamReader()
    assert compat.FrameReader.adopt(reader, limit)
    reader._limit = limit                      # below StreamReader's own, which adopt() keeps
    transport = Transport()
    reader.set_transport(transport)
    return reader, transport


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(max_size=3000), max_size=12), cuts=st.lists(st.integers(1, 5000), max_size=40),
       as_views=st.booleans())
@example(frames=[b"x" * 3000, b"y" * 10], cuts=[], as_views=False)
@example(frames=[b"z" * 3000], cuts=[1000], as_views=True)
def test_frames_come_out_whole_and_in_order_however_the_socket_cuts_them(frames, cuts, as_views):
    async def run():
        reader, transport = frame_reader(limit=256)
        stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
        got = []

        async def read():
            while not reader.at_eof():
                try:
                    size, = struct.unpack(">i", await reader.readexactly(4))
                except asyncio.IncompleteReadError as exc:
                    assert exc.partial == b""
                    return
                got.append(await reader.readexactly(size))
                assert not transport.paused or reader._held > 256    # read down to the limit: resumed

        task = asyncio.ensure_future(read())
        at, i = 0, 0
        while at < len(stream):
            n = cuts[i % len(cuts)] if cuts else len(stream)
            piece = stream[at:at + n]
            reader.feed_data(memoryview(piece) if as_views else piece)
            at, i = at + n, i + 1
            await asyncio.sleep(0)
            # past twice the limit the socket is paused, unless the reader waits for more (a larger frame)
            assert reader._held <= 2 * 256 or transport.paused or reader._waiter is not None
        reader.feed_eof()
        await asyncio.wait_for(task, 5)
        assert got == frames and all(type(g) is bytes for g in got)
        assert reader.at_eof() and not transport.paused
    asyncio.run(run())


def test_the_socket_is_paused_past_twice_the_limit_and_resumed_once_read_down_to_it():
    async def run():
        reader, transport = frame_reader(limit=256)
        reader.feed_data(b"a" * 500)
        assert not transport.paused
        reader.feed_data(b"b" * 100)
        assert transport.paused and transport.pauses == 1
        assert await reader.readexactly(200) == b"a" * 200 and transport.paused     # 400 left
        assert await reader.readexactly(200) == b"a" * 200 and not transport.paused  # 200 left
    asyncio.run(run())


def test_a_frame_cut_off_by_the_end_of_the_connection_says_so_and_an_error_is_raised_to_the_reader():
    async def run():
        reader, _ = frame_reader(limit=1024)
        reader.feed_data(b"abc")
        reader.feed_data(b"de")
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError) as exc:
            await reader.readexactly(9)
        assert exc.value.partial == b"abcde" and exc.value.expected == 9
        reader2, _ = frame_reader(limit=1024)
        waiting = asyncio.ensure_future(reader2.readexactly(4))
        await asyncio.sleep(0)
        reader2.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await waiting
    asyncio.run(run())


def test_a_large_response_is_joined_once_and_a_whole_piece_is_handed_over_as_it_came():
    async def run():
        reader, _ = frame_reader(limit=1 << 20)
        one = os.urandom(1 << 16)
        reader.feed_data(one)
        assert await reader.readexactly(len(one)) is one
        pieces = [os.urandom(1 << 18) for _ in range(8)]
        for p in pieces:
            reader.feed_data(p)
        tracemalloc.start()
        try:
            out = await reader.readexactly(len(pieces) * (1 << 18) - 100)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert out == b"".join(pieces)[:-100]
        assert peak < 1.1 * len(out)              # the joined response only: no buffer copied in between
        assert await reader.readexactly(100) == pieces[-1][-100:]
    asyncio.run(run())


def test_aiokafkas_connections_get_the_frame_reader():
    from aiokafka import conn
    assert compat.install_frame_reader() and compat.install_frame_reader()   # twice is the same

    async def run():
        reader = asyncio.StreamReader(limit=2 ** 16)
        conn.AIOKafkaProtocol(asyncio.get_running_loop().create_future(), reader, loop=asyncio.get_running_loop())
        assert type(reader) is compat.FrameReader and reader._limit == compat.READ_LIMIT
    asyncio.run(run())
