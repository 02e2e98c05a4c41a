"""The placebo round trip, matched per upload (app/runtime/roundtrip.py)."""
from __future__ import annotations

from app.runtime.roundtrip import RoundTrip


def rec(fid, packets, *blocks):
    return {"flowId": fid, "packetDeltaCount": packets, "flowsight": {"blockIds": list(blocks)}}


def test_a_lost_upload_shows_even_when_later_uploads_make_up_its_packets():
    rt = RoundTrip()
    for i in range(5):
        rt.sent(i * 30.0, f"p-{i}", 60)
    for i in (0, 1, 3, 4):                       # p-2 never comes back
        rt.seen(rec(i, 60, f"p-{i}"))
    st = rt.status(200.0, grace_s=60)            # p-0..p-4 due: 300 packets sent, 240 back
    assert st["passing"] is False and st["uploads_missing"] == ["p-2"]
    # with a cumulative count, an extra 60 packets of a newer upload would have hidden the loss
    rt.sent(190.0, "p-5", 60)
    rt.seen(rec(5, 60, "p-5"))
    assert rt.received >= st["packets_due"] and rt.status(200.0, grace_s=60)["passing"] is False


def test_a_repeated_record_counts_once_and_a_short_upload_fails():
    rt = RoundTrip()
    rt.sent(0.0, "a", 60)
    rt.seen(rec(1, 50, "a"))
    rt.seen(rec(1, 50, "a"))                     # the same flowId again, after a crash
    st = rt.status(100.0, grace_s=60)
    assert st["passing"] is False and st["uploads_missing"] == [] and st["packets_back_of_settled"] == 50
    rt.seen(rec(2, 10, "a"))
    assert rt.status(100.0, grace_s=60)["passing"] is True


def test_a_flow_spanning_two_uploads_waits_for_the_second_to_be_due():
    rt = RoundTrip()
    rt.sent(0.0, "a", 60)
    rt.sent(50.0, "b", 60)
    rt.seen(rec(1, 40, "a"))
    rt.seen(rec(2, 30, "a", "b"))                # one ICMP flow over both uploads, one record
    rt.seen(rec(3, 50, "b"))
    early = rt.status(70.0, grace_s=60)          # a is due, b is not: a cannot be weighed alone
    assert early["passing"] is None
    assert early["uploads_settled"] == 0 and early["uploads_missing"] == []
    assert rt.status(120.0, grace_s=60)["passing"] is True          # both due: 120 sent, 120 back


def test_nothing_due_is_no_evidence():
    rt = RoundTrip()
    rt.sent(0.0, "a", 60)
    assert rt.status(10.0, grace_s=60)["passing"] is None
