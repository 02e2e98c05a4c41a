from __future__ import annotations

import pytest

from app import cursor, ranges
from app.settings import Settings, SettingsError


def test_defaults_match_the_documented_ones():
    s = Settings.from_env({})
    assert (s.partitions, s.window_s, s.web_port, s.broker_servers) == (8, 60, 6066, ["127.0.0.1:9092"])


@pytest.mark.parametrize("env, words", [
    ({"FLOWSIGHT_PARTITIONS": "zero"}, "whole number from 1"),
    ({"FLOWSIGHT_WINDOW_S": "-1"}, "from 0 to 86400"),
    ({"FLOWSIGHT_BROKER": "kafka://nohostport"}, "kafka://host:port"),
    ({"FLOWSIGHT_WINDOWS": "60"}, "unknown setting FLOWSIGHT_WINDOWS"),
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
