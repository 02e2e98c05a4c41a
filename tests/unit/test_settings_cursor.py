from __future__ import annotations

import pytest

from app.api import cursor
from app.flows import ranges
from app.settings import Settings, SettingsError


def test_defaults_match_the_documented_ones():
    s = Settings.from_env({})
    assert (s.partitions, s.window_s, s.web_port, s.broker_servers) == (8, 60, 6066, ["127.0.0.1:9092"])


@pytest.mark.parametrize("env, words", [
    ({"FLOWSIGHT_PARTITIONS": "zero"}, "whole number from 1"),
    ({"FLOWSIGHT_WINDOW_S": "-1"}, "from 0 to 86400"),
    ({"FLOWSIGHT_BROKER": "kafka://nohostport"}, "kafka://host:port"),
    ({"FLOWSIGHT_WINDOWS": "60"}, "unknown setting FLOWSIGHT_WINDOWS"),
    ({"FLOWSIGHT_SENSOR_TIMEZONES": "site-a=Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"FLOWSIGHT_SENSOR_TIMEZONES": "Europe/Paris"}, "expected sensor=Zone"),
    ({"FLOWSIGHT_TIMEZONE": "CEST"}, "unknown time zone"),
])
def test_bad_values_say_what_a_valid_value_looks_like(env, words):
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_redacted_hides_broker_password():
    s = Settings.from_env({"FLOWSIGHT_BROKER": "kafka://user:hunter2@b1:9092"})
    assert "hunter2" not in str(s.redacted())


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Settings().partitions = 3  # type: ignore[misc]


def test_cursor_round_trip_and_rejects_forgeries():
    offsets = {0: 5, 3: 17}
    assert cursor.decode(cursor.encode(offsets)) == offsets
    for bad in ("!!!", "e30x", cursor.encode({0: 1})[:-3] + "zzz"):
        with pytest.raises(cursor.CursorError):
            cursor.decode(bad)


def test_ranges():
    r = None
    for i in (3, 0, 1, 2, 7):
        r = ranges.add(r, i)
    assert r == [[0, 3], [7, 7]]
    assert ranges.contains(r, 2) and not ranges.contains(r, 5)


def test_a_cursor_holds_only_offsets_kafka_can_have():
    """An offset above int64 once killed the Kafka client's fetcher and hung the long poll for ever."""
    import base64
    import json

    def raw(text):
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    assert cursor.decode(raw('{"0": 9223372036854775807, "1": [5, 2]}'), 2) == {0: (1 << 63) - 1, 1: (5, 2)}
    for text in ('{"0": 99999999999999999999999}', '{"0": 1e400}', '{"0": Infinity}', '{"0": NaN}', '{"0": 1.5}',
                 '{"0": true}', '{"0": [1, 99999999999]}', '{"0": "5"}', '{"-1": 5}', '{"x": 5}', '{"7": 5}',
                 "[" * 100_000, json.dumps({"0": [1, 2, 3]})):
        with pytest.raises(cursor.CursorError):
            cursor.decode(raw(text), 4)
    with pytest.raises(cursor.CursorError):
        cursor.decode("A" * 100_000)


async def test_a_long_poll_ends_by_its_timeout_whatever_the_kafka_client_does(monkeypatch):
    import asyncio
    import time

    from app.main import app  # noqa: F401  (settings and routes, as the worker loads them)
    from app.runtime import egress

    class Stuck:
        def __init__(self, **kw):
            pass

        async def start(self):
            pass

        async def topics(self):
            return {"t"}

        def partitions_for_topic(self, topic):
            return None

        def assign(self, tps):
            pass

        async def seek_to_beginning(self, tp):
            pass

        async def getmany(self, *tps, **kw):
            await asyncio.sleep(3600)             # a fetcher task that died: nothing ever comes

        async def stop(self):
            await asyncio.sleep(3600)

    monkeypatch.setattr(egress, "AIOKafkaConsumer", Stuck)
    monkeypatch.setattr(egress, "GRACE_S", 0.3)
    monkeypatch.setattr(egress, "STOP_S", 0.1)
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await egress.bounded_poll("t", None, 0.2, 10, False, 1)
    assert time.monotonic() - t0 < 2


def test_time_zones_per_sensor():
    s = Settings.from_env({"FLOWSIGHT_SENSOR_TIMEZONES": "paris=Europe/Paris, ny=America/New_York",
                           "FLOWSIGHT_TIMEZONE": "Asia/Tokyo"})
    assert s.timezones == {"": "Asia/Tokyo", "paris": "Europe/Paris", "ny": "America/New_York"}
