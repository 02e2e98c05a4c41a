"""The table inspector's view of the blocks table."""
from __future__ import annotations

from app.cli.inspect import blocks_rows


def test_a_blocks_lane_rows_are_joined_with_its_own_row():
    """Chunks of other lanes are remembered in rows of their own (agents/decode.py); the inspector shows
    one block with every chunk decoded anywhere, reported to the block's row or not yet."""
    row = {"sensor": "s", "sha256": "ab", "chunks": 10, "chunk_bytes": 8}
    table = {"s~b": {**row, "done": [[0, 0], [8, 8], [2, 2]]},   # own lane, and lane 2's report of chunk 2
             "s~b@1": {**row, "done": [[1, 1], [9, 9]]},
             "s~b@2": {**row, "done": [[2, 2]]},
             "s~c": {**row, "chunks": 1, "done": [[0, 0]]},
             "s~d@3": None}                                    # a tombstone
    got = {r["block"]: (r["decoded"], r["complete"]) for r in blocks_rows(table)}
    assert got == {"b": (5, False), "c": (1, True)}
    table["s~b@3"] = {**row, "done": [[3, 7]]}
    assert {r["block"]: r["complete"] for r in blocks_rows(table)} == {"b": True, "c": True}


def test_open_flow_rows_leave_out_the_windows_a_sensor_closed_and_keep_the_other_sensors():
    import json

    from app.cli.inspect import open_flow_rows
    part = lambda sensor: [[0, f"{sensor}|10.0.0.1|10.0.0.2|6|1|2|0|0", 3, 300, 1, 2, 2]]
    table = {"o|0|0|0|a~b": json.dumps(part("a")).encode(), "o|0|0|0|c~b": json.dumps(part("c")).encode(),
             "c|0|0|a": json.dumps({"closed_ms": 1, "a": {"a~b": [[0, 0]]}}).encode()}
    assert [r["flow"].split("|")[0] for r in open_flow_rows({k: json.loads(v) for k, v in table.items()})] == ["c"]
    table["c|0|0"] = json.dumps({"closed_ms": 1, "a": {}}).encode()      # an older row: every sensor
    assert open_flow_rows({k: json.loads(v) for k, v in table.items()}) == []
