"""L2: a two-state (normal, event) Markov chain filtered over L1's p-values, so that a sustained moderate shift adds
up to a confident P(event)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PersistenceConfig:
    """Settings of :class:`Persistence`: the hidden event chain's onset and stay probabilities and the p-value law
    under an event."""

    onset: float = 0.002      #: P(normal -> event) per window
    stay: float = 0.9         #: P(event -> event): events last ~10 windows
    alpha: float = 0.2        #: p-values under an event follow Beta(alpha, 1)
    lag: int = 0              #: fixed-lag smoothing depth (0: filtering only)


class Persistence:
    """L2: forward filter of a two-state Markov-modulated event process over p-values, per row.

    Kept as log-odds, so that strong evidence does not saturate at probability 1.
    """

    def __init__(self, rows: int, cfg: PersistenceConfig = PersistenceConfig()):
        self.cfg = cfg
        self.logodds = np.full(rows, -50.0)   # log P(event) / P(normal) after the last window
        self._hist: list[tuple[np.ndarray, np.ndarray]] = []   # (filtered prob, likelihood ratio), for smoothing

    @property
    def prob(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logodds))

    def grow(self, rows: int) -> None:
        if rows > len(self.logodds):
            self.logodds = np.concatenate([self.logodds, np.full(rows - len(self.logodds), -50.0)])
            self._hist = []

    def log_lr(self, p: np.ndarray) -> np.ndarray:
        """log of Beta(alpha, 1) density over the uniform density at p."""
        a = self.cfg.alpha
        return math.log(a) + (a - 1.0) * np.log(np.maximum(np.asarray(p, float), 1e-300))

    def reset_rows(self, idx: np.ndarray) -> None:
        """Forget rows: no evidence of an event (a row reused by another entity starts over)."""
        self.logodds[idx] = -50.0

    def update(self, p: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Filter one window's p-values in; returns the log10-odds of an event for those rows."""
        c = self.cfg
        idx = slice(None) if rows is None else rows
        prev = 1.0 / (1.0 + np.exp(-self.logodds[idx]))
        prior = prev * c.stay + (1.0 - prev) * c.onset
        llr = self.log_lr(p)
        post = np.log(prior) - np.log1p(-prior) + llr
        self.logodds[idx] = post
        if c.lag and rows is None:
            self._hist.append((1.0 / (1.0 + np.exp(-post)), np.exp(np.minimum(llr, 700))))
            del self._hist[:-c.lag - 1]
        return post / math.log(10)

    def smoothed(self) -> np.ndarray | None:
        """P(event ``lag`` windows ago | everything so far): a backward pass over the last lag windows."""
        c = self.cfg
        if not c.lag or len(self._hist) <= c.lag:
            return None
        beta_e, beta_n = np.ones_like(self.logodds), np.ones_like(self.logodds)
        for _, lr in reversed(self._hist[1:]):
            # beta of the window before: sum over the next state of transition x emission x beta
            be = c.stay * lr * beta_e + (1 - c.stay) * beta_n
            bn = c.onset * lr * beta_e + (1 - c.onset) * beta_n
            s = be + bn
            beta_e, beta_n = be / s, bn / s
        f = self._hist[0][0]
        num = f * beta_e
        return num / (num + (1 - f) * beta_n)

    def state(self) -> dict:
        return {"logodds": self.logodds.tolist()}

    @classmethod
    def from_state(cls, s: dict, cfg: PersistenceConfig = PersistenceConfig()) -> Persistence:
        m = cls(len(s["logodds"]), cfg)
        m.logodds = np.array(s["logodds"], float)
        return m
