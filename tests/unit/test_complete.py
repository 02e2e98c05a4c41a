"""Whole windows per sensor (app/flows/complete.py), alone and behind the merger of several partitions."""
from __future__ import annotations

import json
import zlib
from collections import defaultdict

from hypothesis import given, settings as hsettings, strategies as st

from app.flows.complete import Completer
from app.flows.summary import Summary
from app.flows.windows import Merger

W = 60_000


def summary_msg(w, p, flows, sensor="s"):
    s = Summary()
    for i in range(flows):
        s.add("10.0.0.1", f"192.0.2.{i % 200}", 6, 1000 + i, 443, 2, 200, 0x1B, True)
    return {"window": w, "partition": p, "windowLengthMs": W, "sensors": {sensor: s.to_json()}}


def front(f, p, sensor="s"):
    return {"frontier": f, "partition": p, "sensor": sensor}


def done(c):
    return [(s, w, summ.flows) for s, w, summ in c.complete(W)]


def test_a_window_waits_for_every_partition_of_its_sensor_and_a_replay_counts_once():
    c = Completer(partitions=2)
    c.on_message(summary_msg(0, 0, 3))
    c.on_message(summary_msg(0, 0, 3))                             # the same summary again
    c.on_message(front(W + 1, 0))
    assert done(c) == []                                           # partition 1 has not reported
    c.on_message(front(W - 1, 1))
    assert done(c) == []                                           # partition 1 has window 0 open
    c.on_message(summary_msg(0, 1, 2))
    c.on_message(front(W, 1))
    assert done(c) == [("s", 0, 5)]
    c.on_message(summary_msg(0, 1, 2))                             # a replay (a crash): known, not late
    assert c.progress["s"].late_records == 0 and c.pending == {}
    c.on_message(summary_msg(0, 2, 4))                             # one that missed the score: late
    assert c.progress["s"].late_records == 4 and c.pending == {}
    assert done(c) == []                                           # scored once


def test_partitions_that_were_idle_before_do_not_let_a_window_through_early():
    """The bug of the shared clock: partitions idle from an earlier upload counted as done, so a window was
    scored with the first partition's flows alone. Only a frontier past the window lets it through."""
    c = Completer(partitions=3)
    for p in range(3):
        c.on_message(front(10 * W, p))                             # an earlier upload, all flushed
    c.on_message(summary_msg(20 * W, 0, 182))
    c.on_message(front(21 * W, 0))
    assert done(c) == []                                           # 1 and 2 are still at 10 W
    for p in (1, 2):
        c.on_message(summary_msg(20 * W, p, 659))
        c.on_message(front(21 * W, p))
    assert done(c) == [("s", 20 * W, 182 + 2 * 659)]


def test_sensors_complete_on_their_own_clocks():
    c = Completer(partitions=1)
    c.on_message(summary_msg(0, 0, 1, sensor="old"))
    c.on_message(summary_msg(10 ** 12, 0, 2, sensor="new"))
    c.on_message(front(10 ** 12 + W, 0, sensor="new"))
    assert done(c) == [("new", 10 ** 12, 2)]                       # "old" is years behind, and waits
    c.on_message(summary_msg(W, 0, 4, sensor="old"))               # not late: its own clock is at 0
    c.on_message(front(2 * W, 0, sensor="old"))
    assert done(c) == [("old", 0, 1), ("old", W, 4)]
    assert c.progress["old"].late_records == c.progress["new"].late_records == 0


def test_late_notices_and_damaged_windows_are_counted_once_and_never_scored():
    c = Completer(partitions=1)
    notice = {"late": {"records": 3, "packets": 7, "bytes": 700}, "sensor": "s", "window": 0, "partition": 0,
              "source": "s~b", "chunk": 2}
    c.on_message(notice)
    c.on_message(notice)                                           # a replay of the same notice
    c.on_message({**summary_msg(10 ** 13, 0, 5), "ahead": True})
    c.on_message(front(10 ** 13 + W, 0))
    assert done(c) == []
    prog = c.progress["s"]
    assert (prog.late_records, prog.late_packets, prog.late_bytes, prog.ahead_records) == (3, 7, 700, 5)


def test_rows_rebuild_the_completer_and_rows_of_the_older_version_are_rewritten():
    c = Completer(partitions=2)
    c.on_message(summary_msg(0, 0, 3))
    c.on_message(front(W, 0))
    rows = json.loads(json.dumps(c.take()))
    again = Completer.from_rows(2, rows.items())
    again.on_message(front(W, 1))
    assert done(again) == [("s", 0, 3)]
    # the older version: one "completer" row and pending|window|partition rows of several sensors
    older = {"completer": {"frontier": {"0": [0, True]}, "scored_ms": {"a": 5 * W}, "late": 0},
             f"pending|{6 * W}|1": {"window": 6 * W, "partition": 1,
                                    "sensors": {**summary_msg(0, 0, 1, "a")["sensors"], **summary_msg(0, 0, 2, "b")["sensors"]}}}
    c = Completer.from_rows(2, json.loads(json.dumps(older)).items())
    assert c.progress["a"].scored_ms == 5 * W
    rows = c.take()
    assert rows["completer"] is None and rows[f"pending|{6 * W}|1"] is None
    assert set(rows) >= {Completer.pending_key("a", 6 * W, 1), Completer.pending_key("b", 6 * W, 1), "clock|a"}
    for p in (0, 1):
        c.on_message(front(7 * W, p, "b"))
    assert done(c) == [("b", 6 * W, 2)]


# -- the merger of several partitions feeding the completer, as the agents do

def chunk_msgs(sensor, block, chunk, parts, partitions, chunks=1):
    """What the decoder sends for a chunk: one message per partition, every one with the chunk's top."""
    by_p = defaultdict(list)
    for part in parts:
        by_p[zlib.crc32(part[1].encode()) % partitions].append(part)
    top = max(part[5] for part in parts)
    return [(p, {"block": block, "chunk": chunk, "sensor": sensor, "top": top, "n": len(parts), "chunks": chunks,
                 "parts": by_p[p]}) for p in range(partitions)]


def flow(sensor, i, t):
    return [t - t % W, f"{sensor}|10.0.0.{i % 50}|192.0.2.{i % 7}|6|{1000 + i}|80|0|0", 1 + i % 3, 100 + i, t, t, 2]


@hsettings(max_examples=60, deadline=None)
@given(st.data())
def test_every_window_of_every_sensor_is_scored_once_and_equals_its_records(data):
    """Three sensors with clocks years apart, their chunks delivered to three partitions in any interleaving
    (each partition in its own order), ticks, and summaries reaching the completer in any order the
    partitions produce them: every (sensor, window) is scored exactly once, and its summary equals the sums
    of that sensor's on-time records of that window; late records are counted, not lost."""
    partitions = 3
    base = {"a": 1_300_000_000_000, "b": 1_700_000_000_000, "c": 1_760_000_000_000}
    msgs = []   # per chunk: its messages to every partition
    for sensor, t0 in base.items():
        n_chunks = data.draw(st.integers(1, 4))
        t = t0
        for chunk in range(n_chunks):
            parts = []
            for i in range(data.draw(st.integers(1, 6))):
                t += data.draw(st.integers(0, 50_000))
                parts.append(flow(sensor, i + 10 * chunk, t))
            msgs.append(chunk_msgs(sensor, f"{sensor}-blk", chunk, parts, partitions))
    queues = {p: [] for p in range(partitions)}
    for chunk in data.draw(st.permutations(msgs)):
        for p, m in chunk:
            queues[p].append(m)
    merger = Merger(W, 5_000, 5_000)
    completer = Completer(partitions)
    to_score, records, scored = [], [], []
    now = 0
    while any(queues.values()):
        p = data.draw(st.sampled_from([p for p in queues if queues[p]]))
        now += 10
        merger.ensure_index(p, {}.items(), {}, now)
        plan = merger.on_parts(p, queues[p].pop(0), None, now)
        for topic, _, v in plan.emit:
            (records.extend(json.loads(v)["records"]) if topic == "flows" else to_score.append(v))
    for p in range(partitions):
        plan = merger.on_tick(p, None, now + 3_600_000)         # every sensor idle: flushed
        for topic, _, v in plan.emit:
            (records.extend(json.loads(v)["records"]) if topic == "flows" else to_score.append(v))
    for m in to_score:
        completer.on_message(m)
        scored += completer.complete(W)
    keys = [(s, w) for s, w, _ in scored]
    assert len(keys) == len(set(keys))
    on_time = defaultdict(lambda: [0, 0, 0])
    for r in records:
        if not r["flowsight"]["late"]:
            k = on_time[(r["flowsight"]["sensor"], r["flowsight"]["window"])]
            k[0] += 1
            k[1] += r["packetDeltaCount"]
            k[2] += r["octetDeltaCount"]
    assert sorted(keys) == sorted(on_time)
    for s, w, summ in scored:
        assert [summ.flows, summ.packets, summ.bytes] == on_time[(s, w)]
    late = sum(1 for r in records if r["flowsight"]["late"])
    assert sum(prog.late_records for prog in completer.progress.values()) == late


def test_a_batch_of_windows_is_one_row_until_its_last_pending_window_is_scored_and_survives_a_restart():
    c = Completer(partitions=1)
    batch = {"windows": [[w * W, summary_msg(w * W, 0, w + 1)["sensors"]["s"], False] for w in range(5)],
             "windowLengthMs": W, "partition": 0, "sensor": "s"}
    c.on_message(batch)
    rows = c.take()
    key = Completer.batch_key("s", 0, 0)
    assert rows[key] is batch and not [k for k in rows if k.startswith("pending|") and k != key]
    c.on_message(front(3 * W, 0))
    assert done(c) == [("s", 0, 1), ("s", W, 2), ("s", 2 * W, 3)]
    rows = json.loads(json.dumps({**rows, **c.take()}))
    assert rows[key] == batch                                       # two windows of it still pending
    again = Completer.from_rows(1, rows.items())                    # a restart: the rest, once, nothing recounted
    again.on_message(front(5 * W, 0))
    assert done(again) == [("s", 3 * W, 4), ("s", 4 * W, 5)]
    assert again.take()[key] is None and again.progress["s"].late_records == 0
