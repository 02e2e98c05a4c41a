"""The analysts' ledger (app/api/ledger.py) and webhook bodies (app/api/webhook.py)."""
from __future__ import annotations

import json

from app.api import webhook
from app.api.ledger import Ledger


def test_acks_suppressions_lifts_and_signouts_fold_in_order():
    led = Ledger()
    led.apply({"action": "ack", "id": "a|traffic|a|1", "by": "ana", "at_ms": 10, "note": "seen"})
    led.apply({"action": "ack", "id": "a|traffic|a|1", "by": "bo", "at_ms": 20, "note": "again"})
    assert led.acks["a|traffic|a|1"] == {"by": "bo", "at_ms": 20, "note": "again"}
    led.apply({"action": "suppress", "type": "traffic", "entity": "a", "for_s": 60, "by": "ana", "at_ms": 0})
    led.apply({"action": "suppress", "type": "host-bytes", "entity": "10.0.0.1", "for_s": 3600, "by": "bo",
               "at_ms": 0, "note": "backup"})
    assert [s["entity"] for s in led.active(1_000)] == ["a", "10.0.0.1"]      # the soonest to end first
    assert [s["entity"] for s in led.active(60_000)] == ["10.0.0.1"]          # run out at its until
    led.apply({"action": "lift", "type": "host-bytes", "entity": "10.0.0.1"})
    assert led.active(61_000) == []
    led.apply({"action": "logout", "name": "ana", "at_ms": 5})
    led.apply({"action": "logout", "name": "ana", "at_ms": 3})                # an older sign-out changes nothing
    assert led.signouts == {"ana": 5}


def test_ill_formed_actions_change_nothing():
    led = Ledger()
    for bad in (None, [], {"action": "suppress", "type": "traffic", "entity": "a"},        # no for_s
                {"action": "suppress", "type": "traffic", "entity": "a", "for_s": 60},     # no time
                {"action": "ack"}, {"action": "logout", "name": 3, "at_ms": 1}, {"action": "drop"}):
        led.apply(bad)
    assert (led.acks, led.suppressions, led.signouts) == ({}, {}, {})


def test_a_webhook_body_is_signed_and_reads_like_a_line_of_chat():
    alert = {"id": "tap1|traffic|tap1|1767600000000", "type": "traffic", "entity": "tap1", "sensor": "tap1",
             "windowStartMs": 1767600000000, "rung": "L2", "score": 12.3,
             "observed": {"failed": {"observed": 1500, "expected": 2}, "bytes": {"observed": 10, "expected": 9}}}
    body = webhook.payload(alert)
    sent = json.loads(body)
    assert sent["id"] == alert["id"] and sent["alert"] == alert
    assert sent["text"] == ("unusual traffic on tap1 at sensor tap1, window 2026-01-05 08:00 UTC: failed 1,500 "
                            "(expected about 2) [L2, score 12.3]")
    sig = webhook.sign(b"k", body)
    assert webhook.verify(b"k", body, sig) and not webhook.verify(b"k", body + b" ", sig)
    assert [webhook.backoff_s(a) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert 503 in webhook.RETRY_STATUSES and 404 not in webhook.RETRY_STATUSES
