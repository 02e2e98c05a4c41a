"""Synthetic traffic with its own truth table: our flows must equal it exactly."""
from __future__ import annotations

from collections import Counter

import pytest

from app import records
from tests import flowtools as ft
from app.capture import pcap
from app.flows import decode
from app.flows import parts as flows
from app.cli import pcap2flows
from app.capture import synth
from tests import reference
from app.flows.windows import Merger


def table(agg: flows.Aggregate, with_window: bool = False) -> dict:
    out = {}
    for w, key, p, b, _f, _l, _fl in ft.rows(agg):
        k = ft.key_string("s", key).split(records.SEP)[1:]
        out[((w,) if with_window else ()) + (k[0], k[1], *map(int, k[2:]))] = [p, b]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_whole_capture_equals_truth(seed):
    tr = synth.generate(seed=seed, conversations=400, packets=6000, v6_share=0.3, vlan_share=0.3)
    pk = decode.decode(tr.pcap, pcap.index(tr.pcap))
    assert pk.skipped() == {}
    assert table(ft.aggregate_arrays(pk, 0)) == tr.table()


def test_tcp_flags_equal_truth():
    tr = synth.generate(seed=4, conversations=200, packets=3000)
    pk = decode.decode(tr.pcap, pcap.index(tr.pcap))
    agg = ft.aggregate_arrays(pk, 0)
    ours = {ft.key_string("s", k): fl for _w, k, _p, _b, _f, _l, fl in ft.rows(agg)}
    truth_keys = list(tr.table())
    truth = {"s|" + "|".join(map(str, k)): int(fl) for k, fl in zip(truth_keys, tr.flags)}
    assert ours == truth


def test_windowed_counts_equal_truth_per_window():
    tr = synth.generate(seed=5, conversations=300, packets=5000, duration_s=600)
    w = 60_000
    ts_ms = tr.pkt_ts_ns // 1_000_000
    keys = list(tr.table())
    truth: Counter = Counter()
    for k, win, n in zip(tr.pkt_key.tolist(), (ts_ms - ts_ms % w).tolist(), tr.pkt_bytes.tolist()):
        truth[(win,) + keys[k]] += n
    pk = decode.decode(tr.pcap, pcap.index(tr.pcap))
    ours = {k: v[1] for k, v in table(ft.aggregate_arrays(pk, w), with_window=True).items()}
    assert ours == dict(truth)


def test_chunked_decoding_combines_to_truth():
    tr = synth.generate(seed=6, conversations=300, packets=5000)
    idx = pcap.index(tr.pcap)
    aggs = []
    for c in pcap.chunks(tr.pcap, idx, 64 * 1024):
        aggs.append(ft.aggregate_arrays(decode.decode(c.data, pcap.index(c.data)), 0))
    assert len(aggs) > 5
    assert table(ft.combine(aggs)) == tr.table()


def test_pipeline_merge_logic_equals_truth():
    """Chunks -> parts -> partitions -> Merger per partition (the agents' path, without Kafka)."""
    tr = synth.generate(seed=7, conversations=300, packets=5000, duration_s=400)
    idx = pcap.index(tr.pcap)
    parts_n = 4
    mergers = {p: Merger(60_000, 5_000, 5_000) for p in range(parts_n)}
    rows: dict = {}
    out = []
    for c in pcap.chunks(tr.pcap, idx, 64 * 1024):
        pk = decode.decode(c.data, pcap.index(c.data))
        for p, items in flows.split_by_partition(flows.parts("s", pk, 60_000), parts_n).items():
            m = mergers[p]
            m.ensure_index(p, rows.items(), {}, 0)
            plan = m.on_parts(p, {"block": "b", "chunk": c.index, "parts": items}, rows, 0)
            out += ft.plan_records(plan)
            rows.update(plan.writes)
    for p, m in mergers.items():
        plan = m.on_tick(p, rows, 10**9)
        out += ft.plan_records(plan)
        rows.update(plan.writes)
    got: Counter = Counter()
    for rec in out:
        got[records.record_key(rec)[1:]] += rec["packetDeltaCount"]
    truth = {(k[0], k[1], k[2], k[3], k[4], k[5], k[6]): v[0] for k, v in tr.table().items()}
    assert dict(got) == truth
    assert len({r["flowId"] for r in out}) == len(out)


def test_offline_command_output_equals_truth(tmp_path, capsys):
    tr = synth.generate(seed=8, conversations=200, packets=3000, v6_share=0.5)
    path = tmp_path / "t.pcap"
    path.write_bytes(tr.pcap)
    assert pcap2flows.main([str(path), "--window", "0", "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    import json
    got = {}
    for line in out.splitlines():
        r = json.loads(line)
        got[records.record_key(r)[1:]] = [r["packetDeltaCount"], r["octetDeltaCount"]]
    assert got == tr.table()
    assert f"packets {len(tr.pkt_key)}" in err and f"flows {len(tr.packets)}" in err


def test_offline_reports_damage_and_keeps_readable_packets(tmp_path, capsys):
    tr = synth.generate(seed=9, conversations=50, packets=500)
    path = tmp_path / "cut.pcap"
    path.write_bytes(tr.pcap[:-7])
    assert pcap2flows.main([str(path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "warning:" in err and "ends inside a record at byte" in err and "error:" not in err   # as the server takes it
    assert out.splitlines()[0].startswith("flowStartMilliseconds,")
    assert f"packets {len(tr.pkt_key) - 1}" in err


def test_offline_unreadable_file_is_a_message_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"not a capture at all")
    assert pcap2flows.main([str(path)]) == 1
    assert "bad-magic" in capsys.readouterr().err
    assert pcap2flows.main([str(tmp_path / "missing.pcap")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_inner_tunnels_option_adds_inner_flows(capsys):
    """VXLAN carrying HTTP: the outer UDP/4789 flows always; the inner TCP/80 flows only with the option."""
    path = reference.pcaps_dir() / "edge" / "zeek-tunnels-vxlan-encapsulated-http.pcap"
    for inner, want_inner in ((False, False), (True, True)):
        assert pcap2flows.main([str(path), "--window", "0", "--format", "csv"] + (["--inner-tunnels"] if inner else [])) == 0
        rows = [r.split(",") for r in capsys.readouterr().out.splitlines()[1:]]
        assert any(r[5] == "4789" for r in rows)
        assert any(r[6] == "6" and "80" in (r[4], r[5]) for r in rows) == want_inner


def test_progress_bar_only_on_a_terminal_and_for_big_files():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = pcap2flows.ProgressBar(stream, min_bytes=1000)
        bar("cap.pcap", 500, 2000)
        bar("cap.pcap", 2000, 2000)
        bar("small.pcap", 10, 20)
    assert " 25%" in tty.getvalue() and "100%" in tty.getvalue() and "small" not in tty.getvalue()
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("rel", ["real/zeek-ssh.pcap", "real/ndpi-alexa-app.pcapng", "real/ndpi-1kxun.pcap"])
def test_parts_name_every_flow_as_key_string_does(rel):
    """parts() names each distinct address once per chunk; the keys must be what key_string() gives
    row by row (IPv4 and IPv6 addresses, whose packed forms differ only in length)."""
    path = reference.pcaps_dir() / rel
    data = path.read_bytes()
    pk = decode.decode(data, pcap.index(data))
    agg = flows.Aggregator(60_000)
    agg.add_packets(pk)
    one_by_one = [[w, ft.key_string("s", key), p, b, f, last, fl]
                  for w, key, p, b, f, last, fl in ft.rows(agg.result())]
    assert len(one_by_one) > 10
    assert flows.parts("s", pk, 60_000) == one_by_one


def test_parts_keep_ipv4_and_ipv6_addresses_with_the_same_leading_bytes_apart():
    tr = synth.generate(seed=5, conversations=300, packets=3000, v6_share=0.5)
    pk = decode.decode(tr.pcap, pcap.index(tr.pcap))
    pk.src[pk.ver == 6, :4] = pk.src[pk.ver == 4][0, :4]  # every IPv6 source starts as an IPv4 one
    pk.src[pk.ver == 6, 4:] = 0
    keys = {part[1].split(records.SEP)[1] for part in flows.parts("s", pk, 0)}
    assert any(":" in k for k in keys) and any(":" not in k for k in keys)
