"""Sets of chunk indexes kept as sorted, disjoint ``[lo, hi]`` ranges (usually a single one).

Used to remember which chunks of a block were applied, in table rows that are
rewritten on every change: a contiguous run costs two numbers however long it is.
"""
from __future__ import annotations


def contains(ranges: list[list[int]] | None, i: int) -> bool:
    return any(lo <= i <= hi for lo, hi in ranges or ())


def add(ranges: list[list[int]] | None, i: int) -> list[list[int]]:
    """A new range list holding ``i`` too, with neighbours merged."""
    return union(ranges, [[i, i]])


def union(a: list[list[int]] | None, b: list[list[int]] | None) -> list[list[int]]:
    """A new range list holding the indexes of both, with neighbours merged."""
    out = sorted([list(r) for r in a or ()] + [list(r) for r in b or ()])
    merged: list[list[int]] = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def contains_all(ranges: list[list[int]] | None, n: int) -> bool:
    """Whether every index 0..n-1 is in the ranges."""
    return n == 0 or any(lo <= 0 and hi >= n - 1 for lo, hi in ranges or ())
