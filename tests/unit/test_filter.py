"""Flow filters in nfdump's syntax (app/query/filter.py): every operator, precedence, errors with their
position, and the same answers as nfdump itself on real captures exported to nfcapd."""
from __future__ import annotations

import json
import time
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from app.cli import pcap2flows
from app.export import netflow
from app.query.filter import FilterError, compile_filter, prefilter
from tests import reference
from tests.nfdump import collected, key


def rec(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=40000, dport=22, packets=10, nbytes=1000, flags=0x10,
        first=1_000, last=2_000, vlan=0, tos=0, sensor="tap1", late=False):
    fam = "IPv6" if ":" in src else "IPv4"
    return {f"source{fam}Address": src, f"destination{fam}Address": dst, "protocolIdentifier": proto,
            "sourceTransportPort": sport, "destinationTransportPort": dport, "packetDeltaCount": packets,
            "octetDeltaCount": nbytes, "tcpControlBits": flags, "flowStartMilliseconds": first,
            "flowEndMilliseconds": last, "vlanId": vlan, "ipClassOfService": tos,
            "flowsight": {"sensor": sensor, "late": late}}


R = rec()


@pytest.mark.parametrize("text, want", [
    ("", True),
    ("host 10.0.0.1", True), ("ip 10.0.0.2", True), ("host 10.0.0.3", False),
    ("src host 10.0.0.1", True), ("src host 10.0.0.2", False), ("dst ip 10.0.0.2", True),
    ("host in [ 10.0.0.9, 10.0.0.0/30 ]", True), ("src ip in [10.0.0.2 10.0.0.3]", False),
    ("net 10.0.0.0/8", True), ("net 10.0.0.0 255.255.255.0", True), ("net 10.1", False), ("net 10.0", True),
    ("dst net 192.168.0.0/16", False),
    ("port 22", True), ("src port 22", False), ("dst port 22", True), ("port > 30000", True),
    ("dst port < 22", False), ("dst port >= 22", True), ("dst port le 21", False), ("port eq 40000", True),
    ("port in [ 80 443 22 ]", True), ("dst port in [80, 443]", False),
    ("proto tcp", True), ("proto 6", True), ("proto udp", False), ("tcp", True), ("icmp", False),
    ("inet", True), ("ipv4", True), ("inet6", False), ("ipv6", False),
    ("vlan 0", True), ("vlan 100", False), ("tos 0", True), ("tos > 0", False),
    ("flags S", False), ("flags A", True), ("flags AP", False), ("flags X", False), ("not flags S", True),
    ("packets > 9", True), ("packets > 10", False), ("packets >= 10", True), ("bytes 1k", True),
    ("bytes > 1k", False), ("bytes < 1m", True),
    ("duration > 999", True), ("duration > 1000", False), ("bpp 100", True), ("pps 10", True),
    ("bps > 8001", False),
    ("sensor tap1", True), ("ident tap2", False), ("late", False), ("not late", True),
    # precedence: and binds tighter than or; not tighter than and
    ("port 80 or port 22 and proto tcp", True), ("port 80 or port 22 and proto udp", False),
    ("(port 80 or port 22) and proto udp", False), ("not port 80 and port 22", True),
    ("not (port 22 and proto tcp)", False), ("! port 80 && port 22 || host 1.1.1.1", True),
    ("PROTO TCP AND DST PORT 22", True), ("proto tcp # a comment\n and dst port 22", True),
])
def test_each_primitive_and_operator(text, want):
    assert compile_filter(text)(R) is want


def test_ipv6_addresses_compare_as_addresses_and_icmp_type_code():
    r6 = rec(src="2001:db8::1", dst="2001:db8:0:0::2", proto=58, sport=0, dport=128 * 256)
    assert compile_filter("host 2001:0db8::0001")(r6)
    assert compile_filter("dst host 2001:db8::2 and inet6 and icmp6")(r6)
    assert compile_filter("net 2001:db8::/32")(r6) and not compile_filter("net 10.0.0.0/8")(r6)
    assert compile_filter("icmp-type 128 and icmp-code 0")(r6)
    assert not compile_filter("icmp-type 129")(r6)
    assert not compile_filter("host 0.0.0.1")(rec(src="::1", dst="::2"))     # families never compare equal


@pytest.mark.parametrize("text, position, words", [
    ("port 22 and", 11, "end of filter"),
    ("port 22 and and", 12, "found 'and'"),
    ("prot tcp", 0, "found 'prot'"),
    ("port twenty", 5, "expected a number"),
    ("host 10.0.0.300", 5, "not an address"),
    ("(port 22", 8, "expected ')'"),
    ("port 22)", 7, "found ')'"),
    ("flags SQ", 6, "unknown TCP flag 'Q'"),
    ("src proto tcp", 4, "after 'src'"),
    ("port in [ 80", 12, "expected ']'"),
    ("host 1.1.1.1 port 22", 13, "found 'port'"),
])
def test_errors_name_what_was_expected_and_where(text, position, words):
    with pytest.raises(FilterError) as err:
        compile_filter(text)
    assert err.value.position == position, str(err.value)
    assert words in str(err.value) and f"position {position}" in str(err.value)


FILES = ["real/zeek-wikipedia.pcap", "real/ndpi-iphone.pcap", "real/chrissanders-http_espn.pcapng",
         "real/ndpi-whatsapp.pcap", "real/zeek-http-methods.pcap"]
SAME_AS_NFDUMP = [
    "proto tcp", "proto udp and dst port 53", "src net 192.168.0.0/16", "net 10.0.0.0/8 or net 172.16.0.0/12",
    "port in [ 80 443 ]", "packets > 10", "bytes >= 1500", "bytes > 10k", "flags S", "flags F and not flags R",
    "dst port > 1023 or src port < 1024", "(proto tcp or proto udp) and not port 443", "ipv6", "inet",
    "proto icmp or proto icmp6", "flags AP and packets < 5", "duration > 1000", "not host 192.168.1.1",
]


def test_the_same_records_as_nfdump_on_real_captures_in_nfcapd(nfcapd):
    """Our records of five real captures go over IPFIX to nfcapd; nfdump's filter and ours select the same
    flows, with the same packets and bytes."""
    port, flowdir, stop = nfcapd
    paths = [str(reference.pcaps_dir() / f) for f in FILES]
    records = [r for batch in pcap2flows.records_of_files(paths, 60) for r in batch]
    ex = netflow.Exporter(ipfix=[("127.0.0.1", port)])
    for lo in range(0, len(records), 30):
        ex.send(records[lo:lo + 30])
        time.sleep(0.002)
    time.sleep(0.5)
    stop()
    for flt in SAME_AS_NFDUMP:
        pred = compile_filter(flt)
        want: dict = defaultdict(lambda: [0, 0])
        for r in records:
            if pred(r):
                src = r.get("sourceIPv4Address") or r["sourceIPv6Address"]
                dst = r.get("destinationIPv4Address") or r["destinationIPv6Address"]
                k = key(src, dst, r["protocolIdentifier"], r["sourceTransportPort"], r["destinationTransportPort"])
                want[k][0] += r["packetDeltaCount"]
                want[k][1] += r["octetDeltaCount"]
        got = collected(flowdir, flt)
        assert got == dict(want), (flt, len(got), len(want),
                                   [(k, got.get(k), want.get(k)) for k in set(got) ^ set(want)][:3])
        assert 0 < len(got) or flt in ("duration > 1000",), f"{flt!r} selects nothing: a weak case"


# -- the prefilter of whole messages: never passes over a message holding a match

PREFILTERED = ["host 10.0.0.1", "src host 10.0.0.2", "dst port 22", "port 443", "proto udp", "sensor tap2",
               "host 10.0.0.1 and port 22", "host 10.0.0.1 or host 10.0.0.9", "port in [ 80 443 ]",
               "(proto tcp and dst port 22) or (proto udp and dst port 53)", "vlan 100 and tcp",
               "host in [ 10.0.0.1 10.0.0.3 ]", "not port 22", "host 10.0.0.1 or bytes > 1k"]


def _message(recs: list[dict]) -> bytes:
    from app import records
    texts = []
    for r in recs:
        key = records.flow_key(r["flowsight"]["sensor"], r["sourceIPv4Address"], r["destinationIPv4Address"],
                               r["protocolIdentifier"], r["sourceTransportPort"], r["destinationTransportPort"],
                               r["vlanId"], r["ipClassOfService"])
        texts.append(records.record_json(60_000, key.split("|"), [r["packetDeltaCount"], r["octetDeltaCount"],
                                         r["flowStartMilliseconds"], r["flowEndMilliseconds"], r["tcpControlBits"]],
                                         60_000, 2, False, json.dumps(r["flowsight"]["sensor"]), "[]", 1))
    return records.batches(texts)[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"]),
                          st.sampled_from(["10.0.0.1", "10.0.0.2", "192.0.2.1"]),
                          st.sampled_from([6, 17, 1]), st.sampled_from([22, 53, 80, 443, 40000, 2222]),
                          st.sampled_from([22, 53, 80, 443, 8443]), st.sampled_from([0, 100]),
                          st.sampled_from(["tap1", "tap2"]), st.integers(1, 5000)), min_size=1, max_size=8),
       st.sampled_from(PREFILTERED))
def test_the_prefilter_never_passes_over_a_message_that_holds_a_match(rows, flt):
    recs = [rec(src=s, dst=d, proto=p, sport=sp, dport=dp, vlan=v, sensor=sen, nbytes=b)
            for s, d, p, sp, dp, v, sen, b in rows]
    raw = _message(recs)
    decoded = json.loads(raw)["records"]
    pred = compile_filter(flt)
    maybe = prefilter(pred)
    if any(pred(r) for r in decoded):
        assert maybe is None or maybe(raw), (flt, decoded)


def test_the_prefilter_passes_over_messages_without_the_needles():
    raw = _message([rec(src="10.0.0.2", dst="192.0.2.1", dport=80, proto=6)])
    for flt in ("host 10.0.0.1", "dst port 22", "proto udp", "sensor tap2", "host 10.0.0.1 or port 22"):
        assert prefilter(compile_filter(flt))(raw) is False, flt
    for flt in ("not port 22", "bytes > 1k", "net 10.0.0.0/8", "port > 22", "host 10.0.0.1 or bytes > 1"):
        assert prefilter(compile_filter(flt)) is None, flt     # no requirement it can check: every message read


def _lines_message(recs: list[dict], with_columns: bool = False):
    """A flows message as the flows agent writes it, from records of either family, with late ones; with its
    headers (its columns and its sensor: the first record's), as (value, headers), if ``with_columns``."""
    from app import records
    texts, rows = [], []
    for r in recs:
        fam = "IPv6" if "sourceIPv6Address" in r else "IPv4"
        key = records.flow_key(r["flowsight"]["sensor"], r[f"source{fam}Address"], r[f"destination{fam}Address"],
                               r["protocolIdentifier"], r["sourceTransportPort"], r["destinationTransportPort"],
                               r["vlanId"], r["ipClassOfService"])
        texts.append(records.record_json(60_000, key.split("|"), [r["packetDeltaCount"], r["octetDeltaCount"],
                                         r["flowStartMilliseconds"], r["flowEndMilliseconds"], r["tcpControlBits"]],
                                         60_000, 2, r["flowsight"]["late"], json.dumps(r["flowsight"]["sensor"]),
                                         '["b1","b,2"]', 1))
        rows.append(records.column_row(key.split("|"), [r["packetDeltaCount"], r["octetDeltaCount"],
                                       r["flowStartMilliseconds"], r["flowEndMilliseconds"], r["tcpControlBits"]],
                                       r["flowsight"]["late"]))
    if with_columns:
        return records.flows_messages(texts, rows, recs[0]["flowsight"]["sensor"])[0]
    return records.batches(texts)[0]


COLUMN_FILTERS = [t for t, _ in test_each_primitive_and_operator.pytestmark[0].args[1]] + [
    "host 2001:db8::1", "net 2001:db8::/32", "src net 10.0.0.0/8 and not dst host 192.0.2.1",
    "icmp-type 8", "icmp-code 0", "proto 58 and icmp-type 128", "sensor tap2 or not sensor tap1", "late and bytes > 100",
    "bps > 1m or pps < 2", "bpp >= 500", "duration < 10", "port in [53, 123]", "vlan 100 or tos > 4",
    "host in [ 10.0.0.1 2001:db8::/64 ]", "flags SA or flags R", "not (inet6 or late)", "net 0.0.0.0/0",
    "src net ::/0", "dst net 2001:db8::/127", "net 2001:db8::/63 and not net 2001:db8:1::/48", "net 192.0.2.0/31",
    "host 2001:db8::1 or dst host 2001:db8:0:1::1", "src net 2001:db8::/64", "net 255.255.255.254/31"]


EDGE_RECORDS = [rec(src=s, dst=d, proto=p, dport=dp, flags=fl, late=late)
                for s, d in (("10.0.0.1", "10.0.0.2"), ("0.0.0.0", "255.255.255.255"), ("192.0.2.1", "10.0.0.1"),
                             ("2001:db8::1", "2001:db8::2"), ("2001:db8:1::1", "2001:db8:0:1::1"),
                             ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ("::ffff:10.0.0.1", "2001:db8::3"),
                             ("2001:db8:0:0:ffff:ffff:ffff:ffff", "2001:db9::"))
                for p, dp, fl, late in ((6, 22, 0x12, False), (17, 53, 0, True), (58, 33024, 0, False))]


@pytest.mark.parametrize("flt", COLUMN_FILTERS)
def test_both_column_forms_agree_with_the_record_by_record_filter_at_the_edges_of_networks(flt):
    """Addresses whose high or low word alone matches a network's, the ends of both families' ranges."""
    from app.query.filter import Columns, TextColumns, vector
    from app.records import message_columns
    pred = compile_filter(flt)
    vec = vector(pred)
    raw, headers = _lines_message(EDGE_RECORDS, with_columns=True)
    decoded = json.loads(raw)["records"]
    want = [pred(r) for r in decoded]
    cols = message_columns(headers)
    assert cols is not None and len(cols[0]) == len(decoded)
    assert vec(Columns(*cols)).tolist() == want, flt
    assert vec(TextColumns(raw, len(decoded))).tolist() == want, flt


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "192.0.2.1", "2001:db8::1", "2001:db8:1::9",
                                           "2001:db8:1::1"]),
                          st.sampled_from(["10.0.0.2", "192.0.2.1", "2001:db8::2"]),
                          st.sampled_from([6, 17, 1, 58]), st.sampled_from([0, 22, 53, 123, 443, 40000]),
                          st.sampled_from([0, 22, 53, 2048, 32768, 33024]), st.sampled_from([0, 100]),
                          st.sampled_from(["tap1", "tap2", 'ta,p"3']), st.integers(1, 5_000_000),
                          st.integers(1, 2000), st.integers(0, 5000), st.sampled_from([0, 2, 0x12, 0x14, 0x10]),
                          st.booleans(), st.sampled_from([0, 4, 8])), min_size=0, max_size=12),
       st.sampled_from(COLUMN_FILTERS))
def test_a_filter_over_a_whole_message_at_once_keeps_the_records_it_keeps_one_by_one(rows, flt):
    """Over the columns cut out of a message's text, and over those written beside it (one sensor a message)."""
    from app.query.filter import Columns, TextColumns, vector
    from app.records import message_columns
    recs = []
    for s, d, p, sp, dp, v, sen, b, pk, dur, fl, late, tos in rows:
        if (":" in s) != (":" in d):
            d = "2001:db8::2" if ":" in s else "192.0.2.1"
        recs.append(rec(src=s, dst=d, proto=p, sport=sp, dport=dp, vlan=v, sensor=sen, nbytes=b, packets=pk,
                        first=1_000, last=1_000 + dur, flags=fl, late=late, tos=tos))
    if not recs:
        return
    raw = _lines_message(recs)
    decoded = json.loads(raw)["records"]
    pred = compile_filter(flt)
    vec = vector(pred)
    assert vec is not None, flt             # every primitive has a columnar form
    mask = vec(TextColumns(raw, len(decoded)))
    assert mask.dtype == bool and len(mask) == len(decoded)
    assert mask.tolist() == [pred(r) for r in decoded], flt
    for r in recs:
        r["flowsight"]["sensor"] = recs[0]["flowsight"]["sensor"]
    raw, headers = _lines_message(recs, with_columns=True)
    decoded = json.loads(raw)["records"]
    cols = message_columns(headers)
    assert cols is not None
    mask = vec(Columns(*cols))
    assert mask.dtype == bool and mask.tolist() == [pred(r) for r in decoded], flt


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"]),
                          st.sampled_from(["10.0.0.2", "10.0.0.1", "2001:db8::1", "2001:db8::2"]),
                          st.sampled_from([6, 17, 1, 58, 47]), st.sampled_from([0, 22, 53, 443]),
                          st.sampled_from([0, 22, 53, 2048]), st.integers(1, 1 << 40), st.integers(1, 1 << 33),
                          st.integers(0, 3_600_000), st.booleans()), min_size=1, max_size=40),
       st.sampled_from(["srcip", "dstip", "ip", "srcport", "dstport", "port", "proto", "pair", "sensor"]),
       st.sampled_from([60_000, 7_000]))
def test_top_and_series_from_columns_are_those_of_the_records(rows, by, bucket_ms):
    """An aggregate over a message's columns (nothing decoded) gives what one over its decoded records gives."""
    from app.query.filter import Columns
    from app.query.top import Series, Top, Visit
    from app.records import message_columns
    recs = []
    for s, d, p, sp, dp, b, pk, first, kept in rows:
        if (":" in s) != (":" in d):
            d = "2001:db8::2" if ":" in s else "192.0.2.1"
        recs.append(rec(src=s, dst=d, proto=p, sport=sp, dport=dp, nbytes=b, packets=pk, first=first,
                        last=first + 5, sensor="tap-7"))
    raw, headers = _lines_message(recs, with_columns=True)
    decoded = json.loads(raw)["records"]
    keep = np.array([r[-1] for r in rows])
    by_records, by_columns = (Top(by), Series(bucket_ms)), (Top(by), Series(bucket_ms))
    by_columns[0].COMPACT_ROWS = 3        # grouped along the way, as after a million rows
    for r, k in zip(decoded, keep):
        if k:
            Visit(*by_records)(r)
    cols = Columns(*message_columns(headers))
    half = np.arange(len(keep)) < len(keep) // 2      # as two messages
    Visit(*by_columns).columns(cols, keep & half)
    Visit(*by_columns).columns(cols, keep & ~half)
    for metric in ("flows", "packets", "bytes"):
        assert by_columns[0].result(100, metric) == by_records[0].result(100, metric)
    assert by_columns[0].records == by_records[0].records
    assert by_columns[1].result() == by_records[1].result()


@pytest.mark.parametrize("flt", ["", "host 10.0.0.1", "proto udp", "not (inet6 or late)", "dst port 22",
                                 "net 2001:db8::/32 or sensor tap2", "bytes > 100000"])
def test_a_message_cut_for_a_page_keeps_what_the_filter_keeps_in_every_form_of_message(flt):
    """A search cuts each message into what a page answers (app.runtime.egress.cut_message): with its columns,
    without them (its text looked through), in the layout before records were written a line each, as
    records or as their stored text, from a record on (a cursor inside the message), and up to the room the
    page has left, saying where the next page resumes."""
    import app.main  # noqa: F401  (egress is imported by the worker's modules, in their order)
    from app.query.top import Query
    from app.records import message_columns
    from app.runtime.egress import cut_message
    pred = compile_filter(flt) if flt else None
    query = Query.of(pred, None, None, 60_000)
    value, headers = _lines_message(EDGE_RECORDS, with_columns=True)
    decoded = json.loads(value)["records"]
    n = len(decoded)
    forms = {"columns": (value, message_columns(headers)), "text": (_lines_message(EDGE_RECORDS), None),
             "whole JSON": (json.dumps({"records": decoded}, separators=(",", ":")).encode(), None)}
    for form, (body, cols) in forms.items():
        for first in (0, 5):
            keep = [i for i in range(first, n) if pred is None or pred(decoded[i])]
            for room in (1000, 3):
                for raw in (True, False):
                    piece = cut_message(body, cols, first, query, room, None, raw)
                    what = (form, first, room, raw)
                    if piece is None:      # passed over unread: only when nothing in it is kept
                        assert cols is None and not keep, what
                        continue
                    got = json.loads(b"[" + b",".join(bytes(p) for p in piece.records) + b"]") if raw \
                        else piece.records
                    assert got == [decoded[i] for i in keep[:room]], what
                    assert piece.kept == len(got) and piece.scanned == n - first, what
                    assert piece.full == (len(keep) >= room), what
                    resume = keep[room - 1] + 1 if len(keep) >= room else n
                    assert piece.resume == (resume if resume < n else None), what
