"""What every model of the ladder shares: the :class:`Prediction` of a window, the :class:`Detector` protocol,
capture-time calendars and the scores thresholds are set on. Pure code."""
from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from app.records import DAY_MS

#: 1970-01-01 was a Thursday; Monday is day 0 here.
_EPOCH_DOW = 3


def day_of_week(t_ms: int) -> int:
    return (t_ms // DAY_MS + _EPOCH_DOW) % 7


class Prediction(NamedTuple):
    """What a detector says of one window, per row: ``p`` the upper-tail p-value of the value seen (1 where the
    row cannot tell yet), ``z`` its standardised excess, ``expected`` the expected value (NaN without history),
    ``low`` and ``high`` the band of normal values (3 sigma), and ``spread`` the law's own width (the negative
    binomial's shape k, or a standard deviation)."""

    p: np.ndarray
    z: np.ndarray
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray
    spread: np.ndarray


@runtime_checkable
class Detector(Protocol):
    """A model of one value per row and window: it scores a window, then learns from it (``p``: the window's
    p-values, so that what looks like an event is learnt only as the top of the band). Its state is plain
    JSON data, kept in table ``scoring``."""

    @property
    def rows(self) -> int: ...

    def score(self, x: np.ndarray, t_ms: int) -> Prediction: ...

    def learn(self, x: np.ndarray, t_ms: int, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None: ...

    def reset_rows(self, idx: np.ndarray) -> None: ...

    def state(self) -> dict: ...


def combine(p: np.ndarray) -> float:
    """One p-value for a window from several metrics' p-values (Bonferroni: min times count)."""
    p = np.asarray(p, float)
    return float(min(1.0, p.min() * len(p))) if len(p) else 1.0


def surprise(p: np.ndarray | float) -> np.ndarray | float:
    """-log10 p, the score thresholds are set on."""
    return -np.log10(np.maximum(p, 1e-300))
