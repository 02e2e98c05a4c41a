"""The agents' wiring, with Faust's test_context: in-memory tables, mocked outbound topics."""
from __future__ import annotations

import asyncio
import json
from unittest.mock import AsyncMock, patch

import pytest

from app import records
from app.capture import pcap
from app.flows import decode
from app.flows import parts as flowlib
from tests import pcapgen


@pytest.fixture()
def faust_app():
    from app.main import app

    app.finalize()
    app.flow_control.resume()
    return app


def acked():
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def sample_chunk() -> bytes:
    frames = [(1_600_000_000 + i, pcapgen.ipv4_tcp("10.0.0.1", "10.0.0.2", 1000 + i % 3, 80)) for i in range(12)]
    frames.append((1_600_000_005.5, pcapgen.ipv6_udp("2001:db8::1", "2001:db8::2", 5353, 53)))
    return pcapgen.pcap(frames)


async def test_decode_sends_each_chunks_parts_once_and_remembers_the_chunk(faust_app):
    from agents import decode as decode_agent
    from tables import blocks

    data = sample_chunk()
    headers = {"block": b"blk1", "sensor": b"tap", "chunk": b"0"}
    send = AsyncMock(side_effect=lambda **kw: acked())
    with patch.object(decode_agent.flow_parts, "send", send), \
            patch.object(decode_agent.gaps, "missed", AsyncMock(return_value=[])):
        async with decode_agent.decode_chunks.test_context() as agent:
            await agent.put(data, key=b"blk1", headers=headers)
            await agent.put(data, key=b"blk1", headers=headers)  # redelivered: decoded once
    sent = [{**call.kwargs, "value": json.loads(call.kwargs["value"])} for call in send.call_args_list]
    parts = [p for kw in sent for p in kw["value"]["parts"]]
    assert sum(p[2] for p in parts) == 13
    assert len({tuple(p[:2]) for p in parts}) == len(parts) == 4
    for kw in sent:  # every part went to its flow key's partition
        assert all(records.partition_for(p[1], faust_app.conf.topic_partitions) == kw["partition"]
                   for p in kw["value"]["parts"])
    # every partition heard the chunk's highest capture time, once; the redelivery says so again without
    # parts (an announced block's hold is released by it)
    n = faust_app.conf.topic_partitions
    first, again = sent[:n], sent[n:]
    assert sorted(kw["partition"] for kw in first) == sorted(kw["partition"] for kw in again) == list(range(n))
    assert {kw["value"]["top"] for kw in first} == {max(p[5] for p in parts)}
    assert not [p for kw in again for p in kw["value"]["parts"]]
    assert blocks["tap~blk1"]["done"] == [[0, 0]]


def test_a_blocks_partition_is_the_one_get_blocks_is_routed_to(faust_app):
    """A block's own row (the one ingest asks for) lives where table routing looks for it."""
    from aiokafka.partitioner import DefaultPartitioner

    from app import topics
    from tables import blocks

    n = faust_app.conf.topic_partitions
    keys = [f"tap~blk{i}" for i in range(64)]
    homes = [topics.home_partition(k, n) for k in keys]
    routed = [DefaultPartitioner()(faust_app.router._get_serialized_key(blocks, k), list(range(n)), list(range(n)))
              for k in keys]
    assert homes == routed
    raw = [DefaultPartitioner()(k.encode(), list(range(n)), list(range(n))) for k in keys]
    assert raw != routed   # the raw key's partition, where the row used to be written, is another one
    assert [topics.chunk_partition(keys[0], i, n) for i in range(n + 1)] == \
        [(homes[0] + i) % n for i in range(n)] + [homes[0]]


async def test_a_chunk_of_another_lane_is_remembered_there_and_reported_to_the_blocks_own_row(faust_app):
    """Chunk 9 of 16 (8 partitions: lane 1) is decoded on the partition after the block's own, kept in
    that lane's row, and reported done to the block's row, which ingest reads; a redelivery reports again."""
    from agents import decode as decode_agent
    from app import topics
    from tables import blocks

    n = faust_app.conf.topic_partitions
    data = sample_chunk()
    home = topics.home_partition("tap~blk2", n)
    headers = {"block": b"blk2", "sensor": b"tap", "chunk": b"9", "chunks": b"16", "sha256": b"ab"}
    parts_send = AsyncMock(side_effect=lambda **kw: acked())
    chunk_send = AsyncMock(side_effect=lambda **kw: acked())
    with patch.object(decode_agent.flow_parts, "send", parts_send), \
            patch.object(decode_agent.pcap_chunks, "send", chunk_send), \
            patch.object(decode_agent.gaps, "missed", AsyncMock(return_value=[])):
        async with decode_agent.decode_chunks.test_context() as agent:
            await agent.put(data, key=b"tap~blk2", headers=headers, partition=(home + 9) % n)
            await agent.put(data, key=b"tap~blk2", headers=headers, partition=(home + 9) % n)
            assert blocks.get("tap~blk2") is None          # only the report writes the block's own row
            report = chunk_send.call_args_list[0].kwargs
            await agent.put(report["value"], key=report["key"], headers=report["headers"],
                            partition=report["partition"])
    parts = [p for c in parts_send.call_args_list for p in json.loads(c.kwargs["value"])["parts"]]
    assert sum(p[2] for p in parts) == 13                  # decoded once
    assert blocks[f"tap~blk2{topics.LANE}1"]["done"] == [[9, 9]]
    assert [(c.kwargs["partition"], c.kwargs["key"], dict(c.kwargs["headers"])["done"])
            for c in chunk_send.call_args_list] == [(home, b"tap~blk2", b"1")] * 2
    assert blocks["tap~blk2"]["done"] == [[9, 9]] and blocks["tap~blk2"]["chunks"] == 16


async def test_merge_emits_closed_windows_and_skips_replays(faust_app):
    from agents import flows as flows_agent

    data = sample_chunk()
    parts = flowlib.parts("tap", decode.decode(data, pcap.index(data)), 60_000)
    msg = {"block": "b", "chunk": 0, "sensor": "tap", "parts": parts}
    later = {"block": "b", "chunk": 1, "sensor": "tap",
             "parts": [[1_600_000_200_000 - 1_600_000_200_000 % 60_000, parts[0][1], 1, 40, 1_600_000_200_000,
                        1_600_000_200_000, 0]]}
    flows_send = AsyncMock(side_effect=lambda **kw: acked())
    stats_send = AsyncMock(side_effect=lambda **kw: acked())
    with patch.object(flows_agent.flows_topic, "send", flows_send), \
            patch.object(flows_agent.window_summaries, "send", stats_send), \
            patch.object(flows_agent.gaps, "missed", AsyncMock(return_value=[])):
        async with flows_agent.merge_flow_parts.test_context() as agent:
            await agent.put(msg, key=b"b", partition=0)
            await agent.put(msg, key=b"b", partition=0)
            await agent.put(later, key=b"b", partition=0)
    records = [r for c in flows_send.call_args_list for r in json.loads(c.kwargs["value"])["records"]]
    assert all(c.kwargs["partition"] == 0 for c in flows_send.call_args_list)
    assert sum(r["packetDeltaCount"] for r in records) == 13
    assert len({r["flowId"] for r in records}) == len(records)
    assert stats_send.call_count >= 1


async def test_gap_finder_fetches_what_the_stream_skipped(faust_app):
    from app.runtime.gaps import GapFinder, Missed

    g = GapFinder("t")
    read = AsyncMock(side_effect=lambda p, start, end: [Missed(p, o, None, b"{}", [], 0) for o in range(start, end)])
    with patch.object(g, "_committed", AsyncMock(return_value=5)), patch.object(g, "_read", read):
        assert [m.offset for m in await g.missed(0, 8)] == [5, 6, 7]   # after assignment: from the commit
        g.processed(0, 8)
        assert await g.missed(0, 9) == []                             # contiguous
        g.processed(0, 9)
        assert [m.offset for m in await g.missed(0, 12)] == [10, 11]  # a skip in the middle
        g.processed(0, 12)
        assert await g.missed(0, 11) == []                            # a replay: nothing to fetch
        g.forget([0])
        assert [m.offset for m in await g.missed(0, 6)] == [5]        # reassigned: from the commit again


async def test_score_waits_for_every_partition_then_scores_each_sensor_once(faust_app):
    from agents import score as score_agent
    from app.flows.summary import Summary
    from tables import scoring

    w0 = 1_767_571_200_000
    window_ms = score_agent.CONFIG.window_ms

    def summary(n):
        s = Summary()
        for i in range(n):
            s.add("10.0.0.1", f"192.0.2.{i}", 6, 1000 + i, 443, 3, 300, 0x1B, True)
        return s.to_json()

    parts = faust_app.conf.topic_partitions
    msgs = [{"window": w0, "partition": p, "windowLengthMs": window_ms, "sensors": {sensor: summary(n)}}
            for p in range(parts) for sensor, n in (("tap", p + 1), ("placebo", 1))]
    msgs.append(msgs[0])                                             # redelivered: replaces itself
    fronts = [{"frontier": w0 + window_ms, "partition": p, "sensor": sensor}
              for sensor in ("placebo", "tap") for p in range(parts)]
    sent = AsyncMock(side_effect=lambda **kw: acked())
    handle = score_agent.handle

    async def as_it_came(value, raw=None):   # a test channel carries values, not their bytes as Kafka does
        await handle(value, json.dumps(value).encode())

    with patch.object(score_agent.anomalies, "send", sent), patch.object(score_agent.alerts, "send", sent), \
            patch.object(score_agent.gaps, "missed", AsyncMock(return_value=[])), \
            patch.object(score_agent, "handle", as_it_came):
        async with score_agent.score_windows.test_context() as agent:
            for m in msgs + fronts[:-1]:
                await agent.put(m, key=b"k", partition=0)
            assert scoring.get("sensor|tap") is None                 # one partition still has it open
            # a pending summary: the message as it came
            assert scoring[f"pending|tap|{w0}|1"] == json.dumps(msgs[2]).encode()
            await agent.put(fronts[-1], key=b"k", partition=0)
    state = json.loads(scoring["sensor|tap"])
    assert state["windows"] == 1 and state["l0"]["n"] == 1
    assert state["l0"]["mean"][0] == sum(range(1, parts + 1))       # flows of every partition, once
    assert scoring.get("sensor|placebo") is None                     # placebo is never scored
    assert not [k for k in scoring.keys() if k.startswith("pending|")]   # the scored window's rows are gone


async def test_actions_keep_one_small_row_per_suppression_and_the_old_single_row_is_rewritten(faust_app):
    """The single actions row once grew with every ack until its changelog record was too large for Kafka,
    and then every later action crashed the worker for good. Acks are on the topic; each suppression is a
    row of its own."""
    from agents import score as score_agent
    from tables import scoring

    scoring.data["actions"] = json.dumps({"acked": {"x" * 1000: 1}, "suppress": {"traffic|old-tap": 10 ** 13,
                                                                                "traffic|gone": 1}}).encode()
    async with score_agent.apply_actions.test_context() as agent:
        for i in range(10):
            await agent.put({"action": "ack", "id": f"tap|traffic|tap|{i}", "note": "n" * 500}, key=b"k")
        await agent.put({"action": "suppress", "type": "host-bytes", "entity": "10.0.0.7", "for_s": 600}, key=b"k")
        await agent.put({"action": "suppress", "type": "host-bytes", "entity": "10.0.0.7", "for_s": 60}, key=b"k")
    rows = {k: json.loads(v) for k, v in scoring.items() if v}
    assert "actions" not in rows
    # one row per suppression; one that ran out long ago is gone
    assert set(k for k in rows if k.startswith("suppress|")) == {"suppress|traffic|old-tap", "suppress|host-bytes|10.0.0.7"}
    assert all(len(scoring[k]) < 32 for k in rows if k.startswith("suppress|"))
    assert score_agent.Muted().get("traffic|old-tap") == 10 ** 13 and score_agent.Muted().get("traffic|none") == -1
