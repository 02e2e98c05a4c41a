"""The flows topic's time index (app/flows/index.py): what a search may leave unfetched, and never more."""
from __future__ import annotations

import random

from app.flows.index import Index, jump, passed_over

W = 60_000


def test_an_entry_covers_the_messages_it_counted_and_their_record_times():
    idx = Index(every=3)
    assert idx.add(2, 100, 5 * W) is None and idx.add(2, 101, 1 * W) is None
    assert idx.add(1, 7, 9 * W) is None                        # another partition: its own span
    e = idx.add(2, 102, 3 * W)
    assert e == {"v": 1, "partition": 2, "from": 100, "to": 102, "min": W, "max": 5 * W, "messages": 3}
    assert idx.add(2, 103, 4 * W) is None                      # the next span begins
    idx.forget([2])
    assert idx.add(2, 200, 4 * W) is None and idx.spans[2][:2] == [200, 200]


def test_a_search_passes_over_only_entries_wholly_outside_its_range():
    def entry(a, b, lo, hi, n=None):
        return {"v": 1, "from": a, "to": b, "min": lo * W, "max": hi * W, "messages": b - a + 1 if n is None else n}
    entries = [entry(0, 9, 0, 5), entry(10, 19, 6, 9), entry(20, 29, 2, 12), entry(30, 39, 20, 30),
               entry(40, 49, 31, 40, n=9), entry(50, 59, 41, 50)]
    # windows 10 to 14: [10 W, 15 W)
    assert passed_over(entries, W, 10 * W, 15 * W) == [(0, 19), (30, 39), (50, 59)]
    # the entry of 40-49 counted 9 messages in 10 offsets: another writer's message is in there: read it
    assert passed_over(entries, W, None, 15 * W) == [(30, 39), (50, 59)]
    assert passed_over(entries, W, 41 * W, None) == [(0, 39)]
    # a window that ends at since is outside it; one that ends after it is not
    assert passed_over([entry(0, 9, 0, 5)], W, 6 * W, None) == [(0, 9)]
    assert passed_over([entry(0, 9, 0, 5)], W, 6 * W - 1, None) == []
    assert passed_over(entries, W, None, None) == [] and passed_over(entries, 0, W, 2 * W) == []
    assert passed_over([{**entry(0, 9, 0, 5), "v": 2}], W, 10 * W, None) == []     # a version it does not know


def test_no_record_of_the_range_is_in_a_span_passed_over():
    """Random record times along a partition (replays, late records); every message whose window overlaps the
    range lies outside every span passed over, and jump() leaves each offset of a span for just past it."""
    rng = random.Random(3)
    for _ in range(200):
        times = [rng.choice((rng.randint(0, 50), rng.randint(0, 1000))) * W for _ in range(rng.randint(1, 300))]
        idx = Index(every=rng.randint(1, 20))
        entries = [e for o, t in enumerate(times) if (e := idx.add(0, o, t)) is not None]
        since = rng.choice((None, rng.randint(0, 1000) * W + rng.randint(0, W)))
        until = rng.choice((None, rng.randint(0, 1000) * W))
        spans = passed_over(entries, W, since, until)
        for o, t in enumerate(times):
            inside = (since is None or t + W > since) and (until is None or t < until)
            j = jump(spans, o)
            if inside:
                assert j is None, (o, t, since, until, spans)
            elif j is not None:
                assert j > o and jump(spans, j) is None
