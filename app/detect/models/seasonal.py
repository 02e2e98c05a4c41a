"""L1 for counts: seasonal Poisson rates in the manner of Ihler, Hutchins and Smyth (KDD 2006), with a
negative binomial predictive law."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from app.detect.models.base import Prediction, day_of_week
from app.records import DAY_MS


def nb_sf(x: np.ndarray, mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``P(X >= x)`` for X negative binomial with the given mean and shape k (variance mean + mean^2/k).

    x may be fractional (bytes are not counts of independent events); it is
    rounded down. ``P(X >= 0) = 1``.
    """
    x = np.floor(np.asarray(x, dtype=np.float64))
    mean = np.maximum(np.asarray(mean, dtype=np.float64), 1e-9)
    k = np.asarray(k, dtype=np.float64)
    q = mean / (k + mean)
    out = np.ones(np.broadcast(x, mean, k).shape)
    pos = np.broadcast_to(x > 0, out.shape)
    xb, kb, qb = (np.broadcast_to(v, out.shape) for v in (x, k, q))
    out[pos] = betainc(xb[pos], kb[pos], qb[pos])
    return out


@dataclass(frozen=True)
class SeasonalConfig:
    """Settings of :class:`Seasonal`: slot length, day types, forgetting and the priors of its rates."""

    slot_ms: int = 1_800_000          #: time-of-day slot (30 min)
    day_types: int = 2                #: 2: weekday and weekend; 7: every day of the week; 1: every day alike
    memory: float = 60.0              #: forgetting: each slot weighs its last ~memory updates
    level_memory: float = 12.0        #: windows the "today level" averages over
    disp_memory: float = 500.0        #: windows the dispersion estimate averages over
    clip_p: float = 1e-3              #: windows with p below this update the model clipped
    min_weight: float = 2.0           #: slot evidence needed before it predicts alone
    max_loglevel: float = 3.0         #: the level stays within a factor e^3 (20) of the seasonal profile
    level_reversion: float = 288.0    #: windows over which the level returns to the profile when nothing moves it


class Seasonal:
    """L1: Gamma rates per (row, day type, slot) with forgetting, a level per row, NB p-values.

    Fourteen days of a busy daytime (100 per hour) and a quiet night (10): at 10:00 the model expects 100,
    and the same 100 at 02:00 is very unlikely.

    >>> s, hour, day = Seasonal(1), 3_600_000, 86_400_000
    >>> for d in range(14):
    ...     for h in range(24):
    ...         s.learn(np.array([100.0 if 8 <= h < 18 else 10.0]), d * day + h * hour)
    >>> round(float(s.predict(14 * day + 10 * hour)[0][0]))
    100
    >>> bool(s.score(np.array([100.0]), 14 * day + 2 * hour).p[0] < 1e-5)
    True
    """

    def __init__(self, rows: int, cfg: SeasonalConfig = SeasonalConfig()):
        self.cfg = cfg
        self.slots = DAY_MS // cfg.slot_ms
        shape = (rows, cfg.day_types, self.slots)
        self.a = np.zeros(shape)      # Gamma shape: forgotten sum of level-free values
        self.b = np.zeros(shape)      # Gamma rate: forgotten count of updates
        self.loglevel = np.zeros(rows)
        self.disp = np.full(rows, 0.05)   # variance of log(x / mean); 1/k plus the Poisson part
        self.n = np.zeros(rows)

    @property
    def rows(self) -> int:
        return len(self.loglevel)

    def grow(self, rows: int) -> None:
        """Add rows (new entities) with no history."""
        extra = rows - self.rows
        if extra <= 0:
            return
        z = np.zeros((extra, *self.a.shape[1:]))
        self.a = np.concatenate([self.a, z])
        self.b = np.concatenate([self.b, z.copy()])
        self.loglevel = np.concatenate([self.loglevel, np.zeros(extra)])
        self.disp = np.concatenate([self.disp, np.full(extra, 0.05)])
        self.n = np.concatenate([self.n, np.zeros(extra)])

    def reset_rows(self, idx: np.ndarray) -> None:
        """Forget rows (an evicted entity's row is reused by another)."""
        self.a[idx] = 0
        self.b[idx] = 0
        self.loglevel[idx] = 0
        self.disp[idx] = 0.05
        self.n[idx] = 0

    def _where(self, t_ms: int) -> tuple[int, int, int, float]:
        """Day type and the two slots around t, with the weight of the first."""
        cfg = self.cfg
        dow = day_of_week(t_ms)
        d = {1: 0, 2: int(dow >= 5), 7: dow}[cfg.day_types]
        s = int(t_ms % DAY_MS) // cfg.slot_ms
        return d, s, s, 1.0   # one slot: a step profile

    def base(self, t_ms: int) -> np.ndarray:
        """Level-free expected value per row at t (NaN where a row has no history)."""
        d, s0, s1, w0 = self._where(t_ms)
        a = w0 * self.a[:, d, s0] + (1 - w0) * self.a[:, d, s1]
        b = w0 * self.b[:, d, s0] + (1 - w0) * self.b[:, d, s1]
        out = np.where(b >= self.cfg.min_weight, a / np.maximum(b, 1e-12), np.nan)
        # a slot not yet learnt borrows the row's mean over every slot seen so far
        bad = np.isnan(out)
        if bad.any():
            tot_b = self.b[bad].sum(axis=(1, 2))
            tot_a = self.a[bad].sum(axis=(1, 2))
            out[bad] = np.where(tot_b >= self.cfg.min_weight, tot_a / np.maximum(tot_b, 1e-12), np.nan)
        return out

    def predict(self, t_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected value and NB shape k per row at t."""
        mean = np.exp(self.loglevel) * self.base(t_ms)
        k = 1.0 / np.maximum(self.disp - 1.0 / (np.nan_to_num(mean) + 0.5), 1e-4)
        return mean, k

    def score(self, x: np.ndarray, t_ms: int) -> Prediction:
        """Upper-tail p-value per row (1 where the row cannot predict yet), with the prediction; ``spread`` is
        the negative binomial's shape k."""
        mean, k = self.predict(t_ms)
        ok = ~np.isnan(mean)
        p = np.ones(self.rows)
        x = np.asarray(x, float)
        if ok.any():
            p[ok] = nb_sf(x[ok], mean[ok], k[ok])
        expected = np.nan_to_num(mean)
        sd = self._sd(expected, k)
        low, high = self._band(expected, k)
        return Prediction(p, (x - expected) / np.maximum(sd, 1e-9), mean, low, high, k)

    @staticmethod
    def _sd(mean: np.ndarray, k: np.ndarray) -> np.ndarray:
        return np.sqrt(mean + mean * mean / k)

    @classmethod
    def _band(cls, mean: np.ndarray, k: np.ndarray, sigmas: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        sd = cls._sd(mean, k)
        return np.maximum(mean - sigmas * sd, 0), mean + sigmas * sd

    def learn(self, x: np.ndarray, t_ms: int, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        """Learn from a window (all rows, or only ``rows``, with x and p aligned to them).

        Values whose p-value is below ``clip_p`` are clipped to the top of the
        expected band (mean + 3 sd) first, so that an attack is not learnt. A value as unlikely below, and
        under a twentieth of what was expected (an outage, a capture that stopped), teaches nothing: the slot and
        the level keep what they had (a quiet day, a holiday, is learnt through the level). The level
        is bounded (``max_loglevel``) and returns to the profile over ``level_reversion`` windows, so that
        it cannot wander off while the slots' profile absorbs it (they are learnt relative to it)."""
        cfg = self.cfg
        x = np.asarray(x, float)                       # aligned with ``rows`` when given
        idx = np.arange(self.rows) if rows is None else np.asarray(rows)
        mean, k = self.predict(t_ms)
        mean, k = mean[idx], k[idx]
        known = ~np.isnan(mean)
        d, s0, s1, w0 = self._where(t_ms)
        # only a slot with history of its own can call a value an event: a slot borrowing the
        # row's overall mean (the first day) learns what it sees, e.g. a nightly backup
        own = (w0 * self.b[idx, d, s0] + (1 - w0) * self.b[idx, d, s1]) >= cfg.min_weight
        if p is not None:
            hi = self._band(np.nan_to_num(mean), k)[1]
            x = np.where(known & own & (np.asarray(p) < cfg.clip_p), np.minimum(x, hi), x)
        # far below the band: an outage, learnt as nothing
        m0 = np.nan_to_num(mean)
        low = known & own & (x < m0 * np.exp(-cfg.max_loglevel)) & (1.0 - nb_sf(x + 1, m0, k) < cfg.clip_p)
        learn = ~low
        level = np.exp(self.loglevel[idx])
        g = 1.0 - 1.0 / cfg.memory
        for s, w in ((s0, w0), (s1, 1.0 - w0)):
            if w <= 0:
                continue
            gw = np.where(learn, g ** w, 1.0)
            self.a[idx, d, s] = gw * self.a[idx, d, s] + np.where(learn, w * x / level, 0.0)
            self.b[idx, d, s] = gw * self.b[idx, d, s] + np.where(learn, w, 0.0)
        # the level follows recent windows relative to the seasonal base
        base = self.base(t_ms)[idx]
        okb = known & own & learn & ~np.isnan(base) & (base > 0)
        r = np.log((x + 0.5) / (np.nan_to_num(base) + 0.5))
        bl = 1.0 / cfg.level_memory
        moved = np.where(okb, (1 - bl) * self.loglevel[idx] + bl * r, self.loglevel[idx])
        self.loglevel[idx] = np.clip(moved * (1.0 - 1.0 / cfg.level_reversion), -cfg.max_loglevel, cfg.max_loglevel)
        # dispersion: variance of the log residual against the prediction, robust to outliers
        res = np.log((x + 0.5) / (np.nan_to_num(mean) + 0.5)) ** 2
        cur = self.disp[idx]
        res = np.minimum(res, 9.0 * np.maximum(cur, 0.01))
        bd = 1.0 / min(cfg.disp_memory, max(self.n[idx].min() + 1, 20.0))
        self.disp[idx] = np.where(known, (1 - bd) * cur + bd * res, cur)
        self.n[idx] += 1

    def state(self) -> dict:
        return {"a": self.a.tolist(), "b": self.b.tolist(), "loglevel": self.loglevel.tolist(),
                "disp": self.disp.tolist(), "n": self.n.tolist()}

    @classmethod
    def from_state(cls, s: dict, cfg: SeasonalConfig = SeasonalConfig()) -> Seasonal:
        m = cls(len(s["loglevel"]), cfg)
        m.a, m.b = np.array(s["a"], float), np.array(s["b"], float)
        m.loglevel, m.disp, m.n = (np.array(s[k], float) for k in ("loglevel", "disp", "n"))
        return m
