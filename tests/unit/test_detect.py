"""The detection ladder, attention control and window summaries, on small hand-computed cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from app.detect.attention import Attention, AttentionConfig, calibrate, count_alerts
from app.detect.models import (LogSeasonal, Persistence, PersistenceConfig, Seasonal, SeasonalConfig, Welford, combine,
                        day_of_week, nb_sf, surprise)
from app.detect.scorer import ScoreConfig, SensorScorer
from app.flows.summary import METRICS, Home, Summary, summarize_columns

MON = 1_767_571_200_000   # Monday 2026-01-05 00:00 UTC
W = 300_000


def nb_pmf(j: int, mean: float, k: float) -> float:
    q = mean / (k + mean)
    return math.exp(math.lgamma(j + k) - math.lgamma(k) - math.lgamma(j + 1) + k * math.log(1 - q) + j * math.log(q))


@pytest.mark.parametrize("x,mean,k", [(10, 4.0, 2.0), (3, 4.0, 0.5), (1, 0.2, 5.0), (25, 12.0, 30.0)])
def test_nb_tail_is_the_sum_of_the_pmf(x, mean, k):
    want = 1.0 - sum(nb_pmf(j, mean, k) for j in range(x))
    assert nb_sf(np.array([x]), np.array([mean]), np.array([k]))[0] == pytest.approx(want, rel=1e-9)


def test_nb_tail_tends_to_poisson_and_is_one_at_zero():
    poisson = 1.0 - sum(math.exp(-5) * 5 ** j / math.factorial(j) for j in range(9))
    assert nb_sf(np.array([9]), np.array([5.0]), np.array([1e9]))[0] == pytest.approx(poisson, rel=1e-6)
    assert nb_sf(np.array([0]), np.array([5.0]), np.array([2.0]))[0] == 1.0


def test_day_of_week():
    assert day_of_week(MON) == 0
    assert day_of_week(MON + 5 * 86_400_000 + 1) == 5   # Saturday


def test_welford_mean_variance_and_three_sigma():
    w = Welford(1)
    for v in (1.0, 2.0, 3.0, 4.0):
        w.learn(np.array([v]))
    assert w.mean[0] == 2.5
    assert w.sd()[0] == pytest.approx(math.sqrt(5 / 3))
    limit = 2.5 + 3 * math.sqrt(5 / 3)
    assert not w.alarm(np.array([limit - 0.01]))[0]
    assert w.alarm(np.array([limit + 0.01]))[0]
    assert Welford.from_state(json.loads(json.dumps(w.state()))).mean[0] == 2.5


def test_seasonal_slot_rate_with_forgetting():
    cfg = SeasonalConfig(memory=2.0, level_memory=1e12, min_weight=1.0, day_types=1)   # g = 1/2
    m = Seasonal(1, cfg)
    for _ in range(40):
        m.learn(np.array([100.0]), MON)
    assert m.predict(MON)[0][0] == pytest.approx(100.0)          # a -> 200, b -> 2
    m.learn(np.array([200.0]), MON)                              # a = 100 + 200, b = 1 + 1
    assert m.predict(MON)[0][0] == pytest.approx(150.0)
    assert np.isnan(Seasonal(1, cfg).predict(MON)[0][0])          # no history: no prediction
    other = MON + 12 * 3_600_000                                  # another slot borrows the row's mean
    assert m.predict(other)[0][0] == pytest.approx(150.0)


def test_seasonal_clips_events_and_scores_them():
    cfg = SeasonalConfig(memory=2.0, level_memory=1e12, min_weight=1.0, day_types=1)
    m = Seasonal(1, cfg)
    for i in range(200):
        m.learn(np.array([100.0 + (i % 3 - 1) * 10]), MON)
    assert m.score(np.array([100.0]), MON).p[0] > 0.3
    pred = m.score(np.array([1000.0]), MON)
    p = pred.p
    assert p[0] < 1e-6
    hi = pred.high[0]
    before = m.a[0, 0, 0], m.b[0, 0, 0]
    m.learn(np.array([1000.0]), MON, p)                          # learnt as the top of the band only
    assert m.a[0, 0, 0] == pytest.approx(before[0] / 2 + hi)
    assert m.b[0, 0, 0] == pytest.approx(before[1] / 2 + 1)


def test_seasonal_keeps_weekday_and_weekend_apart():
    m = Seasonal(1, SeasonalConfig(min_weight=1.0, level_memory=1e12))
    for day in range(14):
        t = MON + day * 86_400_000
        m.learn(np.array([10.0 if day % 7 >= 5 else 100.0]), t)
    assert m.predict(MON + 14 * 86_400_000)[0][0] == pytest.approx(100.0)
    assert m.predict(MON + 19 * 86_400_000)[0][0] == pytest.approx(10.0)


def test_state_round_trip_scores_the_same():
    m = Seasonal(2)
    rng = np.random.default_rng(1)
    for i in range(300):
        m.learn(rng.poisson(50, 2).astype(float), MON + i * W)
    m2 = Seasonal.from_state(json.loads(json.dumps(m.state())))
    x = np.array([70.0, 40.0])
    assert np.allclose(m.score(x, MON + 301 * W).p, m2.score(x, MON + 301 * W).p)


def test_log_seasonal_ignores_small_values_and_flags_big_ones():
    m = LogSeasonal(2)
    rng = np.random.default_rng(2)
    for i in range(24 * 12 * 4):
        m.learn(np.array([rng.lognormal(14, 0.3), rng.lognormal(8, 1.0)]), MON + i * W)
    t = MON + 24 * 12 * 4 * W
    p = m.score(np.array([math.exp(14), 5e5]), t).p
    assert p[0] > 0.2 and p[1] == 1.0                              # row 1: below the 1 MB minimum
    p = m.score(np.array([math.exp(14) * 20, 3e7]), t).p
    assert p[0] < 1e-6 and p[1] < 1e-6


def test_persistence_one_step_by_hand():
    f = Persistence(1, PersistenceConfig(onset=0.002, stay=0.9, alpha=0.2))
    lr = 0.2 * 0.01 ** -0.8
    want = math.log10(0.002 / 0.998 * lr)
    assert f.update(np.array([0.01]))[0] == pytest.approx(want, abs=1e-9)
    prev = f.prob[0]
    prior = prev * 0.9 + (1 - prev) * 0.002
    assert f.update(np.array([0.01]))[0] == pytest.approx(math.log10(prior / (1 - prior) * lr), abs=1e-9)


def test_persistence_adds_up_a_sustained_shift_and_forgets_it():
    f = Persistence(1)
    odds = [f.update(np.array([0.02]))[0] for _ in range(8)]
    assert odds[0] < 0 < odds[-1]                                 # no window alone, the run together
    assert all(b > a for a, b in zip(odds, odds[1:4]))
    calm = [f.update(np.array([0.6]))[0] for _ in range(10)]
    assert calm[-1] < -2


def test_persistence_smoothing_raises_the_start_of_an_event():
    f = Persistence(1, PersistenceConfig(lag=3))
    for p in (0.5, 0.5, 0.05, 1e-4, 1e-4, 1e-4):
        f.update(np.array([p]))
    filtered_then = f._hist[0][0][0]                              # the p=0.05 window as filtered
    assert f.smoothed()[0] > filtered_then


def test_combine_and_surprise():
    assert combine(np.array([0.5, 0.001, 0.2])) == pytest.approx(0.003)
    assert combine(np.array([0.9, 0.8])) == 1.0
    assert surprise(1e-5) == pytest.approx(5.0)


def test_attention_merges_suppresses_and_caps():
    cfg = AttentionConfig(window_ms=W, suppress_ms=3_600_000, gap_windows=1, hard_cap_per_day=2)
    a = Attention(cfg)
    assert a.observe(MON, "traffic", "s", 9)[0] == "alert"
    assert a.observe(MON + W, "traffic", "s", 7)[0] == "extend"
    assert a.observe(MON + 3 * W, "traffic", "s", 7)[0] == "extend"         # one quiet window: same episode
    assert a.observe(MON + 8 * W, "traffic", "s", 7)[0] == "suppressed"     # within the hour
    assert a.observe(MON + 8 * W, "host-bytes", "10.0.0.9", 7)[0] == "alert"  # another entity
    assert a.observe(MON + 13 * W, "traffic", "s", 7)[0] == "capped"        # an hour on, but 2 a day
    assert a.observe(MON + 86_400_000, "traffic", "s", 7)[0] == "alert"     # a new day
    b = Attention.from_state(cfg, json.loads(json.dumps(a.state())))
    assert b.observe(MON + 86_400_000 + W, "traffic", "s", 7)[0] == "extend"


def test_calibrate_meets_the_budget_exactly_on_past_data():
    cfg = AttentionConfig(window_ms=W, suppress_ms=0, gap_windows=0)
    rng = np.random.default_rng(3)
    events = [(MON + i * W, "traffic", "s", float(rng.exponential())) for i in range(288 * 10)]
    thr = calibrate(events, 10, cfg, budget_per_day=2)
    assert count_alerts(events, thr, cfg) <= 20
    lower = max(e[3] for e in events if e[3] < thr)
    assert count_alerts(events, lower, cfg) > 20                  # the lowest such threshold


def test_summary_columns_and_records_agree_and_merge():
    rng = np.random.default_rng(4)
    n = 500
    src, dst = rng.integers(0, 40, n), rng.integers(0, 60, n)
    proto = rng.choice([6, 17, 1], n)
    dport = rng.integers(0, 30, n)
    packets, nbytes = rng.integers(1, 9, n), rng.integers(40, 9000, n)
    flags = rng.choice([0x02, 0x12, 0x1B, 0x04], n)
    inside = src < 20
    m, hosts, hb = summarize_columns(src, dst, proto, dport, packets, nbytes, flags, inside)
    a, b = Summary(), Summary()
    for i in range(n):
        (a if i % 2 else b).add(f"h{src[i]}", f"h{dst[i]}", int(proto[i]), 1, int(dport[i]), int(packets[i]),
                                int(nbytes[i]), int(flags[i]), bool(inside[i]))
    a.merge(Summary.from_json(json.loads(json.dumps(b.to_json()))))
    assert np.array_equal(a.metrics(), m)
    assert {int(k[1:]): v for k, v in a.src_bytes.items()} == dict(zip(hosts.tolist(), hb.tolist()))
    failed = sum(1 for i in range(n) if proto[i] == 6 and flags[i] & 2 and not flags[i] & 0x10)
    assert m[METRICS.index("failed")] == failed
    assert a.top[0][0] == nbytes.max()


def test_home_networks():
    home = Home(["10.0.0.0/8", "fd00::/8"])
    assert "10.1.2.3" in home and "fd00::1" in home
    assert "8.8.8.8" not in home


def test_scorer_alerts_once_on_a_flood_after_warm_up_and_explains_it():
    cfg = ScoreConfig(W, budget_per_day=2, min_calib_windows=288)
    sc = SensorScorer(cfg, "s")
    rng = np.random.default_rng(5)

    def window(t, extra=0):
        s = Summary()
        for i in range(int(rng.poisson(200)) + extra):
            dst = "10.0.0.99" if i >= 200 else f"192.0.2.{rng.integers(0, 250)}"
            s.add(f"10.0.{rng.integers(0, 3)}.{rng.integers(1, 250)}", dst, 6, 1000 + i, 443,
                  int(rng.integers(2, 20)), int(rng.integers(100, 20000)), 0x1B, True)
        return s

    t = MON
    for _ in range(288 * 3):
        anomalies, alerts, _ = sc.window(t, window(t))
        t += W
    quiet_alerts = sum(len(sc.window(t + i * W, window(t + i * W))[1]) for i in range(12))
    t += 12 * W
    raised = []
    for i in range(3):
        raised += sc.window(t + i * W, window(t + i * W, extra=1500))[1]
    assert quiet_alerts <= 1
    assert len(raised) == 1
    alert = raised[0]
    assert alert["type"] == "traffic" and alert["rung"] == "L2"
    assert alert["observed"]["fanin"]["observed"] >= 1300
    assert alert["observed"]["fanin"]["high"] < 1300
    assert alert["topDestinations"][0]["host"] == "10.0.0.99"
    again = SensorScorer.from_state(cfg, json.loads(json.dumps(sc.state())))
    assert again.thresholds == sc.thresholds and again.windows == sc.windows


def test_attention_reminds_of_an_episode_that_goes_on():
    cfg = AttentionConfig(window_ms=W, suppress_ms=3_600_000, remind_ms=2 * 3_600_000)
    a = Attention(cfg)
    what = [a.observe(MON + i * W, "traffic", "s", 9)[0] for i in range(50)]   # 250 minutes, no gap
    assert [i for i, x in enumerate(what) if x == "alert"] == [0, 24, 48]


def test_a_finding_that_flickers_for_hours_is_one_alert():
    """A finding per entity (remind off) that drops under its threshold for a while and comes back within
    the suppression time is the same episode, however long it goes on; one that comes back later alerts."""
    cfg = AttentionConfig(window_ms=W, suppress_ms=3_600_000)
    a = Attention(cfg)
    windows = [i for i in range(48) if i % 5 < 2]                 # 4 hours: 2 windows on, 3 off
    what = [a.observe(MON + i * W, "dns-tunnel", "10.0.0.30 dns", 2.0, remind=False)[0] for i in windows]
    assert what.count("alert") == 1
    assert a.observe(MON + (47 + 13) * W, "dns-tunnel", "10.0.0.30 dns", 2.0, remind=False)[0] == "alert"


@hsettings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from([f"10.0.0.{i}" for i in range(12)]), max_size=8, unique=True),
                min_size=1, max_size=12))
def test_host_rows_match_one_by_one_eviction_of_the_longest_silent(windows):
    """Rows are given out in bulk; the result is what taking them one new host at a time gives."""
    cap = 4
    sc = SensorScorer(ScoreConfig(W, host_capacity=cap), "s")
    hosts: dict[str, int] = {}
    seen: list[int] = []
    for t, ips in enumerate(windows):
        want = {}
        for ip in ips:                       # hosts already known keep their rows
            if ip in hosts:
                want[ip] = hosts[ip]
                seen[hosts[ip]] = t
        for ip in ips:                       # then the plain algorithm, one new host at a time
            if ip in want:
                continue
            if len(hosts) < cap:
                r = len(hosts)
                seen.append(t)
            else:
                r = int(np.argmin(seen))
                del hosts[next(k for k, v in hosts.items() if v == r)]
            hosts[ip] = r
            seen[r] = t
            want[ip] = r
        assert sc._rows(ips, t).tolist() == [want[ip] for ip in ips]
        assert sc.hosts == hosts and sc.seen_ms == seen
        assert sc.h1.rows == len(hosts)


@pytest.mark.parametrize("make", [lambda: Welford(2), lambda: Seasonal(2), lambda: LogSeasonal(2)])
def test_every_detector_keeps_the_one_protocol(make):
    """Score a window, learn it, and say the same of the next as a restored copy does."""
    from app.detect.models import Detector, Prediction

    det = make()
    assert isinstance(det, Detector)
    rng = np.random.default_rng(3)
    for i in range(24 * 12 * 3):
        x = rng.lognormal(15, 0.2, 2)
        pred = det.score(x, MON + i * W)
        assert isinstance(pred, Prediction) and all(len(np.atleast_1d(f)) == 2 for f in pred)
        det.learn(x, MON + i * W, pred.p)
    t = MON + 24 * 12 * 3 * W
    usual, huge = det.score(np.full(2, math.exp(15)), t), det.score(np.full(2, math.exp(15) * 50), t)
    assert (usual.p > 0.01).all() and (huge.p < 1e-3).all() and (huge.z > usual.z).all()
    assert (usual.low <= usual.expected).all() and (usual.expected <= usual.high).all()
    again = type(det).from_state(json.loads(json.dumps(det.state())))
    assert np.allclose(again.score(np.full(2, math.exp(15) * 50), t).p, huge.p)


def test_persistence_resets_rows_through_its_own_method():
    f = Persistence(3)
    for _ in range(6):
        f.update(np.array([1e-4, 1e-4, 0.5]))
    assert f.prob[0] > 0.9
    f.reset_rows(np.array([0]))
    assert f.prob[0] < 1e-12 and f.prob[1] > 0.9


def test_an_outage_does_not_drag_the_seasonal_level_away():
    """Six hours of nothing (a capture stopped) must not teach the model that the site went quiet: the day-level
    factor stays bounded and the windows after the outage are expected at their usual size."""
    from app.detect.models.seasonal import Seasonal
    rng = np.random.default_rng(5)
    w_ms, per_day, t0 = 300_000, 288, 1_767_571_200_000
    s = Seasonal(1)
    levels, after = [], []
    for i in range(per_day * 21):
        hour = (i % per_day) / 12
        mu = 2e6 * (0.1 + 0.9 * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3) / 24)) ** 2) * rng.gamma(30, 1 / 30)
        x = 0.0 if 14 * per_day + 100 <= i < 14 * per_day + 172 else rng.poisson(mu / 1000) * 1000.0
        t = t0 + i * w_ms
        if 14 * per_day + 172 <= i < 14 * per_day + 184:
            after.append(float(s.predict(t)[0][0]) / mu)
        s.learn(np.array([x]), t, s.score(np.array([x]), t).p)
        levels.append(float(s.loglevel[0]))
    assert max(abs(v) for v in levels) < 1.0
    assert all(0.5 < r < 2.0 for r in after), after


def _crafted(traffic_score: float, lead: str, hosts=()) -> dict:
    """A window's scores as SensorScorer.score gives them: the sensor's L2 score and its metrics (``lead``
    standing out), and ``hosts``."""
    metrics = {n: {"observed": 10.0, "expected": 10.0, "low": 0.0, "high": 20.0, "p": 0.5, "threshold": 30.0,
                   "z": 0.0} for n in METRICS}
    metrics[lead].update(observed=1e6, p=1e-9, z=40.0)
    if lead == "bytes":
        metrics["packets"].update(observed=1e4, p=1e-8, z=30.0)
    return {"traffic": {"scores": {"L0": 40.0, "L1": 9.0, "L2": traffic_score}, "metrics": metrics},
            "hosts": list(hosts)}


def _scorer_of(windows: list[dict]) -> SensorScorer:
    sc = SensorScorer(ScoreConfig(60_000, budget_per_day=5), "s")
    it = iter(windows)
    sc.score = lambda t, m, ips, hb: next(it)      # type: ignore[method-assign]
    return sc


def test_a_sensor_anomaly_does_not_suppress_a_different_one():
    """A flood of failed attempts, then half an hour later a burst of bytes: two alerts, each about its own."""
    sc = _scorer_of([_crafted(9.0, "failed"), _crafted(9.0, "bytes")])
    t0 = 1_767_600_000_000
    first = sc.window(t0, Summary())[1]
    second = sc.window(t0 + 30 * 60_000, Summary())[1]
    assert [a["type"] for a in first + second] == ["traffic", "traffic"]
    assert first[0]["observed"].keys() == {"failed"} and "bytes" in second[0]["observed"]


def test_a_host_that_raises_nothing_does_not_take_the_sensors_anomaly():
    """The sensor's bytes are explained by a host whose own score stays under its threshold: the sensor's
    anomaly must stand, or nothing at all is raised."""
    host = {"host": "10.0.0.5", "scores": {"L0": 0.0, "L1": 2.0, "L2": 1.0}, "observed": 9e5, "expected": 1e3,
            "low": 0.0, "high": 2e3, "p": 1e-4}
    sc = _scorer_of([_crafted(9.0, "bytes", [host])])
    anomalies, alerts, _ = sc.window(1_767_600_000_000, Summary())
    assert [a["type"] for a in alerts] == ["traffic"]


def test_l0_alone_spends_the_whole_budget():
    """With L0 shipped, the host family (which has no L0) leaves its half of the budget to the sensor."""
    cfg = ScoreConfig(300_000, budget_per_day=4, rung="L0", min_calib_windows=1)
    sc = SensorScorer(cfg, "s")
    from app.detect.scorer import Peak
    day0 = 1_767_571_200_000 // 86_400_000
    for d in range(3):
        sc.history["traffic"][day0 + d] = [Peak(float(k), float(k), 0.0, 0.0,
                                                 (day0 + d) * 86_400_000 + k * 3_600_000, "s") for k in range(1, 21)]
    sc.windows = 1000
    sc.calibrate((day0 + 3) * 86_400_000)
    thr = sc.thresholds["traffic"]["L0"]
    per_day = sum(1 for d in range(3) for p in sc.history["traffic"][day0 + d] if p.l0 >= thr) / 3
    assert per_day == pytest.approx(4, abs=0.5), (thr, per_day)


def test_the_seasonal_slots_follow_the_sites_local_time_across_daylight_saving():
    """A site busy from 09:00 to 18:00 in Paris: after the clocks move on 29 March 2026, the models of a sensor
    set to Europe/Paris expect the morning rise an hour earlier in UTC, as it comes; in UTC they do not."""
    from zoneinfo import ZoneInfo
    from datetime import datetime
    paris = ZoneInfo("Europe/Paris")
    w_ms, start = 300_000, 1_772_323_200_000        # 2026-03-01 00:00 UTC
    utc = SensorScorer(ScoreConfig(w_ms), "s")
    local = SensorScorer(ScoreConfig(w_ms, timezones=(("s", "Europe/Paris"),)), "s")

    def traffic(t_ms: int) -> float:
        h = datetime.fromtimestamp(t_ms / 1000, paris).hour
        return 1000.0 if 9 <= h < 18 else 50.0

    errors = {"utc": [], "local": []}
    for i in range(35 * 288):                           # through 4 April
        t = start + i * w_ms
        x = traffic(t)
        after = t >= 1_774_742_400_000 + 86_400_000     # from the day after the change (30 March)
        for name, sc in (("utc", utc), ("local", local)):
            lt = sc.local(t)
            if after and datetime.fromtimestamp(t / 1000, paris).hour in (8, 9):
                errors[name].append(abs(float(sc.l1.predict(lt)[0][0]) - x) / x)
            sc.l1.learn(np.array([x, x, x, x, x, x]), lt)
    assert local.local(1_774_742_400_000 + 86_400_000) - (1_774_742_400_000 + 86_400_000) == 2 * 3_600_000
    assert np.median(errors["local"]) < 0.2 < np.mean(errors["utc"]), {k: np.mean(v) for k, v in errors.items()}


def test_a_new_nightly_job_alerts_on_its_first_two_nights_only():
    """The same anomaly (failed attempts) at 02:00 every night: two alerts, then published as habitual."""
    sc = _scorer_of([_crafted(9.0, "failed") for _ in range(12)])
    t0 = 1_767_600_000_000 - 1_767_600_000_000 % 86_400_000 + 2 * 3_600_000
    got = []
    for night in range(12):                 # and it stays a habit after the week its first alerts fall out of
        anomalies, alerts, _ = sc.window(t0 + night * 86_400_000 + night % 4 * 600_000, Summary())
        got.append((len(alerts), anomalies[0]["attention"]))
    assert got == [(1, "alert"), (1, "alert")] + [(0, "habitual")] * 10
    again = SensorScorer.from_state(sc.cfg, json.loads(json.dumps(sc.state())))
    assert again.habitual("traffic", "s attempts", t0 + 12 * 86_400_000)
    assert not again.habitual("traffic", "s attempts", t0 + 12 * 86_400_000 + 10 * 3_600_000)   # noon: not the job


def test_one_event_seen_by_the_ladder_and_by_a_detector_per_entity_is_one_alert():
    """A scan makes the sensor's failed attempts jump and a vertical-scan finding: whichever comes first raises
    the alert, the other is published as explained by it. Another source's scan, or a burst of bytes, is not
    the same event: each alerts on its own."""
    from collections import Counter
    t0 = 1_767_600_000_000
    scanned = Summary(failed_src=Counter({"203.0.113.5": 900, "198.51.100.1": 3}))
    scan = {"sensor": "s", "type": "vertical-scan", "entity": "203.0.113.5", "windowStartMs": t0,
            "windowLengthMs": 60_000, "score": 5.0, "threshold": 15.0, "title": "vertical scan", "evidence": {}}
    first_sensor = _scorer_of([_crafted(9.0, "failed")])
    assert len(first_sensor.window(t0, scanned)[1]) == 1
    anomaly, alert = first_sensor.attend(scan)
    assert alert is None and anomaly["attention"] == "explained" and anomaly["explainedBy"].startswith("s|traffic|")
    assert first_sensor.attend({**scan, "windowStartMs": t0 + 60_000})[0]["attention"] == "explained"  # goes on
    other = {**scan, "entity": "192.0.2.9", "windowStartMs": t0 + 60_000}
    assert first_sensor.attend(other)[1] is not None
    first_finding = _scorer_of([_crafted(9.0, "failed"), _crafted(9.0, "bytes")])
    assert first_finding.attend(scan)[1] is not None
    anomalies, alerts, _ = first_finding.window(t0 + 60_000, scanned)
    assert alerts == [] and anomalies[0]["attention"] == "explained"
    assert len(first_finding.window(t0 + 120_000, scanned)[1]) == 1       # bytes: not the scan's doing


def test_anomalies_that_raised_no_alert_of_their_own_do_not_spend_the_budget_in_calibration():
    """A nightly job's windows, habitual or explained by another's alert, reached no one: calibration replays
    history without them, so the ladder still spends its budget on what remains."""
    from app.detect.scorer import Peak
    day0 = 1_767_571_200_000 // 86_400_000
    def scorer(quiet: bool) -> SensorScorer:
        sc = SensorScorer(ScoreConfig(300_000, budget_per_day=2), "s")
        sc.windows = 1000
        for d in range(day0, day0 + 4):
            job, odd = d * 86_400_000 + 2 * 3_600_000, d * 86_400_000 + 14 * 3_600_000
            sc.history["traffic"][d] = [Peak(50.0, 0.0, 50.0, 50.0, job, "s"), Peak(10.0, 0.0, 10.0, 10.0, odd, "s")]
            if quiet:
                sc._quiet(job, "traffic", "s")
        sc.calibrate((day0 + 4) * 86_400_000)
        return sc
    assert scorer(quiet=False).thresholds["traffic"]["L2"] == 50.0      # two a day against one: the job's only
    sc = scorer(quiet=True)
    assert sc.thresholds["traffic"]["L2"] == 10.0
    again = SensorScorer.from_state(sc.cfg, json.loads(json.dumps(sc.state())))
    assert again.quiet == sc.quiet


def test_a_hosts_bytes_and_what_a_detector_found_it_doing_are_one_event():
    """A DNS tunnel's host also stands out in bytes: the finding alerts, the host's anomaly is explained by it.
    Another host's bytes stand on their own."""
    t0 = 1_767_600_000_000
    def host(ip: str) -> dict:
        return {"host": ip, "scores": {"L0": 0.0, "L1": 9.0, "L2": 9.0}, "observed": 9e7, "expected": 1e5,
                "low": 0.0, "high": 2e5, "p": 1e-9}
    quiet = _crafted(0.0, "bytes")
    sc = _scorer_of([{**quiet, "hosts": [host("10.0.0.30")]}, {**quiet, "hosts": [host("10.0.0.31")]}])
    tunnel = {"sensor": "s", "type": "dns-tunnel", "entity": "10.0.0.30 dns", "windowStartMs": t0,
              "windowLengthMs": 60_000, "score": 2.0, "threshold": 150.0, "title": "DNS tunnel?", "evidence": {}}
    assert sc.attend(tunnel)[1] is not None
    anomalies, alerts, _ = sc.window(t0 + 60_000, Summary())
    assert alerts == [] and anomalies[0]["attention"] == "explained"
    assert [a["entity"] for a in sc.window(t0 + 120_000, Summary())[1]] == ["10.0.0.31"]


def test_a_dns_tunnel_and_the_fan_in_it_makes_on_its_resolver_are_one_event():
    """A tunnel's queries pile up on the resolver: the sensor's fan-in anomaly on it and the tunnel finding,
    whichever comes first, raise one alert. A fan-in on another address, or a burst of bytes, stands alone."""
    from collections import Counter
    t0 = 1_767_600_000_000
    on_resolver = Summary(dst_flows=Counter({"10.0.9.53": 500, "198.51.100.1": 20}))
    on_other = Summary(dst_flows=Counter({"10.0.9.80": 500, "10.0.9.53": 60}))
    tunnel = {"sensor": "s", "type": "dns-tunnel", "entity": "10.0.0.30 dns", "windowStartMs": t0,
              "windowLengthMs": 60_000, "score": 2.0, "threshold": 150.0, "title": "DNS tunnel?",
              "evidence": {"flows": 400, "resolvers": {"10.0.9.53": 400}}}
    first_finding = _scorer_of([_crafted(9.0, "fanin"), _crafted(9.0, "fanin"), _crafted(9.0, "bytes")])
    assert first_finding.attend(tunnel)[1] is not None
    anomalies, alerts, _ = first_finding.window(t0 + 60_000, on_resolver)
    assert alerts == [] and anomalies[0]["attention"] == "explained"
    assert anomalies[0]["explainedBy"] == "s|dns-tunnel|10.0.0.30 dns|" + str(t0)
    first_sensor = _scorer_of([_crafted(9.0, "fanin")])
    assert len(first_sensor.window(t0, on_resolver)[1]) == 1
    anomaly, alert = first_sensor.attend({**tunnel, "windowStartMs": t0 + 60_000})
    assert alert is None and anomaly["explainedBy"].startswith("s|traffic|s|")
    elsewhere = _scorer_of([_crafted(9.0, "fanin")])
    assert elsewhere.attend(tunnel)[1] is not None
    assert len(elsewhere.window(t0 + 60_000, on_other)[1]) == 1            # another address's fan-in
    volume = _scorer_of([_crafted(9.0, "bytes")])
    assert volume.attend(tunnel)[1] is not None
    assert len(volume.window(t0 + 60_000, on_resolver)[1]) == 1            # bytes: not the tunnel's doing


def test_two_attacks_at_once_are_two_alerts_whatever_the_sensor_anomaly_between_them():
    """A horizontal scan from 10.0.0.181 while 10.0.1.15 tunnels through the resolver: the sensor's fan-in on the
    resolver is not the scan's doing (a horizontal scan makes failed attempts, not fan-in). And when a vertical
    scan, which does make fan-in, explains that anomaly, the tunnel is not explained through it: each attack
    raises its own alert."""
    from collections import Counter
    t0 = 1_767_600_000_000
    busy = Summary(failed_src=Counter({"10.0.0.181": 300}), dst_flows=Counter({"10.0.9.53": 600, "10.0.5.5": 300}))
    finding = {"sensor": "s", "windowStartMs": t0, "windowLengthMs": 60_000, "score": 2.0, "threshold": 1.0,
               "title": "", "evidence": {}}
    tunnel = {**finding, "type": "dns-tunnel", "entity": "10.0.1.15 dns", "windowStartMs": t0 + 60_000,
              "evidence": {"resolvers": {"10.0.9.53": 400}}}
    sc = _scorer_of([_crafted(9.0, "fanin")])
    assert sc.attend({**finding, "type": "horizontal-scan", "entity": "10.0.0.181"})[1] is not None
    assert len(sc.window(t0 + 60_000, busy)[1]) == 1                    # the fan-in: its own alert
    assert sc.attend(tunnel)[0]["attention"] == "explained"             # by the fan-in's alert: one event
    sc = _scorer_of([_crafted(9.0, "fanin")])
    assert sc.attend({**finding, "type": "vertical-scan", "entity": "10.0.0.181"})[1] is not None
    anomalies, alerts, _ = sc.window(t0 + 60_000, busy)
    assert alerts == [] and anomalies[0]["explainedBy"].startswith("s|vertical-scan|")
    assert sc.attend(tunnel)[1] is not None


def test_a_steady_upload_that_turns_into_a_burst_is_one_event():
    t0 = 1_767_600_000_000
    sc = _scorer_of([])
    slow = {"sensor": "s", "type": "slow-exfiltration", "entity": "10.0.0.50 > 203.0.113.9", "windowStartMs": t0,
            "windowLengthMs": 300_000, "score": 1.5, "threshold": 6e6, "title": "slow exfiltration?", "evidence": {}}
    assert sc.attend(slow)[1] is not None
    burst = {**slow, "type": "exfiltration", "windowStartMs": t0 + 120_000, "title": "exfiltration?"}
    assert sc.attend(burst)[0]["attention"] == "explained"
    other = {**burst, "entity": "10.0.0.50 > 198.51.100.7"}
    assert sc.attend(other)[1] is not None                  # another address: another event


def test_a_burst_that_goes_on_for_half_an_hour_then_reads_as_a_steady_upload_is_one_event():
    """The exfiltration finding comes every window of its burst; the steady run is found when the burst ends,
    six windows after the burst's alert: still the same event."""
    t0 = 1_767_600_000_000
    sc = _scorer_of([])
    w = sc.cfg.window_ms
    burst = {"sensor": "s", "type": "exfiltration", "entity": "10.0.0.50 > 203.0.113.9", "windowStartMs": t0,
             "windowLengthMs": w, "score": 1.5, "threshold": 3e8, "title": "exfiltration?", "evidence": {}}
    assert sc.attend(burst)[1] is not None
    for k in range(1, 6):
        assert sc.attend({**burst, "windowStartMs": t0 + k * w})[1] is None
    slow = {**burst, "type": "slow-exfiltration", "windowStartMs": t0 + 6 * w, "title": "slow exfiltration?"}
    assert sc.attend(slow)[0]["attention"] == "explained"
    later = {**slow, "windowStartMs": t0 + 12 * w, "entity": "10.0.0.50 > 198.51.100.7"}
    assert sc.attend(later)[1] is not None                  # another address: another event


def test_an_upload_explained_by_its_bursts_alert_goes_on_explaining_the_sensors_volume():
    """The burst's alert, then its steady upload (explained by it) for an hour: the sensor's bytes jump while the
    host is its top sender, long after the burst's own window; still the same event. With another top sender,
    the sensor's bytes are another event."""
    from collections import Counter
    t0 = 1_767_600_000_000

    def volume_after_an_hour(sender: str) -> list[dict]:
        sc = _scorer_of([_crafted(9.0, "bytes")])
        w = sc.cfg.window_ms
        burst = {"sensor": "s", "type": "exfiltration", "entity": "10.0.0.50 > 203.0.113.9", "windowStartMs": t0,
                 "windowLengthMs": w, "score": 1.5, "threshold": 3e8, "title": "exfiltration?", "evidence": {}}
        assert sc.attend(burst)[1] is not None
        for k in range(1, 12):
            slow = {**burst, "type": "slow-exfiltration", "windowStartMs": t0 + k * w, "title": "slow exfiltration?"}
            assert sc.attend(slow)[0]["attention"] == "explained"
        return sc.window(t0 + 12 * w, Summary(src_bytes=Counter({sender: 9e8})))[0]

    same = volume_after_an_hour("10.0.0.50")
    assert same[0]["attention"] == "explained"
    assert same[0]["explainedBy"] == "s|exfiltration|10.0.0.50 > 203.0.113.9|" + str(t0)
    assert volume_after_an_hour("10.0.0.77")[0]["attention"] == "alert"


def test_a_sensors_first_days_are_left_out_of_calibration_once_there_are_later_ones():
    """While its models learn the site's day and week a new sensor scores high: calibrating on those days would
    set thresholds no later day reaches."""
    from app.detect.scorer import Peak
    day0 = 1_767_571_200_000 // 86_400_000
    def threshold(learn_days: int) -> float:
        sc = SensorScorer(ScoreConfig(300_000, budget_per_day=2, learn_days=learn_days), "s")
        sc.windows = 1000
        for d in range(day0, day0 + 5):
            hi, lo = (50.0, 40.0) if d < day0 + 2 else (10.0, 5.0)
            sc.history["traffic"][d] = [Peak(s, 0.0, s, s, d * 86_400_000 + k * 6 * 3_600_000, "s")
                                        for k, s in enumerate((hi, lo))]
        sc.calibrate((day0 + 5) * 86_400_000)
        return sc.thresholds["traffic"]["L2"]
    assert threshold(0) == 40.0
    assert threshold(2) == 10.0
