"""The flows topic's time index: which offsets of a flows partition hold which capture times. Pure code.

A flows message's Kafka record time is its window's capture time, so a search finds where its range begins
with Kafka's offsets for times. Where it ends, Kafka cannot say: record times are not in order along a
partition (one sensor replays 2011 while another is live; late records come after later windows), so a
search that stops early could miss a record of its range. The flows agent therefore writes, for every
:data:`EVERY` flows messages it wrote to a partition, one entry on topic flows-index (same partition
number): the offsets it covers and the lowest and highest record time among them. A search passes over,
unfetched, every entry whose record times all lie outside its range, and reads everything else (the newest
messages, not yet in an entry, included).

An entry is trusted only if its offsets hold exactly the messages it counted: another writer's messages in
between (a worker being replaced) or a message sent twice make ``to - from + 1`` larger than ``messages``,
and then the search reads the whole span. A lost entry (a crash before it was written) leaves a span that is
read, never skipped: the index can make a search slower, never wrong.

>>> idx = Index(every=3)
>>> [idx.add(0, offset, t) for offset, t in ((10, 5_000), (11, 2_000), (12, 9_000))][-1]
{'v': 1, 'partition': 0, 'from': 10, 'to': 12, 'min': 2000, 'max': 9000, 'messages': 3}
>>> entry = {'v': 1, 'from': 10, 'to': 12, 'min': 2000, 'max': 9000, 'messages': 3}
>>> passed_over([entry], 60_000, 1_000, 70_000)     # one-minute windows: 1 s to 70 s overlaps them
[]
>>> passed_over([entry], 60_000, 69_001, None)      # the last window (9 s) ends at 69 s
[(10, 12)]
>>> jump([(10, 12)], 11), jump([(10, 12)], 13)
(13, None)
"""
from __future__ import annotations

from bisect import bisect_right

VERSION = 1
#: Flows messages (up to 500 records each) per entry: about 128,000 records, some 60 MB.
EVERY = 256


class Index:
    """The writer's side: each partition's messages since its last entry."""

    def __init__(self, every: int = EVERY):
        self.every = every
        self.spans: dict[int, list[int]] = {}     # partition -> [from, to, min, max, messages]

    def add(self, partition: int, offset: int, t_ms: int) -> dict | None:
        """A flows message written at ``offset`` with record time ``t_ms``; the entry to write when one is due."""
        s = self.spans.get(partition)
        if s is None or offset <= s[1]:       # the first, or the partition was written over (never so)
            s = self.spans[partition] = [offset, offset, t_ms, t_ms, 0]
        s[1], s[2], s[3], s[4] = offset, min(s[2], t_ms), max(s[3], t_ms), s[4] + 1
        if s[4] < self.every:
            return None
        del self.spans[partition]
        return {"v": VERSION, "partition": partition, "from": s[0], "to": s[1], "min": s[2], "max": s[3],
                "messages": s[4]}

    def forget(self, partitions) -> None:
        """Partitions this worker no longer writes: what it counted of them is dropped (those spans are read)."""
        for p in partitions:
            self.spans.pop(p, None)


def passed_over(entries: list[dict], window_ms: int, since_ms: int | None,
                until_ms: int | None) -> list[tuple[int, int]]:
    """The offset spans ``[from, to]`` (ascending, not overlapping) a search of ``[since, until)`` need not
    fetch: entries whose messages all hold windows ending at or before ``since`` or starting at or after
    ``until``. Entries that do not hold exactly what they counted are never passed over."""
    if window_ms <= 0 or (since_ms is None and until_ms is None):
        return []
    out = []
    for e in entries:
        if e.get("v") != VERSION or e["to"] - e["from"] + 1 != e["messages"]:
            continue
        if (since_ms is not None and e["max"] + window_ms <= since_ms) or \
                (until_ms is not None and e["min"] >= until_ms):
            out.append((e["from"], e["to"]))
    out.sort()
    merged: list[tuple[int, int]] = []
    for a, b in out:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def jump(spans: list[tuple[int, int]], offset: int) -> int | None:
    """Where a search at ``offset`` goes on if ``offset`` lies in one of ``spans`` (:func:`passed_over`): just
    past it. None if it does not."""
    k = bisect_right(spans, (offset, 1 << 62)) - 1
    if k >= 0 and spans[k][0] <= offset <= spans[k][1]:
        return spans[k][1] + 1
    return None
