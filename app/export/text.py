"""Flow rows to CSV or JSON-lines text in compiled code: the offline command's output stage.

Pure code (no Faust). IPv4 addresses and all numbers are written by a numba
kernel; IPv6 addresses (rarer) are formatted once each in Python and passed in
as a blob with offsets. The layouts of a row (JSON, CSV) and of its flowId's
text come from the field list of app/records.py.
"""
from __future__ import annotations

import json
import socket

import numpy as np
from numba import njit

from app.records import CSV_COLUMNS, END_FORCED, FLOW_FIELDS, KEY_COLUMNS, NAME, SEP, hash_lines

CSV_FIELDS = list(CSV_COLUMNS)


@njit(inline="always")
def _put(out, o, piece):
    for k in range(piece.shape[0]):
        out[o + k] = piece[k]
    return o + piece.shape[0]


@njit(inline="always")
def _int(out, o, v):
    if v < 0:
        out[o] = 45
        o += 1
        v = -v
    if v == 0:
        out[o] = 48
        return o + 1
    n = 0
    t = v
    while t > 0:
        t //= 10
        n += 1
    for k in range(n - 1, -1, -1):
        out[o + k] = 48 + v % 10
        v //= 10
    return o + n


@njit(inline="always")
def _addr(out, o, ver, raw, i, blob, boff, bidx):
    if ver[i] == 4:
        for k in range(4):
            o = _int(out, o, np.int64(raw[i, k]))
            if k < 3:
                out[o] = 46
                o += 1
        return o
    j = bidx[i]
    for k in range(boff[j], boff[j + 1]):
        out[o] = blob[k]
        o += 1
    return o


@njit(cache=True, nogil=True)
def _write(pieces, starts, layout, ver, src, dst, ints, blob, boff, sidx, didx, row_cap):
    """Write rows by ``layout``: a list of codes, >= 0 = an int column, -1 = src address, -2 = dst address,
    each preceded by a constant piece (pieces[starts[k]:starts[k+1]])."""
    n = ver.shape[0]
    out = np.empty(n * row_cap + 1, dtype=np.uint8)
    o = 0
    for i in range(n):
        for k in range(layout.shape[0]):
            o = _put(out, o, pieces[starts[k]:starts[k + 1]])
            code = layout[k]
            if code >= 0:
                o = _int(out, o, ints[code, i])
            elif code == -1:
                o = _addr(out, o, ver, src, i, blob, boff, sidx)
            elif code == -2:
                o = _addr(out, o, ver, dst, i, blob, boff, didx)
        o = _put(out, o, pieces[starts[layout.shape[0]]:starts[layout.shape[0] + 1]])
    return out[:o]


def _v6_blob(ver: np.ndarray, *columns: np.ndarray):
    """Text of every distinct IPv6 address among the columns, as one blob; per-row indexes into it."""
    rows6 = np.nonzero(ver == 6)[0]
    stacked = np.concatenate([c[rows6] for c in columns]) if len(rows6) else np.zeros((0, 16), np.uint8)
    uniq, inv = np.unique(stacked.view("V16").ravel(), return_inverse=True)
    texts = [socket.inet_ntop(socket.AF_INET6, u.tobytes()).encode() for u in uniq]
    offs = np.zeros(len(texts) + 1, np.int64)
    offs[1:] = np.cumsum([len(t) for t in texts])
    idx = []
    inv = inv.ravel()
    for c in range(len(columns)):
        per_row = np.zeros(len(ver), np.int64)
        per_row[rows6] = inv[c * len(rows6):(c + 1) * len(rows6)]
        idx.append(per_row)
    return np.frombuffer(b"".join(texts) or b"\0", np.uint8), offs, idx


def _template(parts: list[str | int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a row template [const, code, const, code, ..., const] into kernel arguments."""
    consts = [str(p).encode() for p in parts[0::2]]
    codes = np.array(parts[1::2], dtype=np.int64)
    starts = np.zeros(len(consts) + 1, np.int64)
    starts[1:] = np.cumsum([len(c) for c in consts])
    return np.frombuffer(b"".join(consts), np.uint8), starts, codes


#: Row index of each column in the integer block :func:`render` and :func:`flow_ids` build (addresses: -1, -2).
_INT_COLUMNS = ("first", "last", "sport", "dport", "proto", "vlan", "tos", "packets", "bytes", "flags", "window", "id")
_CODE = {**{c: i for i, c in enumerate(_INT_COLUMNS)}, "src": -1, "dst": -2}
_CSV_CODE = {"flowStartMilliseconds": "first", "flowEndMilliseconds": "last", "sourceAddress": "src",
             "destinationAddress": "dst", "window": "window",
             **{f.name: f.column for f in FLOW_FIELDS if f.column not in ("src", "dst")}}


def _csv_layout() -> list:
    parts: list = [""]
    for i, name in enumerate(CSV_COLUMNS):
        parts += [_CODE[_CSV_CODE[name]], "," if i < len(CSV_COLUMNS) - 1 else "\n"]
    return parts


def _json_layout(ver: int, sensor: str, window_len_ms: int) -> list:
    """The JSON line of a record, as :func:`app.records.record_json` writes it (END_FORCED: the offline
    command ends every flow with its capture)."""
    parts: list = ["{"]
    for f in FLOW_FIELDS:
        name = f.for_family(ver)[0]
        if f.column == "end":
            parts[-1] += f'"{name}":{END_FORCED},'
            continue
        quote = '"' if f.column in ("src", "dst") else ""
        parts[-1] += f'"{name}":{quote}'
        parts += [_CODE[f.column], f"{quote},"]
    parts[-1] += '"flowsight":{"sensor":%s,"window":' % json.dumps(sensor)
    parts += [_CODE["window"], ',"windowLengthMs":%d,"late":false,"blockIds":[]}}\n' % window_len_ms]
    return parts


def _id_layout(sensor: str) -> list:
    """:func:`app.records.id_text` of a record, one per line."""
    parts: list = [sensor + SEP]
    for c in KEY_COLUMNS + ("window", "first"):
        parts += [_CODE[c], SEP]
    parts[-1] = "\n"
    return parts


def _ints(first, last, sport, dport, proto, vlan, tos, packets, nbytes, flags, window, fid) -> np.ndarray:
    return np.stack([np.asarray(c, dtype=np.int64) for c in
                     (first, last, sport, dport, proto, vlan, tos, packets, nbytes, flags, window, fid)])


def flow_ids(ver, src, dst, sport, dport, proto, vlan, tos, first, window, sensor: str) -> np.ndarray:
    """The flowId of every row, as the pipeline computes it (:func:`app.records.flow_ids`): the id texts are
    written by the same compiled kernel as the rows, then hashed."""
    if not NAME.match(sensor):
        raise ValueError(f"sensor name {sensor!r}: use letters, digits, '.', '_', ':' and '-' (at most 128)")
    zero = np.zeros(len(ver), np.int64)
    ints = _ints(first, zero, sport, dport, proto, vlan, tos, zero, zero, zero, window, zero)
    return hash_lines(np.frombuffer(_render(_id_layout(sensor), ver, src, dst, ints), np.uint8), len(ver))


def render(fmt: str, ver, src, dst, sport, dport, proto, vlan, tos, packets, nbytes, first, last, flags, window,
           fid, sensor: str, window_len_ms: int) -> bytes:
    """All rows as one byte string (CSV without its header, or JSON lines)."""
    ints = _ints(first, last, sport, dport, proto, vlan, tos, packets, nbytes, flags, window, fid)
    if fmt == "csv":
        return _render(_csv_layout(), ver, src, dst, ints)
    out = []
    for v6 in (False, True):  # the field names differ by family: the IPv4 rows, then the IPv6 rows
        sel = np.nonzero((ver == 6) == v6)[0]
        out.append(_render(_json_layout(6 if v6 else 4, sensor, window_len_ms), ver[sel], src[sel], dst[sel],
                           ints[:, sel]))
    return b"".join(out)


def _render(parts, ver, src, dst, ints) -> bytes:
    pieces, starts, codes = _template(parts)
    blob, boff, (sidx, didx) = _v6_blob(ver, src, dst)
    # the most one row can take: constants, 20 digits and a sign per number, 45 characters per address
    row_cap = len(pieces) + sum(21 if c >= 0 else 45 for c in codes.tolist())
    return _write(pieces, starts, codes, ver, src, dst, ints, blob, boff, sidx, didx, row_cap).tobytes()
