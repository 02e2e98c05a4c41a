"""L1 for heavy-tailed volumes per entity (one inside host's bytes): a lognormal per time-of-day slot."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.detect.models.base import Prediction, day_of_week
from app.records import DAY_MS


@dataclass(frozen=True)
class LogSeasonalConfig:
    """Settings of :class:`LogSeasonal`: slot length, day types and the memories of its level and residual variance."""

    slot_ms: int = 3_600_000          #: time-of-day slot (1 h)
    day_types: int = 1
    memory: float = 20.0              #: each slot weighs its last ~memory updates
    var_memory: float = 200.0         #: windows the residual variance averages over
    clip_p: float = 1e-3
    min_weight: float = 3.0
    min_value: float = 1e6            #: values below this are never anomalous (p = 1): 1 MB per window
    var_floor: float = 0.25


class LogSeasonal:
    """L1 for heavy-tailed per-entity volumes (one inside host's bytes): lognormal per slot.

    Bytes sent by one host in a window are a sum of heavy-tailed flow sizes, far
    from any count law, so this model works on ``y = log1p(x)``: a forgotten mean
    per (row, day type, slot) and one robust residual variance per row; the
    p-value is the normal upper tail of the standardised residual.
    """

    def __init__(self, rows: int, cfg: LogSeasonalConfig = LogSeasonalConfig()):
        self.cfg = cfg
        self.slots = DAY_MS // cfg.slot_ms
        shape = (rows, cfg.day_types, self.slots)
        self.a = np.zeros(shape)          # forgotten sum of y
        self.b = np.zeros(shape)          # forgotten count
        self.var = np.full(rows, 4.0)     # residual variance of y
        self.n = np.zeros(rows)

    @property
    def rows(self) -> int:
        return len(self.var)

    def grow(self, rows: int) -> None:
        extra = rows - self.rows
        if extra > 0:
            z = np.zeros((extra, *self.a.shape[1:]))
            self.a, self.b = np.concatenate([self.a, z]), np.concatenate([self.b, z.copy()])
            self.var = np.concatenate([self.var, np.full(extra, 4.0)])
            self.n = np.concatenate([self.n, np.zeros(extra)])

    def reset_rows(self, idx: np.ndarray) -> None:
        self.a[idx], self.b[idx], self.var[idx], self.n[idx] = 0, 0, 4.0, 0

    def _where(self, t_ms: int) -> tuple[int, int]:
        dow = day_of_week(t_ms)
        d = {1: 0, 2: int(dow >= 5), 7: dow}[self.cfg.day_types]
        return d, int(t_ms % DAY_MS) // self.cfg.slot_ms

    def predict(self, t_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected y = log1p(x) per row (NaN while a slot has too little history), and its sd."""
        d, s = self._where(t_ms)
        b = self.b[:, d, s]
        mu = np.where(b >= self.cfg.min_weight, self.a[:, d, s] / np.maximum(b, 1e-12), np.nan)
        return mu, np.sqrt(self.var)

    def score(self, x: np.ndarray, t_ms: int, sigmas: float = 3.0) -> Prediction:
        """Upper-tail p-value per row (1 without history, or below ``min_value``); ``z`` and ``spread`` are in
        log1p units (``spread``: the residual sd), the band in the value's own."""
        from scipy.special import ndtr
        mu, sd = self.predict(t_ms)
        y = np.log1p(np.asarray(x, float))
        z = (y - np.nan_to_num(mu)) / sd
        p = np.where(np.isnan(mu) | (y < math.log1p(self.cfg.min_value)), 1.0, ndtr(-z))
        return Prediction(p, z, np.expm1(mu), np.expm1(np.maximum(mu - sigmas * sd, 0)), np.expm1(mu + sigmas * sd),
                          sd)

    def learn(self, x: np.ndarray, t_ms: int, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        cfg = self.cfg
        idx = np.arange(self.rows) if rows is None else np.asarray(rows)
        y = np.log1p(np.asarray(x, float))
        mu, sd = self.predict(t_ms)
        mu, sd = mu[idx], sd[idx]
        known = ~np.isnan(mu)
        if p is not None:
            y = np.where(known & (np.asarray(p) < cfg.clip_p), np.minimum(y, mu + 3 * sd), y)
        d, s = self._where(t_ms)
        g = 1.0 - 1.0 / cfg.memory
        self.a[idx, d, s] = g * self.a[idx, d, s] + y
        self.b[idx, d, s] = g * self.b[idx, d, s] + 1.0
        res = np.minimum((y - np.nan_to_num(mu)) ** 2, 9.0 * self.var[idx])
        bv = 1.0 / cfg.var_memory
        self.var[idx] = np.where(known, np.maximum((1 - bv) * self.var[idx] + bv * res, cfg.var_floor), self.var[idx])
        self.n[idx] += 1

    def state(self) -> dict:
        return {"a": self.a.tolist(), "b": self.b.tolist(), "var": self.var.tolist(), "n": self.n.tolist()}

    @classmethod
    def from_state(cls, s: dict, cfg: LogSeasonalConfig = LogSeasonalConfig()) -> LogSeasonal:
        m = cls(len(s["var"]), cfg)
        m.a, m.b, m.var, m.n = (np.array(s[k], float) for k in ("a", "b", "var", "n"))
        return m
