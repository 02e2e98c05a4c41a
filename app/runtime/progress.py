"""Forward-progress marks of this worker's components, for /v1/health. Pure code."""
from __future__ import annotations

import time
from collections import defaultdict

_last: dict[str, float] = {}
_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def mark(component: str, **counts: int) -> None:
    """Record that ``component`` made progress now, adding ``counts`` to its totals."""
    _last[component] = time.time()
    for name, value in counts.items():
        _counts[component][name] += value


def changed_since(t: float) -> bool:
    """Whether any component made progress after time ``t`` (seconds since the epoch)."""
    return any(v > t for v in _last.values())


def last_times() -> dict[str, float]:
    """When each component last made progress (Unix time, seconds)."""
    return dict(_last)


def snapshot() -> dict[str, dict]:
    now = time.time()
    return {c: {"last_progress_s_ago": round(now - t, 3), **_counts[c]} for c, t in sorted(_last.items())}
