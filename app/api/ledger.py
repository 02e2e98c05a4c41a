"""The analysts' ledger: acknowledgements, suppressions and their lifting, and sign-outs, folded from topic
``actions`` (one partition, in the order they were made). Every worker keeps one, so any worker answers
what is acknowledged, by whom and when, and which suppressions are active. Pure code.

>>> led = Ledger()
>>> led.apply({"action": "suppress", "type": "traffic", "entity": "tap1", "for_s": 600, "by": "ana",
...            "at_ms": 1_000, "note": "maintenance"})
>>> [(s["entity"], s["until_ms"], s["by"]) for s in led.active(2_000)]
[('tap1', 601000, 'ana')]
>>> led.apply({"action": "lift", "type": "traffic", "entity": "tap1", "by": "bo", "at_ms": 3_000})
>>> led.active(4_000)
[]
"""
from __future__ import annotations

from collections import OrderedDict

from app.records import entity_key

#: Acknowledgements remembered (the oldest are forgotten past this; alerts are few, by design).
KEEP_ACKS = 100_000


class Ledger:
    """What the analysts did, as every worker knows it."""

    def __init__(self) -> None:
        self.acks: OrderedDict[str, dict] = OrderedDict()      #: alert id -> {by, at_ms, note}
        self.suppressions: dict[str, dict] = {}                #: type|entity -> the suppression
        self.signouts: dict[str, int] = {}                      #: API token name -> last sign-out (ms)

    def apply(self, act: dict) -> None:
        """Fold one action in (an ill-formed one changes nothing)."""
        if not isinstance(act, dict):
            return
        kind, at = act.get("action"), act.get("at_ms")
        at = at if isinstance(at, int) else None
        if kind == "ack" and isinstance(act.get("id"), str):
            self.acks[act["id"]] = {"by": act.get("by"), "at_ms": at, "note": act.get("note", "")}
            self.acks.move_to_end(act["id"])
            while len(self.acks) > KEEP_ACKS:
                self.acks.popitem(last=False)
        elif kind == "suppress" and isinstance(act.get("for_s"), int) and at is not None:
            key = entity_key(str(act.get("type")), str(act.get("entity")))
            self.suppressions[key] = {"type": act.get("type"), "entity": act.get("entity"),
                                      "until_ms": at + act["for_s"] * 1000, "by": act.get("by"), "at_ms": at,
                                      "note": act.get("note", "")}
        elif kind == "lift":
            self.suppressions.pop(entity_key(str(act.get("type")), str(act.get("entity"))), None)
        elif kind == "logout" and isinstance(act.get("name"), str) and at is not None:
            self.signouts[act["name"]] = max(self.signouts.get(act["name"], 0), at)

    def active(self, now_ms: int) -> list[dict]:
        """Suppressions not run out at ``now_ms``, the soonest to end first (and the others forgotten)."""
        for key in [k for k, s in self.suppressions.items() if s["until_ms"] <= now_ms]:
            del self.suppressions[key]
        return sorted(self.suppressions.values(), key=lambda s: (s["until_ms"], s["type"], s["entity"]))
