"""Test oracles over the pipeline's flow columns: Python tuples per flow, text keys, whole aggregates. They
belong to the tests: the pipeline itself never turns columns into tuples one flow at a time."""
from __future__ import annotations

import json

from app.flows.decode import Packets
from app.flows.parts import Aggregate, Aggregator, _text
from app.records import flow_key


def aggregate_arrays(pk: Packets, window_ms: int) -> Aggregate:
    """Sum packets per (window, flow key), as columns."""
    agg = Aggregator(window_ms)
    agg.add_packets(pk)
    return agg.result()


def combine(aggs: list[Aggregate]) -> Aggregate:
    """Merge aggregates of several chunks into one (sums, min/max times, OR of flags)."""
    if len(aggs) == 1:
        return aggs[0]
    out = Aggregator(0)
    for a in aggs:
        out.add_aggregate(a)
    return out.result()


def rows(agg: Aggregate):
    """``(window_start_ms, (ver, src, dst, proto, sport, dport, vlan, tos), packets, bytes, first_ms, last_ms,
    flags)`` per flow; addresses are packed bytes (4 or 16)."""
    cols = [agg.w.tolist(), agg.ver.tolist(), [bytes(r) for r in agg.src], [bytes(r) for r in agg.dst],
            agg.proto.tolist(), agg.sport.tolist(), agg.dport.tolist(), agg.vlan.tolist(), agg.tos.tolist()]
    nums = [agg.packets.tolist(), agg.nbytes.tolist(), agg.first_ms.tolist(), agg.last_ms.tolist(),
            agg.flags.tolist()]
    for w, ver, src, dst, proto, sport, dport, vlan, tos, p, b, f, last, fl in zip(*cols, *nums):
        n = 4 if ver == 4 else 16
        yield w, (ver, src[:n], dst[:n], proto, sport, dport, vlan, tos), p, b, f, last, fl


def aggregate(pk: Packets, window_ms: int) -> list[tuple[int, tuple, int, int, int, int, int]]:
    """Sum packets per (window, flow key); see :func:`rows` for the tuple shape."""
    return list(rows(aggregate_arrays(pk, window_ms)))


def key_string(sensor: str, key: tuple) -> str:
    """``sensor|src|dst|proto|sport|dport|vlan|tos`` with addresses in text form (:func:`app.records.flow_key`)."""
    _, src, dst, proto, sport, dport, vlan, tos = key
    return flow_key(sensor, _text(src), _text(dst), proto, sport, dport, vlan, tos)




def plan_records(plan) -> list[dict]:
    """The flow records of a merger's plan, unbatched and decoded."""
    return [r for topic, _, v in plan.emit if topic == "flows" for r in json.loads(v)["records"]]
