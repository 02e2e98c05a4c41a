"""The status registry: each agent registers what it reports, and the views (health, metrics) read it here,
so that no view imports an agent and no agent imports a view.

>>> register("example", lambda: {"ok": True})
>>> read("example")
{'ok': True}
>>> read("nothing registered")
{}
"""
from __future__ import annotations

from collections.abc import Callable

_sources: dict[str, Callable[[], dict]] = {}


def register(name: str, report: Callable[[], dict]) -> None:
    """``report()`` answers for component ``name`` (a later registration replaces an earlier one)."""
    _sources[name] = report


def read(name: str) -> dict:
    """What component ``name`` reports now; ``{}`` if it is not running on this worker."""
    report = _sources.get(name)
    return report() if report is not None else {}


def names() -> list[str]:
    return sorted(_sources)
