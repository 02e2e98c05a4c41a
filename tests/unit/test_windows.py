"""The merge and window-closing logic, driven as the flows agent drives it, with a dict as the table."""
from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings as hsettings, strategies as st

from app.records import END_ACTIVE_TIMEOUT, END_FORCED, record_key
from app.flows.windows import CLOSED, Merger, parse_key
from app.records import BATCH_RECORDS

W = 60_000


class Harness:
    """Plays the agent: emit first, then write rows and marks."""

    def __init__(self, window_ms=W, lateness_ms=5_000, idle_ms=5_000):
        self.merger = Merger(window_ms, lateness_ms, idle_ms, retention_ms=3_600_000)
        self.rows: dict = {}
        self.marks: dict = {}
        self.out: list[dict] = []
        self.stats: list[dict] = []

    def feed(self, msg: dict, now_ms: int = 0, p: int = 0):
        self.merger.ensure_index(p, self.rows.items(), self.marks, now_ms)
        plan = self.merger.on_tick(p, self.rows, now_ms) if "tick" in msg else \
            self.merger.on_parts(p, msg, self.rows, now_ms, raw=json.dumps(msg).encode(), marks=self.marks)
        for topic, _key, value in plan.emit:
            if topic == "flows":
                records = json.loads(value)["records"]
                assert 0 < len(records) <= BATCH_RECORDS
                self.out.extend(records)
            elif "sensors" in value:
                self.stats.append(value)
            elif "windows" in value:   # the summaries of several windows closed at once, one each here
                self.stats += [{"window": w, "partition": value["partition"], "sensors": {value["sensor"]: summ},
                                **({"ahead": True} if ahead else {})} for w, summ, ahead in value["windows"]]
        for k, v in plan.writes.items():
            if v is None:
                self.rows.pop(k, None)
            else:
                self.rows[k] = v
        self.marks.update(plan.marks)

    def restart(self):
        """A new process: the in-memory index is gone, the tables stay."""
        self.merger = Merger(self.merger.window_ms, self.merger.lateness_ms, self.merger.idle_flush_ms,
                             self.merger.retention_ms)

    def totals(self) -> Counter:
        seen, out = set(), Counter()
        for rec in self.out:
            if rec["flowId"] in seen:  # what the documented consumer contract does
                continue
            seen.add(rec["flowId"])
            out[record_key(rec)] += rec["packetDeltaCount"]
        return out


def part(w, key="s|10.0.0.1|10.0.0.2|6|1|2|0|0", packets=1, t=None):
    t = w if t is None else t
    return [w, key, packets, packets * 100, t, t, 2]


def msg(block, chunk, *parts):
    return {"block": block, "chunk": chunk, "sensor": "s", "parts": list(parts)}


def test_window_closes_when_watermark_passes_its_end():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=3, t=10)))
    assert h.out == []
    h.feed(msg("b", 1, part(W, packets=1, t=W + 4_000)))   # watermark W-1000: window 0 still open
    assert h.out == []
    h.feed(msg("b", 2, part(W, packets=1, t=W + 6_000)))   # watermark W+1000: window 0 closes
    assert [(r["packetDeltaCount"], r["flowEndReason"], r["flowsight"]["late"]) for r in h.out] == \
        [(3, END_ACTIVE_TIMEOUT, False)]
    got = h.stats[0]["sensors"]["s"]
    assert (got["flows"], got["packets"], got["bytes"], got["failed"]) == (1, 3, 300, 1)


def test_replayed_part_is_counted_once():
    h = Harness()
    m = msg("b", 0, part(0, packets=2))
    h.feed(m)
    h.feed(m)
    h.feed({"tick": 1}, now_ms=10_000)
    assert [r["packetDeltaCount"] for r in h.out] == [2]


def test_late_part_becomes_a_flagged_delta_and_replay_of_it_is_skipped():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=2)))
    h.feed(msg("b", 1, part(5 * W)))            # closes window 0
    late = msg("c", 0, part(0, packets=7))
    h.feed(late)
    h.feed(late)
    late_recs = [r for r in h.out if r["flowsight"]["late"]]
    assert [r["packetDeltaCount"] for r in late_recs] == [7]
    assert h.totals()[record_key(late_recs[0])] == 9


def test_idle_flush_closes_open_windows_by_wall_clock():
    h = Harness()
    h.feed(msg("b", 0, part(0)), now_ms=1_000)
    h.feed({"tick": 1}, now_ms=3_000)
    assert h.out == []
    h.feed({"tick": 1}, now_ms=6_000)
    assert [r["flowEndReason"] for r in h.out] == [END_FORCED]


def test_restart_rebuilds_index_from_the_table():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=4)))
    h.restart()
    h.feed(msg("b", 0, part(0, packets=4)))     # replay after the crash
    h.feed({"tick": 1}, now_ms=10_000)
    assert [r["packetDeltaCount"] for r in h.out] == [4]


def test_window_zero_keeps_one_record_per_flow_until_idle():
    h = Harness(window_ms=0)
    h.feed(msg("b", 0, part(0, t=10)))
    h.feed(msg("b", 1, part(0, t=10**12)))      # years later: no window to close
    assert h.out == []
    h.feed({"tick": 1}, now_ms=10_000)
    assert [r["packetDeltaCount"] for r in h.out] == [2]


keys = st.sampled_from([f"s|10.0.0.{i}|10.0.1.1|17|{i}|53|0|0" for i in range(4)])
parts_st = st.lists(st.tuples(st.integers(0, 5), keys, st.integers(1, 5)), min_size=1, max_size=6)


@hsettings(max_examples=150, deadline=None)
@given(st.lists(parts_st, min_size=1, max_size=8), st.data())
def test_totals_are_exact_under_duplication_reordering_and_restarts(chunks, data):
    """Every chunk's parts delivered at least once, in any order, with restarts: sums equal the input."""
    messages = [msg("blk", i, *[part(w * W, k, n, t=w * W + 1) for w, k, n in
                                {(w, k): (w, k, n) for w, k, n in c}.values()])
                for i, c in enumerate(chunks)]
    expect = Counter()
    for m in messages:
        for p in m["parts"]:
            expect[tuple(p[1].split("|"))] += p[2]
    schedule = data.draw(st.lists(st.sampled_from(range(len(messages))), max_size=20)) + list(range(len(messages)))
    h = Harness()
    for i in schedule:
        if data.draw(st.booleans()):
            h.restart()
        h.feed(messages[i], now_ms=0)
    h.feed({"tick": 1}, now_ms=60_000)
    got = Counter({(k[0], k[1], k[2], str(k[3]), str(k[4]), str(k[5]), str(k[6]), str(k[7])): v
                   for k, v in h.totals().items()})
    assert got == expect
    assert all(parse_key(k)[0] == CLOSED for k in h.rows)  # every window closed, no slice left behind


def test_replay_after_a_crash_emits_the_same_records():
    """Run a message sequence, crash at every point (state kept up to there), replay the rest from a
    checkpoint: every record emitted twice carries the same flowId and the same counts."""
    seq = [(msg("b", 0, part(0, packets=2)), 1_000), ({"tick": 1}, 2_000),
           (msg("b", 1, part(0, packets=3)), 3_000), ({"tick": 1}, 9_000),
           (msg("c", 0, part(0, packets=5)), 9_500), ({"tick": 1}, 20_000)]
    clean = Harness()
    for m, t in seq:
        clean.feed(m, now_ms=t)
    by_id = {r["flowId"]: r for r in clean.out}
    for crash in range(len(seq)):
        for checkpoint in range(crash + 1):
            h = Harness()
            for m, t in seq[:crash]:
                h.feed(m, now_ms=t)
            h.restart()
            for m, t in seq[checkpoint:]:  # redelivery from the last committed offset
                h.feed(m, now_ms=t)
            for r in h.out:
                assert by_id[r["flowId"]] == r
            assert h.totals() == clean.totals()


def test_a_big_window_goes_out_in_batches_with_every_flow_once():
    h = Harness()
    keys = [f"s|10.0.{i // 250}.{i % 250}|10.9.9.9|6|{1000 + i}|80|0|0" for i in range(BATCH_RECORDS * 2 + 3)]
    h.feed(msg("b", 0, *[part(0, k, packets=2) for k in keys]))
    h.feed({"tick": 1}, now_ms=10_000)
    assert len(h.out) == len(keys) and sum(r["packetDeltaCount"] for r in h.out) == 2 * len(keys)
    assert sorted(record_key(r)[1] for r in h.out) == sorted(k.split("|")[1] for k in keys)


def test_a_part_after_an_idle_flush_of_its_window_is_late():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=2)), now_ms=0)
    h.feed({"tick": 1}, now_ms=6_000)                       # flushed: nothing came for idle_ms
    h.feed(msg("b", 1, part(0, key="s|10.0.0.3|10.0.0.2|6|1|2|0|0", packets=5)), now_ms=7_000)
    assert [(r["packetDeltaCount"], r["flowsight"]["late"]) for r in h.out] == [(2, False), (5, True)]


def test_a_close_cut_short_by_a_crash_leaves_stale_slices_that_are_ignored_then_removed():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=2)), now_ms=0)
    h.feed(msg("b", 1, part(0, packets=3)), now_ms=0)
    slices = dict(h.rows)
    h.feed({"tick": 1}, now_ms=6_000)
    assert len(h.out) == 1
    h.rows.update(slices)                 # the close's tombstones never reached the changelog
    h.restart()
    h.feed(msg("b", 1, part(0, packets=3)), now_ms=7_000)   # a replay: the window is closed and has it
    h.feed({"tick": 1}, now_ms=20_000)
    assert [r["packetDeltaCount"] for r in h.out] == [5]
    assert all(parse_key(k)[0] == CLOSED for k in h.rows)


def test_the_flow_id_does_not_depend_on_the_order_parts_arrived_in():
    ids = []
    for order in ((0, 1, 2), (2, 0, 1), (1, 2, 0)):
        h = Harness()
        for c in order:
            h.feed(msg("b", c, part(0, packets=1)))
        h.feed({"tick": 1}, now_ms=10_000)
        ids.append([(r["flowId"], r["packetDeltaCount"]) for r in h.out])
    assert ids[0] == ids[1] == ids[2] and ids[0][0][1] == 3


def test_two_sensors_that_sent_the_same_bytes_are_both_counted():
    h = Harness()
    for sensor in ("tap-a", "tap-b", "tap-a"):
        h.feed({"block": "same", "chunk": 0, "sensor": sensor,
                "parts": [part(0, key=f"{sensor}|10.0.0.1|10.0.0.2|6|1|2|0|0", packets=4)]})
    h.feed({"tick": 1}, now_ms=10_000)
    assert sorted((record_key(r)[0], r["packetDeltaCount"]) for r in h.out) == [("tap-a", 4), ("tap-b", 4)]


def test_a_message_without_parts_moves_the_watermark_by_its_chunks_capture_time():
    h = Harness()
    h.feed(msg("b", 0, part(0, packets=2, t=10)))
    h.feed({**msg("b", 1), "top": W + 4_000})      # the chunk's flows went elsewhere: window 0 still open
    assert h.out == []
    h.feed({**msg("b", 2), "top": W + 6_000})      # its capture time passed window 0's end + lateness
    assert [(r["packetDeltaCount"], r["flowEndReason"]) for r in h.out] == [(2, END_ACTIVE_TIMEOUT)]


@hsettings(max_examples=200, deadline=None)
@given(st.sampled_from(["tap1", "a\"b", "sensor-\u00fc"]), st.booleans(), st.booleans(),
       st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True),
       st.integers(0, 2**40), st.integers(0, 255), st.integers(0, 2**63 - 1))
def test_record_json_is_the_record(sensor, v6, late, blocks, nbytes, flags, fid):
    """The JSON text written on the hot path decodes to exactly what record() builds."""
    from app.records import SEP, record, record_json
    src, dst = ("2001:db8::1", "fe80::2") if v6 else ("10.0.0.1", "192.0.2.9")
    key = SEP.join([sensor, src, dst, "17", "5353", "53", "4094", "184"])
    counts = [3, nbytes, 1_700_000_000_123, 1_700_000_000_999, flags]
    want = record(W, key, counts, W, end_reason=END_FORCED, late=late, blocks=blocks, fid=fid)
    got = json.loads(record_json(W, key.split(SEP), counts, W, END_FORCED, late, json.dumps(sensor),
                                 json.dumps(sorted(blocks)), fid))
    assert got == want


def test_an_older_file_arriving_beside_a_newer_one_is_not_late():
    """Two files in flight: the newer one's chunks must not close the older one's windows."""
    h = Harness()
    old = [msg("old", i, part(i * W, packets=1, t=i * W + 1)) for i in range(3)]
    new = [msg("new", i, part((10 + i) * W, packets=1, t=(10 + i) * W + 1)) for i in range(3)]
    for a, b in zip(old, new):
        h.feed({**a, "chunks": 3})
        h.restart() if a["chunk"] == 1 else None          # the holds survive a restart (they are in the mark)
        h.feed({**b, "chunks": 3})
    h.feed({"tick": 1}, now_ms=10_000)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert sorted(r["flowsight"]["window"] for r in h.out) == [0, W, 2 * W, 10 * W, 11 * W, 12 * W]


def test_a_block_that_stops_arriving_stops_holding_the_watermark():
    h = Harness()
    h.merger.hold_ms = 30_000
    h.feed({**msg("stuck", 0, part(0, packets=1, t=1)), "chunks": 5}, now_ms=0)
    for i in range(1, 10):    # the sensor's live traffic keeps coming: no idle flush
        h.feed({**msg("live", i, part(i * W, key="s|10.0.0.9|10.0.0.2|6|1|2|0|0", t=i * W + 1)), "chunks": 1},
               now_ms=i * 4_000)
        if i * 4_000 < 30_000:
            assert h.out == []                              # window 0 waits for the rest of "stuck"
    # released after 30 s: every window the live traffic's watermark passed is out, none of it late
    assert sorted(r["flowsight"]["window"] for r in h.out) == list(range(0, 8 * W, W))
    assert not [r for r in h.out if r["flowsight"]["late"]]


def test_another_sensors_block_in_flight_holds_nothing_back():
    h = Harness()
    h.feed({**msg("stuck", 0, part(0, packets=1, t=1)), "chunks": 5, "sensor": "other"}, now_ms=0)
    for i in range(1, 5):
        h.feed(msg("live", i, part(i * W, t=i * W + 1)), now_ms=i * 1_000)
    assert sorted(r["flowsight"]["window"] for r in h.out) == [W, 2 * W]   # "other" keeps window 0 open


def test_batches_stay_under_their_record_count_and_size():
    from app.records import BATCH_BYTES, batches
    recs = [json.dumps({"i": i, "pad": "x" * (i % 7 * 900)}) for i in range(2000)]
    out = batches(recs)
    assert [r for b in out for r in json.loads(b)["records"]] == [json.loads(r) for r in recs]
    assert all(len(json.loads(b)["records"]) <= BATCH_RECORDS and len(b) <= BATCH_BYTES + 16 for b in out)
    assert batches([]) == []
    huge = json.dumps({"pad": "y" * (BATCH_BYTES * 2)})
    assert [len(json.loads(b)["records"]) for b in batches([huge, huge])] == [1, 1]   # alone, never dropped


def test_an_announced_file_holds_the_watermark_before_its_first_chunk_is_decoded():
    """Another worker decodes a newer file first: the announce (sent at acceptance) keeps the older file
    on time; announcing again changes nothing, and a file that never comes stops holding after hold_ms."""
    h = Harness()
    h.feed({"announce": True, "block": "old", "sensor": "s", "chunks": 2, "top": 1, "parts": []}, now_ms=0)
    h.feed({"announce": True, "block": "old", "sensor": "s", "chunks": 2, "top": 1, "parts": []}, now_ms=0)
    for i in range(3):
        h.feed({**msg("new", i, part((10 + i) * W, t=(10 + i) * W + 1)), "chunks": 3}, now_ms=1_000)
    assert h.out == []                                   # everything waits for "old"
    for i in range(2):
        h.feed({**msg("old", i, part(i * W, packets=4, t=i * W + 1)), "chunks": 2}, now_ms=2_000)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert sorted(r["flowsight"]["window"] for r in h.out) == [0, W, 10 * W]   # "new" is at 12W + 1
    h.feed({"announce": True, "block": "never", "sensor": "s", "chunks": 9, "top": 1, "parts": []}, now_ms=3_000)
    h.feed({**msg("new2", 0, part(30 * W, t=30 * W + 1)), "chunks": 1}, now_ms=4_000)
    assert len(h.out) == 3                               # held by "never"
    h.feed({"tick": 1}, now_ms=3_000 + 3_600_000)       # its hold ran out; idle flush closes the rest
    assert sorted(r["flowsight"]["window"] for r in h.out) == [0, W, 10 * W, 11 * W, 12 * W, 30 * W]


def test_a_files_chunks_arriving_out_of_order_hold_the_watermark_at_the_first_gap():
    """A block's chunks are decoded on several partitions: chunk 3 may come before chunk 1. The hold
    stays at the last chunk seen without a gap from chunk 0, so chunk 1's windows are not closed early."""
    h = Harness()
    h.feed({"announce": True, "block": "f", "sensor": "s", "chunks": 5, "top": 1, "parts": []}, now_ms=0)
    chunks = {i: {**msg("f", i, part(i * W, packets=i + 1, t=i * W + 1)), "chunks": 5, "top": i * W + 1}
              for i in range(5)}
    for i in (0, 3, 2):
        h.feed(chunks[i], now_ms=1_000)
    h.restart()                                          # what arrived past the gap is in the mark too
    assert h.out == []                                   # chunk 1 is missing: window W stays open
    h.feed(chunks[4], now_ms=1_000)
    assert h.out == []
    h.feed(chunks[1], now_ms=2_000)                      # the gap closes; every chunk is through
    h.feed({**msg("g", 0, part(20 * W, key="t|10.0.0.9|10.0.0.2|6|1|2|0|0", t=20 * W + 1)), "chunks": 1},
           now_ms=3_000)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert sorted((r["flowsight"]["window"], r["packetDeltaCount"]) for r in h.out) == \
        [(i * W, i + 1) for i in range(5)]


def test_a_hold_past_a_gap_moves_to_the_highest_chunk_seen_once_the_gap_closes():
    h = Harness()
    h.feed({"announce": True, "block": "f", "sensor": "s", "chunks": 9, "top": 1, "parts": []}, now_ms=0)
    for i in (0, 2, 3, 1):
        h.feed({**msg("f", i), "chunks": 9, "top": i * W + 1})
        hold = h.merger.clocks[0]["s"].holds["s~f"].at_ms
        assert hold == {0: 1, 2: 1, 3: 1, 1: 3 * W + 1}[i]


# -- every sensor on its own clock

def smsg(sensor, block, chunk, *parts, **extra):
    return {"block": block, "chunk": chunk, "sensor": sensor, "parts": list(parts), **extra}


def skey(sensor, i=1):
    return f"{sensor}|10.0.0.{i}|10.0.0.2|6|1|2|0|0"


def test_sensors_whose_clocks_lie_years_apart_never_make_each_other_late():
    h = Harness()
    now, old = 1_765_000_000_000, 1_300_000_000_020    # today, and 2011
    h.feed(smsg("live", "l", 0, part(now - now % W, key=skey("live"), t=now)), now_ms=now)
    for i in range(3):                                 # the 2011 capture comes after today's data
        h.feed(smsg("replay", "r", i, part(old - old % W + i * W, key=skey("replay"), t=old + i * W)), now_ms=now)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert sorted(r["flowsight"]["window"] for r in h.out) == [old - old % W, old - old % W + W]
    assert {s["sensors"].popitem()[0] for s in h.stats} == {"replay"}
    assert h.merger.watermark(0, "live") == now - 5_000 and h.merger.watermark(0, "replay") == old + 2 * W - 5_000


def test_a_lone_stamp_far_ahead_moves_no_clock_and_its_window_is_closed_unscored():
    h = Harness()
    t = 1_765_000_000_000
    h.feed(smsg("s", "a", 0, part(t - t % W, t=t)), now_ms=0)
    far = t + 20 * 365 * 86_400_000
    h.feed(smsg("s", "b", 0, part(far - far % W, key=skey("s", 9), t=far), n=1), now_ms=1_000)
    assert h.merger.sensors()["s"]["ahead_ms"] == far and h.merger.sensors()["s"]["held_jumps"] == 1
    h.feed(smsg("s", "c", 0, part(t - t % W, key=skey("s", 3), t=t + 2_000)), now_ms=2_000)
    assert not h.out                                   # the clock is still at t: nothing closed, nothing late
    h.feed(smsg("s", "c", 1, part(t - t % W + W, key=skey("s", 3), t=t - t % W + W + 6_000)), now_ms=3_000)
    assert {r["flowsight"]["window"] for r in h.out} == {t - t % W}
    h.feed({"tick": 1}, now_ms=3_000 + h.merger.hold_ms)   # the far window does not wait for ever...
    ahead = [s for s in h.stats if s.get("ahead")]
    assert [s["window"] for s in ahead] == [far - far % W]  # ...and is marked not to be scored
    assert not [r for r in h.out if r["flowsight"]["late"]]


def test_two_chunks_far_ahead_confirm_a_jump_and_so_does_a_large_chunk():
    h = Harness()
    t, later = 1_300_000_000_000, 1_765_000_000_000
    h.feed(smsg("s", "a", 0, part(t - t % W, t=t)), now_ms=0)
    h.feed(smsg("s", "b", 0, part(later - later % W, t=later), n=1), now_ms=1)
    h.feed(smsg("s", "b", 0, part(later - later % W, t=later), n=1), now_ms=2)      # the same chunk again
    assert h.merger.watermark(0, "s") == t - 5_000
    h.feed(smsg("s", "b", 1, part(later - later % W, t=later + 10), n=1), now_ms=3)  # a second one: real
    assert h.merger.watermark(0, "s") == later + 10 - 5_000
    h2 = Harness()
    h2.feed(smsg("s", "a", 0, part(t - t % W, t=t)), now_ms=0)
    h2.feed(smsg("s", "b", 0, part(later - later % W, t=later), n=5000), now_ms=1)
    assert h2.merger.watermark(0, "s") == later - 5_000


def test_a_live_sensor_pausing_between_uploads_keeps_its_window_open_for_the_next_upload():
    """The placebo (and a capture server uploading ring files) stamps its packets with the wall clock and
    uploads every 30 s: the 5 s idle flush must not close the minute the next upload continues."""
    h = Harness()
    start = 1_765_000_000_000
    for i in range(12):
        now = start + i * 30_000
        h.feed(smsg("placebo", f"u{i}", 0, part(now - 2_000 - (now - 2_000) % W, t=now - 2_000)), now_ms=now)
        for tick in range(1_000, 30_000, 1_000):
            h.feed({"tick": 1}, now_ms=now + tick)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert len({r["flowsight"]["window"] for r in h.out}) >= 5
    h.feed({"tick": 1}, now_ms=start + 12 * 30_000 + 60_000)   # it stopped: flushed after 1.5 pauses
    assert sum(r["packetDeltaCount"] for r in h.out) == 12


def test_a_thousand_sensors_each_cost_one_row_and_idle_ones_leave_memory():
    h = Harness()
    for i in range(1000):
        s = f"tap{i}"
        h.feed(smsg(s, "b", 0, part(i * W, key=skey(s), t=i * W + 1)), now_ms=0)
    assert len(h.merger.clocks[0]) == 1000 and len(h.marks) == 1000
    h.feed({"tick": 1}, now_ms=10_000)                     # all idle: flushed
    assert len(h.out) == 1000 and not h.merger.open[0]
    h.feed({"tick": 1}, now_ms=10_000 + h.merger.retention_ms)
    assert len(h.merger.clocks[0]) == 0                     # the rows keep them
    h.feed(smsg("tap7", "c", 0, part(7 * W, key=skey("tap7", 2), t=7 * W + 5)), now_ms=20_000 + h.merger.retention_ms)
    assert h.out[-1]["flowsight"]["late"]                   # its clock came back from its row: window 7 W closed
    h.feed(smsg("tap8", "c", 0, part(9 * W, key=skey("tap8", 2), t=9 * W + 5)), now_ms=20_000 + h.merger.retention_ms)
    assert h.merger.watermark(0, "tap8") == 9 * W                # flushed to the end of its last window
    h.feed({"tick": 1}, now_ms=20_000 + h.merger.retention_ms + h.merger.live_idle_ms)
    assert (h.out[-1]["flowsight"]["sensor"], h.out[-1]["flowsight"]["late"]) == ("tap8", False)


def test_closed_rows_of_the_older_version_are_read_per_sensor_and_rewritten():
    h = Harness()
    h.rows["c|0|0"] = json.dumps({"closed_ms": 0, "a": {"s~b": [[0, 0]], "t~b": [[0, 0]]}}).encode()
    h.feed(smsg("s", "b", 0, part(0, packets=5)), now_ms=1)            # applied before: skipped
    h.feed(smsg("t", "b", 1, part(0, key=skey("t"), packets=2)), now_ms=1)   # not applied: late
    assert [(r["flowsight"]["sensor"], r["packetDeltaCount"], r["flowsight"]["late"]) for r in h.out] == \
        [("t", 2, True)]
    assert "c|0|0" not in h.rows and {"c|0|0|s", "c|0|0|t"} <= set(h.rows)


def test_an_announced_file_of_one_chunk_holds_its_sensors_clock_until_it_is_decoded():
    """A shipper's files one after another, each one chunk, decoded on different workers: the second file's
    chunk may reach a partition before the first's. The first was announced when it was accepted."""
    h = Harness()
    h.feed({"announce": True, "block": "f1", "sensor": "s", "chunks": 1, "top": 1, "parts": []}, now_ms=0)
    h.feed({"announce": True, "block": "f2", "sensor": "s", "chunks": 1, "top": 15 * W, "parts": []}, now_ms=1)
    h.feed({**msg("f2", 0, part(15 * W, t=15 * W + 1), part(29 * W, t=29 * W + 1)), "chunks": 1}, now_ms=2)
    assert h.out == []                                   # f1 holds the clock at its first capture time
    h.feed({**msg("f1", 0, *[part(i * W, key=skey("s", i), t=i * W + 1) for i in range(15)]), "chunks": 1},
           now_ms=3)
    assert not [r for r in h.out if r["flowsight"]["late"]] and len(h.out) == 16   # windows 0..15 closed
    assert not h.merger.clocks[0]["s"].holds


def test_open_flows_past_the_workers_bound_close_the_biggest_windows_early_and_nothing_is_lost():
    """A capture of a million distinct flows once grew a worker by 239 MB; the open flows are bounded."""
    h = Harness()
    h.merger.max_open_flows = 100
    keys = [skey("s", i) for i in range(150)]
    h.feed(msg("b", 0, *[part(0, k, packets=1) for k in keys]), now_ms=0)
    assert h.merger.open_flows[0] == 0 and h.merger.spilled == 1      # closed at once: 150 > 100
    assert [r["flowEndReason"] for r in h.out] == [END_FORCED] * 150
    h.feed(msg("b", 1, part(0, keys[0], packets=2), part(W, keys[1], packets=3)), now_ms=1)
    h.feed({"tick": 1}, now_ms=100_000)
    assert h.totals()[("s", "10.0.0.0", "10.0.0.2", 6, 1, 2, 0, 0)] == 3   # the later part: a late record
    assert sum(h.totals().values()) == 150 + 2 + 3


def test_windows_closed_at_once_go_to_the_scorer_in_few_messages_under_their_size():
    from app.flows.windows import SUMMARY_BYTES
    h = Harness()
    keys = [skey("s", i) for i in range(60)]
    h.merger.ensure_index(0, {}.items(), {}, 0)
    plan = h.merger.on_parts(0, msg("b", 0, *[part(w * W, k, t=w * W + 1) for w in range(400)
                                             for k in keys[:w % 60 + 1]]), None, 0)
    batches_ = [v for topic, _, v in plan.emit if topic == "window-summaries" and "windows" in v]
    assert 1 < len(batches_) < 50 and all(len(json.dumps(b)) < SUMMARY_BYTES + 64 * 1024 for b in batches_)
    assert sorted(w for b in batches_ for w, _, _ in b["windows"]) == [w * W for w in range(398)]   # 398, 399 open
    frontier = [i for i, (topic, _, v) in enumerate(plan.emit) if topic == "window-summaries" and "frontier" in v]
    assert frontier and frontier[0] > max(i for i, (t, _, v) in enumerate(plan.emit) if isinstance(v, dict) and "windows" in v)


def test_a_file_older_than_its_sensors_clock_holds_the_clock_where_it_is_and_comes_out_late():
    """A 2011 capture announced after 2020's was decoded: late where it is older, never a reason to move the
    sensor's clock back nine years (and with it every partition's frontier)."""
    h = Harness()
    new, old = 1_600_000_000_000, 1_300_000_000_000
    h.feed({**msg("n", 0, part(new - new % W, t=new)), "chunks": 1}, now_ms=0)
    wm = h.merger.watermark(0, "s")
    h.feed({"announce": True, "block": "o", "sensor": "s", "chunks": 2, "top": old, "parts": []}, now_ms=1)
    assert h.merger.watermark(0, "s") == wm
    h.feed({**msg("o", 0, part(old - old % W, key=skey("s", 5), t=old)), "chunks": 2}, now_ms=2)
    assert [r["flowsight"]["late"] for r in h.out if r["flowsight"]["window"] < new - W] == [True]


def test_a_sensor_with_a_block_on_its_way_is_not_flushed_as_idle_until_the_hold_runs_out():
    """After a crash the worker that decodes a sensor's next file can be half a minute away (a rebalance):
    the file was announced, so the sensor's capture has not ended, and its last window must wait for it."""
    h = Harness()
    h.feed({**msg("f0", 0, part(0, packets=2, t=50_000)), "chunks": 1}, now_ms=0)
    h.feed({"announce": True, "block": "f1", "sensor": "s", "chunks": 1, "top": 55_000, "parts": []}, now_ms=1_000)
    h.feed({"tick": 1}, now_ms=30_000)                      # idle for 29 s, but f1 is on its way
    assert h.out == []
    h.feed({**msg("f1", 0, part(0, key=skey("s", 4), packets=3, t=58_000)), "chunks": 1}, now_ms=31_000)
    h.feed({"tick": 1}, now_ms=31_000 + h.merger.live_idle_ms)
    assert sorted((r["packetDeltaCount"], r["flowsight"]["late"]) for r in h.out) == [(2, False), (3, False)]
    h2 = Harness()
    h2.merger.hold_ms = 20_000
    h2.feed({"announce": True, "block": "gone", "sensor": "s", "chunks": 1, "top": 1, "parts": []}, now_ms=0)
    h2.feed({**msg("f0", 0, part(0, packets=2, t=50_000)), "chunks": 1}, now_ms=0)
    h2.feed({"tick": 1}, now_ms=25_000)                     # the hold ran out: flushed after all
    assert [r["packetDeltaCount"] for r in h2.out] == [2]


def test_an_idle_flush_reports_a_frontier_past_every_window_it_closed():
    """A window the flush closes past the sensor's clock (its chunk said a lower top) must still reach the
    scorer as complete: the frontier covers it, or it waits for ever."""
    h = Harness()
    h.feed({**msg("b", 0, part(0, t=1), part(10 * W, key=skey("s", 2), t=10 * W + 1)), "top": 1}, now_ms=0)
    plan = h.merger.on_tick(0, h.rows, 100_000)
    fronts = [v["frontier"] for topic, _, v in plan.emit if topic == "window-summaries" and "frontier" in v]
    closed = [w for topic, _, v in plan.emit if topic == "window-summaries" and "windows" in v
              for w, _, _ in v["windows"]]
    assert sorted(closed) == [0, 10 * W] and fronts and fronts[-1] >= 11 * W


def test_a_closed_window_sends_the_detectors_records_to_their_actors_partitions():
    from app.detect.entities import OBS_FIELDS, actor_partition
    m = Merger(W, 5_000, 5_000, entity_partitions=4)
    probe = [0, "s|10.0.0.9|10.0.1.5|6|51000|445|0|0", 1, 60, 10, 10, 0x02]       # an attempt: sent
    answer = [0, "s|10.0.1.5|10.0.0.9|6|445|51000|0|0", 1, 60, 11, 11, 0x14]      # its answer (RST): not
    m.on_parts(0, msg("b", 0, probe, answer), {}, 0)
    plan = m.on_parts(0, msg("b", 1, part(W, t=W + 6_000)), {}, 0)
    sent = [(plan.partitions[i], v) for i, (topic, _, v) in enumerate(plan.emit) if topic == "entity-flows"]
    assert [p for p, _ in sent] == [actor_partition("s", "10.0.0.9", 4)]
    row = dict(zip(OBS_FIELDS, sent[0][1]["actors"]["10.0.0.9"][0]))
    assert (row["dst"], row["dport"], row["flags"], row["dst_inside"]) == ("10.0.1.5", 445, 0x02, True)
    assert list(sent[0][1]["actors"]) == ["10.0.0.9"] and sent[0][1]["window"] == 0
    off = Merger(W, 5_000, 5_000)
    off.on_parts(0, msg("b", 0, probe), {}, 0)
    assert all(t != "entity-flows" for t, _, _ in off.on_parts(0, msg("b", 1, part(W, t=W + 6_000)), {}, 0).emit)


def test_an_upload_still_arriving_holds_its_sensors_clock_until_its_release():
    """A shipper sends ten files at once; the one whose body ends first is decoded first. The others were
    announced (web/ingest.py: Arriving) as soon as their first packets came in, so their older packets are
    on time; a release ends the hold; announcing again keeps a long upload's hold from lapsing."""
    def run(early: bool) -> Harness:
        h = Harness()
        h.merger.hold_ms = 60_000
        if early:
            h.feed({"announce": True, "block": "receiving/1", "sensor": "s", "chunks": 1, "top": 1, "parts": []},
                   now_ms=0)
        h.feed({"announce": True, "block": "new", "sensor": "s", "chunks": 2, "top": 10 * W, "parts": []},
               now_ms=1_000)
        for i in range(2):
            h.feed({**msg("new", i, part((10 + i) * W, t=(10 + i) * W + 1)), "chunks": 2}, now_ms=2_000)
        if early:
            assert h.out == []
            h.feed({"announce": True, "block": "receiving/1", "sensor": "s", "chunks": 1, "top": 1, "parts": []},
                   now_ms=50_000)                            # still arriving
            h.feed({"tick": 1}, now_ms=100_000)             # 100 s after it began, 50 s after it was last heard of
            assert h.out == []
        h.feed({"announce": True, "block": "old", "sensor": "s", "chunks": 1, "top": 1, "parts": []}, now_ms=100_500)
        if early:
            h.feed({"announce": True, "block": "receiving/1", "sensor": "s", "release": True, "parts": []},
                   now_ms=100_600)
            assert h.out == []                               # the accepted block's own announce holds on
        h.feed({**msg("old", 0, part(0, key=skey("s", 3), packets=4, t=1), part(W, key=skey("s", 4), t=W + 1)),
                "chunks": 1}, now_ms=101_000)
        return h

    h = run(early=True)
    assert not [r for r in h.out if r["flowsight"]["late"]]
    assert sorted(r["flowsight"]["window"] for r in h.out) == [0, W]   # "new" waits for its lateness
    assert not h.merger.clocks[0]["s"].holds
    before = run(early=False)                                # what the shipper's older file went through
    assert sorted(r["flowsight"]["window"] for r in before.out if r["flowsight"]["late"]) == [0, W]
    h2 = Harness()                                           # a release that never comes: the hold lapses
    h2.merger.hold_ms = 60_000
    h2.feed({"announce": True, "block": "receiving/2", "sensor": "s", "chunks": 1, "top": 1, "parts": []}, now_ms=0)
    h2.feed({**msg("b", 0, part(10 * W, t=10 * W + 1), part(11 * W, key=skey("s", 2), t=11 * W + 1)),
             "chunks": 1}, now_ms=1_000)
    h2.feed({"tick": 1}, now_ms=30_000)                    # idle for 29 s, but an upload is arriving
    assert h2.out == []
    h2.feed({"tick": 1}, now_ms=61_000)                    # not heard of for a minute: idle flush
    assert sorted(r["flowsight"]["window"] for r in h2.out) == [10 * W, 11 * W]
