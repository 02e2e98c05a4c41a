"""Anomaly models for per-window traffic metrics: the detection ladder L0, L1 and L2, one model per module
(``welford``, ``seasonal``, ``log_seasonal``, ``persistence``) behind the :class:`~base.Detector` protocol
(``base``).

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
from app.detect.models.base import Detector, Prediction, combine, day_of_week, surprise
from app.detect.models.log_seasonal import LogSeasonal, LogSeasonalConfig
from app.detect.models.persistence import Persistence, PersistenceConfig
from app.detect.models.seasonal import Seasonal, SeasonalConfig, nb_sf
from app.detect.models.welford import Welford

__all__ = ["Detector", "LogSeasonal", "LogSeasonalConfig", "Persistence", "PersistenceConfig", "Prediction",
           "Seasonal", "SeasonalConfig", "Welford", "combine", "day_of_week", "nb_sf", "surprise"]
