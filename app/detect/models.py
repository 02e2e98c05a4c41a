"""Anomaly models for per-window traffic metrics: the detection ladder L0, L1 and L2.

Pure code (no Faust), vectorised with numpy over *rows*: a row is one series,
for example one metric of one sensor, or the bytes sent by one inside host.

- **L0** (:class:`Welford`) keeps a running mean and variance per row and flags a
  window whose value exceeds mean + 3 sigma. It is the talk's baseline, kept as
  the reference.
- **L1** (:class:`Seasonal`) is an online form of Ihler, Hutchins and Smyth (KDD
  2006): a rate per (day type, time-of-day slot) held as a Gamma posterior with
  exponential forgetting, times a "today level" that follows day-to-day drift.
  The predictive law of a count is negative binomial: Poisson given the rate, the
  rate Gamma with a shape ``k`` learnt from the data, because real traffic is
  over-dispersed and pure Poisson p-values alarm constantly. Each window gets the
  upper tail p-value ``P(X >= x)``. A window that looks like an event updates the
  model only with a value clipped to the top of the expected band, so an attack
  is not learnt as normal.
- **L2** (:class:`Persistence`) filters a two-state (normal, event) Markov chain
  forward over L1's p-values, in O(1) per window: under "normal" a p-value is
  uniform, under "event" it follows Beta(alpha, 1), which favours small values.
  A sustained moderate shift, none of whose windows is extreme alone, adds up
  to a confident P(event).

Times are capture times in ms since the epoch (UTC), never this process's clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

DAY_MS = 86_400_000
#: 1970-01-01 was a Thursday; Monday is day 0 here.
_EPOCH_DOW = 3


def day_of_week(t_ms: int) -> int:
    return (t_ms // DAY_MS + _EPOCH_DOW) % 7


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


class Welford:
    """L0: running mean and variance per row (Welford), and the mean + 3 sigma rule.

    >>> w = Welford(1)
    >>> for v in (10, 12, 11, 9, 10):
    ...     w.update([v])
    >>> bool(w.alarm([30])[0]), bool(w.alarm([11])[0])
    (True, False)
    """

    def __init__(self, rows: int, sigmas: float = 3.0):
        self.n = 0
        self.mean = np.zeros(rows)
        self.m2 = np.zeros(rows)
        self.sigmas = sigmas

    def sd(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n - 1, 1))

    def score(self, x: np.ndarray) -> np.ndarray:
        """z = (x - mean) / sd per row; 0 until two windows were seen."""
        if self.n < 2:
            return np.zeros(len(self.mean))
        return (np.asarray(x, float) - self.mean) / np.maximum(self.sd(), 1e-9)

    def alarm(self, x: np.ndarray) -> np.ndarray:
        return self.score(x) > self.sigmas

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, float)
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> Welford:
        w = cls(len(s["mean"]))
        w.n, w.mean, w.m2 = s["n"], np.array(s["mean"], float), np.array(s["m2"], float)
        return w


@dataclass(frozen=True)
class SeasonalConfig:
    """Settings of :class:`Seasonal`: slot length, day types, forgetting and the priors of its rates."""

    slot_ms: int = 1_800_000          #: time-of-day slot (30 min)
    interpolate: bool = False         #: blend the two nearest slot centres (smooth profiles) or not (steps)
    day_types: int = 2                #: 2: weekday and weekend; 7: every day of the week; 1: every day alike
    memory: float = 60.0              #: forgetting: each slot weighs its last ~memory updates
    level_memory: float = 12.0        #: windows the "today level" averages over
    disp_memory: float = 500.0        #: windows the dispersion estimate averages over
    clip_p: float = 1e-3              #: windows with p below this update the model clipped
    min_weight: float = 2.0           #: slot evidence needed before it predicts alone


class Seasonal:
    """L1: Gamma rates per (row, day type, slot) with forgetting, a level per row, NB p-values.

    Fourteen days of a busy daytime (100 per hour) and a quiet night (10): at 10:00 the model expects 100,
    and the same 100 at 02:00 is very unlikely.

    >>> s, hour, day = Seasonal(1), 3_600_000, 86_400_000
    >>> for d in range(14):
    ...     for h in range(24):
    ...         s.update(np.array([100.0 if 8 <= h < 18 else 10.0]), d * day + h * hour)
    >>> round(float(s.predict(14 * day + 10 * hour)[0][0]))
    100
    >>> bool(s.score(np.array([100.0]), 14 * day + 2 * hour)[0][0] < 1e-5)
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
        if not cfg.interpolate:
            s = int(t_ms % DAY_MS) // cfg.slot_ms
            return d, s, s, 1.0
        pos = (t_ms % DAY_MS) / cfg.slot_ms - 0.5     # in slot-centre units
        s0 = math.floor(pos)
        f = pos - s0
        return d, s0 % self.slots, (s0 + 1) % self.slots, 1.0 - f

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

    def score(self, x: np.ndarray, t_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Upper-tail p-value per row (1 where the row cannot predict yet), with the prediction."""
        mean, k = self.predict(t_ms)
        ok = ~np.isnan(mean)
        p = np.ones(self.rows)
        if ok.any():
            p[ok] = nb_sf(np.asarray(x, float)[ok], mean[ok], k[ok])
        return p, mean, k

    def band(self, mean: np.ndarray, k: np.ndarray, sigmas: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        sd = np.sqrt(mean + mean * mean / k)
        return np.maximum(mean - sigmas * sd, 0), mean + sigmas * sd

    def update(self, x: np.ndarray, t_ms: int, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        """Learn from a window (all rows, or only ``rows``, with x and p aligned to them).

        Values whose p-value is below ``clip_p`` are clipped to the top of the
        expected band (mean + 3 sd) first, so that an attack is not learnt."""
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
            hi = self.band(np.nan_to_num(mean), k)[1]
            x = np.where(known & own & (np.asarray(p) < cfg.clip_p), np.minimum(x, hi), x)
        level = np.exp(self.loglevel[idx])
        g = 1.0 - 1.0 / cfg.memory
        for s, w in ((s0, w0), (s1, 1.0 - w0)):
            if w <= 0:
                continue
            gw = g ** w
            self.a[idx, d, s] = gw * self.a[idx, d, s] + w * x / level
            self.b[idx, d, s] = gw * self.b[idx, d, s] + w
        # the level follows recent windows relative to the seasonal base
        base = self.base(t_ms)[idx]
        okb = known & own & ~np.isnan(base) & (base > 0)
        r = np.log((x + 0.5) / (np.nan_to_num(base) + 0.5))
        bl = 1.0 / cfg.level_memory
        self.loglevel[idx] = np.where(okb, (1 - bl) * self.loglevel[idx] + bl * r, self.loglevel[idx])
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


def combine(p: np.ndarray) -> float:
    """One p-value for a window from several metrics' p-values (Bonferroni: min times count)."""
    p = np.asarray(p, float)
    return float(min(1.0, p.min() * len(p))) if len(p) else 1.0


def surprise(p: np.ndarray | float) -> np.ndarray | float:
    """-log10 p, the score thresholds are set on."""
    return -np.log10(np.maximum(p, 1e-300))


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

    def score(self, x: np.ndarray, t_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from scipy.special import ndtr
        mu, sd = self.predict(t_ms)
        y = np.log1p(np.asarray(x, float))
        p = np.where(np.isnan(mu) | (y < math.log1p(self.cfg.min_value)), 1.0, ndtr(-(y - np.nan_to_num(mu)) / sd))
        return p, np.expm1(mu), sd

    def band(self, t_ms: int, sigmas: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = self.predict(t_ms)
        return np.expm1(np.maximum(mu - sigmas * sd, 0)), np.expm1(mu + sigmas * sd)

    def update(self, x: np.ndarray, t_ms: int, p: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
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
