"""The placebo's round trip, matched per upload: each synthetic upload must come back at egress, whole.

Comparing cumulative counts cannot see a lost upload: the packets of fresh
uploads that already came back make up for it. So every upload is known by its
block id, and every record that comes back is credited to the block ids it names
(a flow that spans two uploads names both). An upload is *due* once its windows
must have closed; the round trip passes when every due upload was named by a
record and the packets credited to due uploads equal the packets they carried (a
record that also names an upload not yet due waits for it). Repeated records
(same flowId, after a worker's crash) count once.

>>> rt = RoundTrip()
>>> rt.sent(0.0, "p-1", 60); rt.sent(0.0, "p-2", 60)
>>> rt.seen({"flowId": 1, "packetDeltaCount": 60, "flowsight": {"blockIds": ["p-1"]}})
>>> rt.status(100.0, grace_s=50)["passing"], rt.status(100.0, grace_s=50)["uploads_missing"]
(False, ['p-2'])
>>> rt.seen({"flowId": 2, "packetDeltaCount": 60, "flowsight": {"blockIds": ["p-2"]}})
>>> rt.status(100.0, grace_s=50)["passing"]
True
"""
from __future__ import annotations

from collections import OrderedDict

#: Uploads remembered (about 8 hours of them at one per 30 s), and flowIds remembered to drop repeats.
KEEP_UPLOADS = 1000
KEEP_IDS = 200_000


class RoundTrip:
    """Uploads sent, and what came back of each."""

    def __init__(self) -> None:
        self.uploads: OrderedDict[str, tuple[float, int]] = OrderedDict()   #: block id -> (sent at, packets)
        self.credit: dict[frozenset, int] = {}     #: block ids a record names -> packets credited to them
        self.ids: OrderedDict[int, None] = OrderedDict()
        self.received = 0                          #: packets of every placebo record seen, repeats dropped

    def sent(self, at: float, block: str, packets: int) -> None:
        self.uploads[block] = (at, packets)
        while len(self.uploads) > KEEP_UPLOADS:
            old, _ = self.uploads.popitem(last=False)
            self.credit = {g: n for g, n in self.credit.items() if old not in g}

    def seen(self, rec: dict) -> None:
        fid = rec["flowId"]
        if fid in self.ids:
            return
        self.ids[fid] = None
        if len(self.ids) > KEEP_IDS:
            self.ids.popitem(last=False)
        n = rec["packetDeltaCount"]
        self.received += n
        group = frozenset(rec["flowsight"].get("blockIds") or ())
        if group and group <= self.uploads.keys():     # records of uploads made before this worker led: ignored
            self.credit[group] = self.credit.get(group, 0) + n

    def status(self, now: float, grace_s: float) -> dict:
        due = {b for b, (at, _) in self.uploads.items() if now - at >= grace_s}
        named = set().union(*self.credit) if self.credit else set()
        missing = sorted(due - named)
        # a record that also names an upload not due yet cannot be weighed now: leave out every due upload it
        # names (and, in turn, those that share a record with them) until that upload is due too
        settled = set(due)
        changed = True
        while changed:
            changed = False
            for g in self.credit:
                if g & settled and not g <= settled:
                    settled -= g
                    changed = True
        packets_due = sum(self.uploads[b][1] for b in settled)
        packets_back = sum(n for g, n in self.credit.items() if g <= settled)
        return {"uploads": len(self.uploads), "uploads_due": len(due), "uploads_missing": missing[:10],
                "packets_sent": sum(n for _, n in self.uploads.values()), "packets_due": packets_due,
                "packets_seen": self.received, "uploads_settled": len(settled),
                "packets_back_of_settled": packets_back,
                # nothing due, or nothing that can be weighed yet: no evidence either way (not a green light)
                "passing": False if missing else (packets_back == packets_due) if settled else None}
