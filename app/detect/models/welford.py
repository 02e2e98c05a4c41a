"""L0: a running mean and variance per row, and the mean + 3 sigma rule (the talk's baseline)."""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from app.detect.models.base import Prediction


class Welford:
    """L0: running mean and variance per row (Welford), and the mean + 3 sigma rule.

    >>> w = Welford(1)
    >>> for v in (10, 12, 11, 9, 10):
    ...     w.learn([v])
    >>> bool(w.alarm([30])[0]), bool(w.alarm([11])[0])
    (True, False)
    >>> round(float(w.score([30]).z[0]), 1)
    17.2
    """

    def __init__(self, rows: int, sigmas: float = 3.0):
        self.n = 0
        self.mean = np.zeros(rows)
        self.m2 = np.zeros(rows)
        self.sigmas = sigmas

    def sd(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n - 1, 1))

    @property
    def rows(self) -> int:
        return len(self.mean)

    def zscore(self, x) -> np.ndarray:
        """z = (x - mean) / sd per row; 0 until two windows were seen."""
        if self.n < 2:
            return np.zeros(len(self.mean))
        return (np.asarray(x, float) - self.mean) / np.maximum(self.sd(), 1e-9)

    def score(self, x, t_ms: int = 0) -> Prediction:
        """The window against the running mean and sd (capture time plays no part in L0)."""
        z = self.zscore(x)
        sd = self.sd()
        p = np.where(self.n < 2, 1.0, ndtr(-z))
        return Prediction(p, z, self.mean.copy(), np.maximum(self.mean - self.sigmas * sd, 0),
                          self.mean + self.sigmas * sd, sd)

    def alarm(self, x) -> np.ndarray:
        return self.zscore(x) > self.sigmas

    def learn(self, x, t_ms: int = 0, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        """Add a window to the running mean and variance (every value: L0 is the unguarded baseline)."""
        assert rows is None, "L0 learns every row at once"
        x = np.asarray(x, float)
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def reset_rows(self, idx: np.ndarray) -> None:
        raise NotImplementedError("L0 keeps one mean over its rows' common history")

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> Welford:
        w = cls(len(s["mean"]))
        w.n, w.mean, w.m2 = s["n"], np.array(s["mean"], float), np.array(s["m2"], float)
        return w
