"""The formats of app/records.py: every encoder writes the one field list, and a flow has one flowId, offline
and in the pipeline."""
from __future__ import annotations

import csv
import io
import ipaddress
import json
import struct

import numpy as np
import pytest

from app import records
from app.capture import pcap
from app.cli import pcap2flows
from app.export.netflow import IpfixEncoder
from app.flows import decode, parts as flowparts
from tests import pcapgen
from tests.unit.test_windows import Harness

W = 60_000


def _capture(tmp_path):
    pkts = []
    for i in range(40):
        t = 1_700_000_000 + i * 7.5          # spans several windows
        pkts.append((t, pcapgen.ipv4_tcp(f"10.0.0.{i % 5 + 1}", "192.0.2.9", 40000 + i % 3, 443,
                                          payload=b"x" * (i % 7))))
        pkts.append((t + 0.25, pcapgen.ipv6_udp("2001:db8::1", f"2001:db8::{i % 4 + 2}", 5353, 53)))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcapgen.pcap(pkts))
    return path


def _offline(path, fmt="jsonl", sensor="tap1"):
    summary = pcap2flows.Summary()
    agg = pcap2flows.aggregate_files([str(path)], W, summary)
    return b"".join(pcap2flows.lines(agg, fmt, sensor, W)).decode()


def _pipeline(path, sensor="tap1"):
    data = path.read_bytes()
    ps = flowparts.parts(sensor, decode.decode(data, pcap.index(data)), W)
    h = Harness(idle_ms=1)
    h.feed({"block": "b1", "chunk": 0, "chunks": 1, "sensor": sensor, "parts": ps}, now_ms=0)
    h.feed({"tick": True}, now_ms=10_000)
    return h.out


def test_the_offline_command_and_the_pipeline_give_a_flow_the_same_flow_id(tmp_path):
    path = _capture(tmp_path)
    offline = {r["flowId"]: r for r in map(json.loads, _offline(path).splitlines())}
    online = {r["flowId"]: r for r in _pipeline(path)}
    assert len(offline) == len(online) > 10
    assert set(offline) == set(online)
    for fid, rec in offline.items():
        other = online[fid]
        assert records.record_key(rec) == records.record_key(other)
        assert (rec["packetDeltaCount"], rec["octetDeltaCount"], rec["flowStartMilliseconds"]) == \
            (other["packetDeltaCount"], other["octetDeltaCount"], other["flowStartMilliseconds"])


def test_a_flow_id_is_its_key_window_and_first_packet_and_a_late_delta_has_its_own():
    key = records.flow_key("s", "10.0.0.1", "10.0.0.2", 6, 1, 2, 0, 0)
    base = records.flow_id(key, W, W + 5)
    assert 0 <= base < 2 ** 63
    assert base == records.flow_id(key, W, W + 5)
    others = {records.flow_id(key, W, W + 6), records.flow_id(key, 2 * W, W + 5),
              records.flow_id(key.replace("|2|", "|3|"), W, W + 5), records.flow_id(key, W, W + 5, "b", 0),
              records.flow_id(key, W, W + 5, "b", 1), records.flow_id(key, W, W + 5, "c", 0)}
    assert base not in others and len(others) == 6
    # the batch and the one-at-a-time forms agree
    texts = [records.id_text(key, W * i, W * i + 1) for i in range(100)]
    assert records.flow_ids(texts) == [records.flow_id(key, W * i, W * i + 1) for i in range(100)]
    assert len(set(records.flow_ids(texts))) == 100


def test_the_offline_json_and_csv_carry_the_fields_of_the_one_list(tmp_path):
    path = _capture(tmp_path)
    recs = [json.loads(line) for line in _offline(path).splitlines()]
    for rec in recs:
        ver = 6 if "sourceIPv6Address" in rec else 4
        assert list(rec) == [f.for_family(ver)[0] for f in records.FLOW_FIELDS] + ["flowsight"]
        assert list(rec["flowsight"]) == list(records.FLOWSIGHT_FIELDS)
    rows = list(csv.DictReader(io.StringIO(_offline(path, "csv"))))
    assert tuple(rows[0]) == records.CSV_COLUMNS
    assert sorted(int(r["flowId"]) for r in rows) == sorted(r["flowId"] for r in recs)


def test_the_pipeline_json_text_is_the_record_dict():
    key = records.flow_key("s", "2001:db8::1", "2001:db8::2", 17, 5353, 53, 7, 184)
    counts = [3, 300, W + 1, W + 900, 0]
    text = records.record_json(W, key.split("|"), counts, W, records.END_FORCED, True, '"s"', '["b"]',
                               records.flow_id(key, W, W + 1))
    assert json.loads(text) == records.record(W, key, counts, W, end_reason=records.END_FORCED, late=True,
                                              blocks=["b"])


def test_egress_hands_out_the_stored_text_of_each_record_of_a_flows_message():
    import app.main  # noqa: F401  (the app first: its agents import the egress readers)
    from app.runtime.egress import answer_body, batch_records
    recs = []
    for i in range(1203):
        key = records.flow_key('s "x"', f"10.0.{i % 250}.1", "2001:db8::2" if i % 3 else "192.0.2.1", 6, i, 22, 0, 0)
        recs.append(records.record_json(W, key.split("|"), [i + 1, 60 * i, W, W + i, 2], W, records.END_ACTIVE_TIMEOUT,
                                        False, json.dumps('s "x"'), json.dumps([f"b,\n{i}"]),
                                        records.flow_id(key, W, W)))
    msgs = records.batches(recs)
    assert len(msgs) == 3
    raw = [r for m in msgs for r in batch_records(m, True)]
    assert [json.loads(r) for r in raw] == [json.loads(r) for r in recs]
    assert [r for m in msgs for r in batch_records(m, False)] == [json.loads(r) for r in recs]
    # a message written before the record-a-line layout is decoded and encoded again
    old = json.dumps({"v": 1, "records": [json.loads(r) for r in recs[:5]]}).encode()
    assert [json.loads(r) for r in batch_records(old, True)] == [json.loads(r) for r in recs[:5]]
    # a search cuts out only the records it keeps, or hands out a run of them as one piece
    from app.runtime.egress import Lines
    lines = Lines.of(msgs[1])
    assert lines is not None and Lines.of(old) is None
    assert len(lines) == 500 and [lines[i] for i in range(len(lines))] == batch_records(msgs[1], True)
    n0 = len(batch_records(msgs[0], True))
    for i, j in ((0, 500), (0, 1), (499, 500), (17, 300)):
        assert json.loads(b"[" + lines.span(i, j) + b"]") == [json.loads(r) for r in recs[n0 + i:n0 + j]]
    pieces = json.loads(answer_body({"records": [lines.span(0, 3), raw[0], lines.span(499, 500)], "cursor": "c"}))
    assert len(pieces["records"]) == 5
    body = json.loads(answer_body({"records": raw[:7], "cursor": "c1"}))
    assert body == {"records": [json.loads(r) for r in recs[:7]], "cursor": "c1"}
    assert json.loads(answer_body({"records": [], "cursor": ""})) == {"records": [], "cursor": ""}
    # the records a mask keeps, handed out as runs: the same as cut out one by one
    import numpy as np
    from app.runtime.egress import runs
    rng = np.random.default_rng(7)
    for share in (0.0, 0.1, 0.5, 0.9, 1.0):
        keep = rng.random(500) < share
        keep[rng.integers(500)] = True
        want = [json.loads(recs[n0 + i]) for i in np.flatnonzero(keep)]
        assert json.loads(answer_body({"records": lines.spans(*runs(keep)), "cursor": "c"}))["records"] == want
        # the same cut where the columns say each record ends, not where its newlines are
        row = records.column_row("s|192.0.2.1|192.0.2.2|6|1|1|0|0".split("|"), [1, 1, 1, 1, 1], False)
        value, headers = records.flows_messages(recs, [row] * len(recs), "s")[1]
        ends = records.message_columns(headers)[0]["text_end"]
        with_ends = Lines.of(value, ends)
        assert json.loads(answer_body({"records": with_ends.spans(*runs(keep)), "cursor": "c"}))["records"] == want
    assert [r.tolist() for r in runs(np.ones(500, bool))] == [[0], [500]]
    assert [r.tolist() for r in runs(np.array([0, 0, 0, 1, 0, 1, 1, 0, 0, 1], bool))] == [[3, 5, 9], [4, 7, 10]]


def test_a_flows_message_carries_its_records_columns_beside_it():
    """The header says what the JSON says, message by message, for both families and late records."""
    recs, rows = [], []
    for i in range(1203):
        src, dst = f"10.0.{i % 250}.1", "2001:db8::2" if i % 3 else "192.0.2.1"
        if dst.startswith("2001"):
            src = f"2001:db8:{i:x}::1"
        fields = records.flow_key("tap", src, dst, 17 if i % 2 else 6, i, 53, i % 5, i % 7).split("|")
        counts = [i + 1, 60 * i + (1 << 40), W - i, W + i, i % 64]
        recs.append(records.record_json(W, fields, counts, W, records.END_ACTIVE_TIMEOUT, i % 4 == 0, '"tap"', "[]", i))
        rows.append(records.column_row(fields, counts, i % 4 == 0))
    msgs = records.flows_messages(recs, rows, "tap")
    assert [m for m, _ in msgs] == records.batches(recs)
    got = []
    for value, headers in msgs:
        cols, sensor = records.message_columns(headers)
        assert sensor == "tap" and len(cols) == len(json.loads(value)["records"])
        assert [value[a:b].decode() for a, b in zip([len(records.BATCH_HEAD)] + [e + 2 for e in cols["text_end"][:-1]],
                                                    cols["text_end"])] == recs[len(got):len(got) + len(cols)]
        got += list(zip(json.loads(value)["records"], cols))
    assert len(got) == 1203
    for r, c in got:
        fam = 6 if "sourceIPv6Address" in r else 4
        src = r.get("sourceIPv4Address") or r["sourceIPv6Address"]
        dst = r.get("destinationIPv4Address") or r["destinationIPv6Address"]
        assert int(c["fam"]) == fam
        assert (int(c["srchi"]) << 64 | int(c["srclo"])) == int(ipaddress.ip_address(src))
        assert (int(c["dsthi"]) << 64 | int(c["dstlo"])) == int(ipaddress.ip_address(dst))
        for name, col in records.COLUMN_OF.items():
            if name in r:
                assert int(c[col]) == r[name], name
        assert bool(c["late"]) == r["flowsight"]["late"]
    assert records.message_columns([("cols", b"x" * 75), ("sensor", b"tap")]) is None
    assert records.message_columns([("sensor", b"tap")]) is None and records.message_columns(None) is None


def test_the_ipfix_templates_follow_the_field_list():
    msg = IpfixEncoder().encode([records.record(W, records.flow_key("s", "10.0.0.1", "10.0.0.2", 6, 1, 2, 0, 0),
                                                [1, 60, W, W, 2], W, end_reason=records.END_ACTIVE_TIMEOUT)])[0]
    set_id, set_len = struct.unpack_from("!HH", msg, 16)
    assert set_id == 2
    tid, count = struct.unpack_from("!HH", msg, 20)
    elements = [struct.unpack_from("!HH", msg, 24 + 4 * i) for i in range(count)]
    assert tid == 256 and elements == [(ie, size) for _, ie, size in records.ipfix_template(4)]
    assert [ie for ie, _ in elements][:2] == [8, 12] and 148 not in [ie for ie, _ in elements]


def test_a_flow_key_round_trips_and_row_keys_parse():
    k = records.FlowKey("tap-1", "10.1.2.3", "10.1.2.4", 6, 1234, 22, 100, 0)
    assert records.FlowKey.parse(k.text()) == k
    assert records.FlowsRows.parse(records.FlowsRows.slice(3, W, records.source("s", "b"), 7)) == \
        ("o", 3, W, 7, "s~b")
    assert records.FlowsRows.parse(records.FlowsRows.closed(3, W, "s")) == ("c", 3, W, None, "s")
    assert records.FlowsRows.parse("c|3|60000") == ("c", 3, W, None, None)   # a row of an older version
    assert records.FlowsRows.parse("x|y") is None
    assert records.source_sensor("s~b~c") == "s" and records.source_block("s~b~c") == "b~c"


def test_the_offline_command_refuses_a_sensor_name_the_pipeline_would_refuse(tmp_path, capsys):
    path = _capture(tmp_path)
    assert pcap2flows.run([str(path)], 60, "jsonl", "bad|name", out=io.BytesIO()) == 2
    assert "--sensor" in capsys.readouterr().err
    with pytest.raises(ValueError):
        flowparts_ids = np.zeros(0)
        pcap2flows.textout.flow_ids(flowparts_ids, flowparts_ids, flowparts_ids, *[flowparts_ids] * 7, "a\nb")
