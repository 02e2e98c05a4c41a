"""Flow filters in nfdump's syntax, parsed once into a predicate over flow records.

Pure code. The grammar (keywords are case-insensitive; ``#`` starts a comment)::

    expr      := term { ("or" | "||") term }
    term      := factor { ("and" | "&&") factor }
    factor    := ("not" | "!") factor | "(" expr ")" | primitive
    primitive := [dir] ("host" | "ip") ADDR         | [dir] ("host" | "ip") "in" "[" ADDR|NET ... "]"
               | [dir] "net" NET ["/" BITS | MASK]   | [dir] "port" [comp] NUM | [dir] "port" "in" "[" NUM ... "]"
               | "proto" (NAME | NUM) | NAME of a protocol (tcp, udp, icmp, ...)
               | "inet" | "ipv4" | "inet6" | "ipv6"
               | [dir] "vlan" NUM | "tos" [comp] NUM | "flags" LETTERS (A S F R P U, X: all)
               | ("packets" | "bytes" | "pps" | "bps" | "bpp") comp NUM[k|m|g]
               | "duration" comp MILLISECONDS | "icmp-type" NUM | "icmp-code" NUM
               | ("sensor" | "ident") NAME | "late"
    dir       := "src" | "dst"
    comp      := "==" | "=" | "eq" | ">" | "gt" | "<" | "lt" | ">=" | "ge" | "<=" | "le"   (default: "==")

As in nfdump, ``host``/``ip``/``net``/``port``/``vlan`` without ``src`` or ``dst`` match either side,
``flags SA`` is true when all of S and A are set (other flags do not matter), and numbers take the
scaling factors k, m and g (powers of 1000). A record's addresses are compared as addresses, so
``host 2001:db8::1`` matches ``2001:0db8:0::1``.

>>> f = compile_filter("src host 10.1.2.3 and dst port 22")
>>> f({"sourceIPv4Address": "10.1.2.3", "destinationIPv4Address": "10.9.9.9", "sourceTransportPort": 40000,
...    "destinationTransportPort": 22, "protocolIdentifier": 6})
True
>>> compile_filter("port 22 and and")
Traceback (most recent call last):
...
app.query.filter.FilterError: filter: expected a filter primitive, found 'and' at position 12
"""
from __future__ import annotations

import ipaddress
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app import records

Record = dict
Predicate = Callable[[Record], bool]

#: Protocol names a filter may use, as nfdump and /etc/protocols spell them.
PROTOCOLS = {"icmp": 1, "igmp": 2, "ipip": 4, "ipinip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6-in-ipv4": 41,
             "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmp6": 58, "ipv6-icmp": 58, "icmpv6": 58,
             "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132}
FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "X": 0x3F}
_SCALE = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_COMPARE = {"==": "==", "=": "==", "eq": "==", ">": ">", "gt": ">", "<": "<", "lt": "<", ">=": ">=", "ge": ">=",
            "<=": "<=", "le": "<="}
_TOKEN = re.compile(r"\s*(?:(#[^\n]*)|(\|\||&&|==|>=|<=|[()\[\]!<>=,/])|([^\s()\[\]!<>=,#]+))")

SRC4, SRC6, DST4, DST6 = ("sourceIPv4Address", "sourceIPv6Address", "destinationIPv4Address",
                          "destinationIPv6Address")


# -- needles: byte strings a flows message must hold for a record of it to match (a batch that holds none of
# a clause's is passed over unparsed). A predicate's ``cnf`` is a list of clauses, each a set of needles; a
# message may match only if, for every clause, it holds one of its needles. None: no such requirement. The
# needles are the compact JSON that app.records.record_json writes.

def _need(pred: Predicate, cnf: list[frozenset[bytes]] | None) -> Predicate:
    pred.cnf = cnf  # type: ignore[attr-defined]
    return pred


def _cnf(pred: Predicate) -> list[frozenset[bytes]] | None:
    return getattr(pred, "cnf", None)


def _field_needle(name: str, value: int) -> bytes:
    return f'"{name}":{value},'.encode()


def prefilter(pred: Predicate) -> Callable[[bytes], bool] | None:
    """A cheap test of a whole flows message's bytes: False only if no record of it can match ``pred``."""
    cnf = _cnf(pred)
    if not cnf:
        return None
    clauses = [tuple(c) for c in cnf]
    return lambda raw: all(any(n in raw for n in c) for c in clauses)


# -- columns: a predicate over every record of a flows message at once, and only the records that match are
# decoded. A predicate's ``vec`` maps columns (:class:`Columns` or :class:`TextColumns`) to a boolean array;
# None where a part of it has none. Addresses are compared as (family, high word, low word).

class Irregular(Exception):
    """A message whose fields do not line up with its records: evaluate it record by record."""


Address = tuple[np.ndarray, np.ndarray, np.ndarray]


class Columns:
    """The columns of the ``n`` records of a flows message as written beside it (its header,
    :data:`app.records.COLUMNS`): each a view of the header's bytes, nothing parsed."""

    def __init__(self, cols: np.ndarray, sensor: str):
        self.cols, self.n, self._sensor = cols, len(cols), sensor

    def num(self, name: str) -> np.ndarray:
        """A number field by its JSON name, as int64."""
        try:
            return self.cols[records.COLUMN_OF[name]].astype(np.int64)
        except KeyError:
            raise Irregular from None

    def addr(self, side: str) -> Address:
        return self.cols["fam"], self.cols[side + "hi"], self.cols[side + "lo"]

    def v6(self) -> np.ndarray:
        return self.cols["fam"] == 6

    def sensor(self) -> np.ndarray:
        return np.full(self.n, self._sensor, dtype=object)

    def late(self) -> np.ndarray:
        return self.cols["late"].astype(bool)


_NUM_FIELD: dict[str, re.Pattern[bytes]] = {}
_SIDE_ADDR = {"src": re.compile(rb'"source(?:IPv[46])Address":"([^"]*)"'),
              "dst": re.compile(rb'"destination(?:IPv[46])Address":"([^"]*)"')}
_SENSOR = re.compile(rb'"sensor":("(?:[^"\\]|\\.)*")')
_LATE = re.compile(rb'"late":(true|false)')


class TextColumns:
    """The same, for a message written without them: each field a filter names is cut out of the whole
    message's text (a record a line, in the field order of app.records.record_json) with one regular
    expression, when a predicate first asks for it."""

    def __init__(self, body: bytes, n: int):
        self.body, self.n = body, n
        self._c: dict[str, np.ndarray] = {}

    def _check(self, found: list) -> list:
        if len(found) != self.n:
            raise Irregular
        return found

    def num(self, name: str) -> np.ndarray:
        a = self._c.get(name)
        if a is None:
            pat = _NUM_FIELD.get(name)
            if pat is None:
                pat = _NUM_FIELD[name] = re.compile(b'"' + name.encode() + rb'":(-?\d+)')
            found = self._check(pat.findall(self.body))
            if any(len(v) > 18 for v in found):
                raise Irregular     # past int64: record by record, in Python's integers
            a = self._c[name] = np.fromstring(b" ".join(found), dtype=np.int64, sep=" ") \
                if found else np.zeros(0, np.int64)
        return a

    def addr(self, side: str) -> Address:
        if side + "fam" not in self._c:
            words = np.array([records.address_words(t.decode()) for t in self._check(_SIDE_ADDR[side].findall(
                self.body))], dtype=np.uint64).reshape(-1, 3)
            self._c[side + "fam"], self._c[side + "hi"], self._c[side + "lo"] = words.T
        return self._c[side + "fam"], self._c[side + "hi"], self._c[side + "lo"]

    def v6(self) -> np.ndarray:
        return self.addr("src")[0] == 6

    def sensor(self) -> np.ndarray:
        a = self._c.get("sensor")
        if a is None:
            a = self._c["sensor"] = np.array([json.loads(t) for t in self._check(_SENSOR.findall(self.body))],
                                             dtype=object)
        return a

    def late(self) -> np.ndarray:
        a = self._c.get("late")
        if a is None:
            a = self._c["late"] = np.array([t == b"true" for t in self._check(_LATE.findall(self.body))],
                                           dtype=bool)
        return a


Vec = Callable[[Columns | TextColumns], np.ndarray]


def _vec(pred: Predicate, vec: Vec | None) -> Predicate:
    pred.vec = vec  # type: ignore[attr-defined]
    return pred


def vector(pred: Predicate | None) -> Vec | None:
    """The columnar form of a compiled filter, or None when a part of it has none."""
    return getattr(pred, "vec", None) if pred is not None else None


def _both(pred: Predicate, cnf: list[frozenset[bytes]] | None, vec: Vec | None) -> Predicate:
    return _vec(_need(pred, cnf), vec)


#: A comparison of the filter language as a function: on a record's number or on a column of them alike.
_OPS = {"==": operator.eq, ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}


def _vcmp(a: np.ndarray, op: str, v: float) -> np.ndarray:
    return _OPS[op](a, v)


class FilterError(ValueError):
    """A filter that does not parse: what was expected, and where (0-based character position)."""

    def __init__(self, message: str, position: int):
        super().__init__(f"filter: {message} at position {position}")
        self.position = position


@dataclass
class _Tok:
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise FilterError(f"unexpected character {text[pos]!r}", pos)
            break
        if m.group(2) or m.group(3):
            start = m.start(2) if m.group(2) else m.start(3)
            out.append(_Tok(m.group(2) or m.group(3), start))
        pos = m.end()
    return out


def _addr_int(text: str | None) -> int | None:
    """An address's integer (IPv6 offset by 2**32, so families never compare equal), from the columns'
    parser (:func:`app.records.address_words`, cached)."""
    if text is None:
        return None
    fam, hi, lo = records.address_words(text)
    if fam == 6:
        return (hi << 64 | lo) + (1 << 32)
    return lo if fam == 4 else None


def _words(v: int) -> tuple[int, np.uint64, np.uint64]:
    """An address's integer of :func:`_addr_int` as (family, high word, low word), as columns hold them."""
    fam, v = (6, v - (1 << 32)) if v >= 1 << 32 else (4, v)
    return fam, np.uint64(v >> 64), np.uint64(v & ((1 << 64) - 1))


def _src(r: Record) -> str | None:
    return r.get(SRC4) or r.get(SRC6)


def _dst(r: Record) -> str | None:
    return r.get(DST4) or r.get(DST6)


def _net(text: str, pos: int) -> tuple[int, int]:
    """(low, high) integers of a network (IPv6 offset as in :func:`_addr_int`)."""
    try:
        n = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FilterError(f"{text!r} is not an address or a network", pos) from None
    off = 1 << 32 if n.version == 6 else 0
    return int(n.network_address) + off, int(n.broadcast_address) + off


def _number(tok: _Tok) -> int:
    text = tok.text.lower()
    scale = 1
    if text[-1:] in _SCALE:
        scale, text = _SCALE[text[-1]], text[:-1]
    try:
        return int(float(text) * scale) if "." in text else int(text, 0) * scale
    except ValueError:
        raise FilterError(f"expected a number, found {tok.text!r}", tok.pos) from None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    # -- tokens
    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j].text.lower() if j < len(self.toks) else None

    def take(self) -> _Tok:
        if self.i >= len(self.toks):
            raise FilterError("unexpected end of filter", len(self.text))
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> _Tok:
        tok = self.take()
        if tok.text.lower() != word:
            raise FilterError(f"expected {word!r}, found {tok.text!r}", tok.pos)
        return tok

    def where(self) -> int:
        return self.toks[self.i].pos if self.i < len(self.toks) else len(self.text)

    # -- grammar
    def parse(self) -> Predicate:
        if not self.toks:
            return _vec(lambda r: True, lambda c: np.ones(c.n, dtype=bool))
        pred = self.expr()
        if self.i < len(self.toks):
            tok = self.toks[self.i]
            raise FilterError(f"expected 'and', 'or' or the end, found {tok.text!r}", tok.pos)
        return pred

    def joined(self, words: tuple[str, str], operand: Callable[[], Predicate]) -> list[Predicate]:
        """Operands joined by one of ``words``."""
        parts = [operand()]
        while self.peek() in words:
            self.take()
            parts.append(operand())
        return parts

    def expr(self) -> Predicate:
        parts = self.joined(("or", "||"), self.term)
        if len(parts) == 1:
            return parts[0]
        cnfs = [_cnf(p) for p in parts]
        # a message holds a match of one part or another: one clause, the union of each part's first
        either = None if any(c is None for c in cnfs) else [frozenset().union(*(c[0] for c in cnfs if c))]
        vecs = [v for v in map(vector, parts) if v is not None]
        return _both(lambda r: any(p(r) for p in parts), either,
                     None if len(vecs) < len(parts) else lambda c: np.logical_or.reduce([v(c) for v in vecs]))

    def term(self) -> Predicate:
        parts = self.joined(("and", "&&"), self.factor)
        if len(parts) == 1:
            return parts[0]
        both = [c for p in parts for c in (_cnf(p) or [])]
        vecs = [v for v in map(vector, parts) if v is not None]
        return _both(lambda r: all(p(r) for p in parts), both or None,
                     None if len(vecs) < len(parts) else lambda c: np.logical_and.reduce([v(c) for v in vecs]))

    def factor(self) -> Predicate:
        word = self.peek()
        if word in ("not", "!"):
            self.take()
            inner = self.factor()
            vin = vector(inner)
            return _vec(lambda r: not inner(r), None if vin is None else lambda c: ~vin(c))
        if word == "(":
            self.take()
            inner = self.expr()
            if self.peek() != ")":
                raise FilterError("expected ')'", self.where())
            self.take()
            return inner
        return self.primitive()

    def comparison(self) -> str:
        word = self.peek()
        if word in _COMPARE:
            self.take()
            return _COMPARE[word]
        return "=="

    def primitive(self) -> Predicate:
        if self.i >= len(self.toks):
            raise FilterError("expected a filter primitive, found the end of filter", len(self.text))
        tok = self.toks[self.i]
        word = tok.text.lower()
        side = None
        if word in ("src", "dst"):
            side = word
            self.take()
            word = self.peek() or ""
        if word in ("host", "ip"):
            self.take()
            return self.hosts(side)
        if word == "net":
            self.take()
            return self.net(side)
        if word == "port":
            self.take()
            return self.port(side)
        if word == "vlan":
            self.take()
            v = _number(self.take())
            return _both(lambda r: r.get("vlanId") == v, [frozenset({_field_needle("vlanId", v)})],
                         lambda c: c.num("vlanId") == v)
        if side is not None:
            raise FilterError(f"expected host, ip, net, port or vlan after {side!r}", self.where())
        self.take()
        if word == "proto":
            p = self.take()
            num = PROTOCOLS.get(p.text.lower())
            num = _number(p) if num is None else num
            return _both(lambda r: r.get("protocolIdentifier") == num,
                         [frozenset({_field_needle("protocolIdentifier", num)})],
                         lambda c: c.num("protocolIdentifier") == num)
        if word in ("inet", "ipv4"):
            return _vec(lambda r: SRC4 in r, lambda c: ~c.v6())
        if word in ("inet6", "ipv6"):
            return _vec(lambda r: SRC6 in r, lambda c: c.v6())
        if word in PROTOCOLS:
            num = PROTOCOLS[word]
            return _both(lambda r: r.get("protocolIdentifier") == num,
                         [frozenset({_field_needle("protocolIdentifier", num)})],
                         lambda c: c.num("protocolIdentifier") == num)
        if word == "tos":
            return self.compare("ipClassOfService")
        if word == "flags":
            return self.flags()
        if word in ("packets", "bytes"):
            return self.compare("packetDeltaCount" if word == "packets" else "octetDeltaCount")
        if word == "duration":
            op, v = self.comparison(), _number(self.take())
            return _vec(_cmp(lambda r: r["flowEndMilliseconds"] - r["flowStartMilliseconds"], op, v),
                        lambda c: _vcmp(c.num("flowEndMilliseconds") - c.num("flowStartMilliseconds"), op, v))
        if word in ("pps", "bps", "bpp"):
            op, v = self.comparison(), _number(self.take())
            rate = _VRATES[word]
            return _vec(_cmp(_RATES[word], op, v), lambda c: _vcmp(rate(c), op, v))
        if word in ("icmp-type", "icmp-code"):
            v = _number(self.take())
            shift = word == "icmp-type"

            def icmp(c: Columns | TextColumns) -> np.ndarray:
                dport, proto = c.num("destinationTransportPort"), c.num("protocolIdentifier")
                return ((proto == 1) | (proto == 58)) & (((dport >> 8) if shift else (dport & 0xFF)) == v)
            return _vec(lambda r: (r.get("protocolIdentifier") in (1, 58)
                                   and (r["destinationTransportPort"] >> 8 if shift
                                        else r["destinationTransportPort"] & 0xFF) == v), icmp)
        if word in ("sensor", "ident"):
            name = self.take().text.strip("'\"")
            return _both(lambda r: r["flowsight"]["sensor"] == name,
                         [frozenset({b'"sensor":' + json.dumps(name).encode()})], lambda c: c.sensor() == name)
        if word == "late":
            return _vec(lambda r: bool(r["flowsight"].get("late")), lambda c: c.late())
        raise FilterError(f"expected a filter primitive, found {tok.text!r}", tok.pos)

    def compare(self, field: str) -> Predicate:
        op, v = self.comparison(), _number(self.take())
        return _vec(_cmp(lambda r: r[field], op, v), lambda c: _vcmp(c.num(field), op, v))

    def flags(self) -> Predicate:
        tok = self.take()
        want = 0
        for c in tok.text.upper():
            if c not in FLAGS:
                raise FilterError(f"unknown TCP flag {c!r} in {tok.text!r} (use A S F R P U X)", tok.pos)
            want |= FLAGS[c]
        return _vec(lambda r: r.get("tcpControlBits", 0) & want == want,
                    lambda c: c.num("tcpControlBits") & want == want)

    def _addresses(self) -> list[tuple[int, int]]:
        """One address or network, or ``in [ ... ]``: a list of them."""
        if self.peek() == "in":
            self.take()
            self.expect("[")
            out = []
            while self.peek() not in ("]", None):
                tok = self.take()
                if tok.text == ",":
                    continue
                out.append(_net(tok.text, tok.pos))
            if self.peek() is None:
                raise FilterError("expected ']'", len(self.text))
            self.take()
            if not out:
                raise FilterError("an empty list", self.where())
            return out
        tok = self.take()
        return [_net(tok.text, tok.pos)]

    def hosts(self, side: str | None) -> Predicate:
        nets = self._addresses()
        pred = _match_addr(side, nets)
        # IPv4 addresses one by one (their text has one form): a message must name one of them
        if all(lo == hi < (1 << 32) for lo, hi in nets):
            return _need(pred, [frozenset(f'"{ipaddress.IPv4Address(lo)}"'.encode() for lo, _ in nets)])
        return pred

    def net(self, side: str | None) -> Predicate:
        tok = self.take()
        text = tok.text
        if self.peek() == "/":
            self.take()
            text += "/" + self.take().text
        elif self.i < len(self.toks) and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", self.toks[self.i].text) \
                and "/" not in text:
            text += "/" + self.take().text   # net 10.0.0.0 255.0.0.0
        elif "/" not in text and ":" not in text:   # net 172.16 -> 172.16.0.0/16, as nfdump reads it
            octets = text.split(".")
            text = ".".join(octets + ["0"] * (4 - len(octets))) + f"/{8 * len(octets)}"
        return _match_addr(side, [_net(text, tok.pos)])

    def port(self, side: str | None) -> Predicate:
        if self.peek() == "in":
            self.take()
            self.expect("[")
            ports = set()
            while self.peek() not in ("]", None):
                tok = self.take()
                if tok.text != ",":
                    ports.add(_number(tok))
            if self.peek() is None:
                raise FilterError("expected ']'", len(self.text))
            self.take()
            wanted = np.array(sorted(ports), dtype=np.int64)
            return _need(_by_side(side, _vec(lambda r: r.get("sourceTransportPort") in ports,
                                             lambda c: np.isin(c.num("sourceTransportPort"), wanted)),
                                  _vec(lambda r: r.get("destinationTransportPort") in ports,
                                       lambda c: np.isin(c.num("destinationTransportPort"), wanted))),
                         _port_needles(side, ports))
        op, v = self.comparison(), _number(self.take())
        pred = _by_side(side, _vec(_cmp(lambda r: r["sourceTransportPort"], op, v),
                                   lambda c: _vcmp(c.num("sourceTransportPort"), op, v)),
                        _vec(_cmp(lambda r: r["destinationTransportPort"], op, v),
                             lambda c: _vcmp(c.num("destinationTransportPort"), op, v)))
        return _need(pred, _port_needles(side, {v}) if op == "==" else None)


def _port_needles(side: str | None, ports: set[int]) -> list[frozenset[bytes]]:
    names = {"src": ("sourceTransportPort",), "dst": ("destinationTransportPort",)}.get(
        side or "", ("sourceTransportPort", "destinationTransportPort"))
    return [frozenset(_field_needle(n, p) for n in names for p in ports)]


def _cmp(get: Callable[[Record], float], op: str, v: float) -> Predicate:
    compare = _OPS[op]
    return lambda r: compare(get(r), v)


def _duration_s(r: Record) -> float:
    return max(r["flowEndMilliseconds"] - r["flowStartMilliseconds"], 1) / 1000


def _vduration_s(c: Columns | TextColumns) -> np.ndarray:
    return np.maximum(c.num("flowEndMilliseconds") - c.num("flowStartMilliseconds"), 1) / 1000


_VRATES: dict[str, Vec] = {
    "pps": lambda c: c.num("packetDeltaCount") / _vduration_s(c),
    "bps": lambda c: (8 * c.num("octetDeltaCount")) / _vduration_s(c),
    "bpp": lambda c: c.num("octetDeltaCount") / np.maximum(c.num("packetDeltaCount"), 1),
}
_RATES: dict[str, Callable[[Record], float]] = {
    "pps": lambda r: r["packetDeltaCount"] / _duration_s(r),
    "bps": lambda r: 8 * r["octetDeltaCount"] / _duration_s(r),
    "bpp": lambda r: r["octetDeltaCount"] / max(r["packetDeltaCount"], 1),
}


def _by_side(side: str | None, src: Predicate, dst: Predicate) -> Predicate:
    if side == "src":
        return src
    if side == "dst":
        return dst
    vs, vd = vector(src), vector(dst)
    return _vec(lambda r: src(r) or dst(r), None if vs is None or vd is None else lambda c: vs(c) | vd(c))


def _match_addr(side: str | None, nets: list[tuple[int, int]]) -> Predicate:
    if len(nets) == 1:
        lo, hi = nets[0]

        def inside(a: int | None) -> bool:
            return a is not None and lo <= a <= hi
    else:
        def inside(a: int | None) -> bool:
            return a is not None and any(lo <= a <= hi for lo, hi in nets)

    words = [_words(lo) + _words(hi)[1:] for lo, hi in nets]

    def one(a: Address, f: int, lh: np.uint64, ll: np.uint64, hh: np.uint64, hl: np.uint64) -> np.ndarray:
        fam, ah, al = a
        if lh == hh:        # an IPv4 network, or an IPv6 one of /64 or longer: one high word
            inside = (al >= ll) & (al <= hl) if ll != hl else al == ll
            return inside & (fam == f) & (ah == lh) if f == 6 else inside & (fam == f)
        return (fam == f) & ((ah > lh) | ((ah == lh) & (al >= ll))) & ((ah < hh) | ((ah == hh) & (al <= hl)))

    def within(a: Address) -> np.ndarray:
        out = one(a, *words[0])
        for w in words[1:]:
            out |= one(a, *w)
        return out
    return _by_side(side, _vec(lambda r: inside(_addr_int(_src(r))), lambda c: within(c.addr("src"))),
                    _vec(lambda r: inside(_addr_int(_dst(r))), lambda c: within(c.addr("dst"))))


def compile_filter(text: str) -> Predicate:
    """The predicate of a filter (an empty filter passes everything); :class:`FilterError` if it does not
    parse."""
    if len(text) > 65536:
        raise FilterError("a filter of more than 64 KiB", 65536)
    return _Parser(text).parse()
