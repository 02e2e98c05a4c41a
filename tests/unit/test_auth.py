"""Tokens, sessions, rate limits and the security settings (pure code)."""
from __future__ import annotations

import os
import stat

import pytest

from app.api.auth import AuthError, Keyring, RateLimiter, add_token, hash_token, read_tokens
from app.settings import Settings, SettingsError


def ring(tmp_path, sensors: dict[str, str], api: dict[str, str]) -> Keyring:
    (tmp_path / "s").write_text("".join(f"{n}:{hash_token(t)}\n" for n, t in sensors.items()))
    (tmp_path / "a").write_text("# readers\n" + "".join(f"{n}:{hash_token(t)}\n" for n, t in api.items()))
    (tmp_path / "c").write_text("a-cluster-secret-of-some-length\n")
    return Keyring.load(str(tmp_path / "s"), str(tmp_path / "a"), str(tmp_path / "c"))


def test_only_salted_hashes_are_stored_and_the_token_decides_who_it_is(tmp_path):
    path = tmp_path / "tokens"
    t1, t2 = add_token(path, "tap1"), add_token(path, "tap2")
    text = path.read_text()
    assert t1 not in text and t2 not in text and text.count("sha256$") == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (salt1, _), (salt2, _) = [(s, d) for _, s, d in read_tokens(path)]
    assert salt1 != salt2 and hash_token(t1) != hash_token(t1)   # salted: the same token hashes differently
    k = Keyring.load(str(path))
    p = k.principal(t1)
    assert p.sensors == {"tap1"} and not p.reader and p.may_upload_as("tap1") and not p.may_upload_as("tap2")
    assert k.principal(t1 + "x") is None and k.principal("") is None and k.principal(t2[:-1]) is None


def test_relay_reader_and_cluster_secret(tmp_path):
    k = ring(tmp_path, {"*": "relay-token", "tap1": "tap1-token"}, {"ana": "reader-token", "tap1": "tap1-token"})
    relay = k.principal("relay-token")
    assert relay.may_upload_as("anything") and not relay.reader
    both = k.principal("tap1-token")   # one token in both files: uploads as tap1 and reads
    assert both.reader and both.sensors == {"tap1"}
    reader = k.principal("reader-token")
    assert reader.reader and not reader.sensors and not reader.may_upload_as("tap1")
    worker = k.principal("a-cluster-secret-of-some-length")
    assert worker.internal and worker.reader and worker.may_upload_as("placebo")


def test_sessions_are_signed_expire_and_never_hold_the_token(tmp_path):
    k = ring(tmp_path, {}, {"ana": "reader-token"})
    cookie = k.issue_session("ana", now=1000.0)
    assert "reader-token" not in cookie
    assert k.session(cookie, now=1001.0).name == "ana" and k.session(cookie, now=1001.0).cookie
    assert k.session(cookie, now=1000.0 + 13 * 3600) is None             # expired
    name, expiry, mac = cookie.split(".")
    assert k.session(f"{name}.{int(expiry) + 10**6}.{mac}", now=1001.0) is None   # a longer life, forged
    other = Keyring(cluster_secret="another-cluster-secret-xxxxx")
    assert other.session(cookie, now=1001.0) is None                       # another cluster's secret
    for junk in ("", "a.b", "a.b.c.d", "!!.1.x", "a.1.\u00e9", "\udcff.1.x"):
        assert k.session(junk) is None
    assert k.principal("\udcff") is None and k.principal("\xff") is None


def test_a_session_dies_with_its_sign_out_and_with_its_token(tmp_path):
    k = ring(tmp_path, {}, {"ana": "reader-token", "bob": "bob-token"})
    old, bobs = k.issue_session("ana", now=1000.0), k.issue_session("bob", now=1000.0)
    k.sign_out("ana", 1500_000)                                           # ana signed out at 1500 s
    assert k.session(old, now=1600.0) is None and k.session(bobs, now=1600.0).name == "bob"
    assert k.session(k.issue_session("ana", now=1500.5), now=1600.0).name == "ana"   # a later sign-in
    gone = ring(tmp_path, {}, {"ana": "reader-token"})                     # bob's token was removed
    gone.cluster_secret = k.cluster_secret
    assert gone.session(bobs, now=1600.0) is None


@pytest.mark.parametrize("line", ["tap1", "tap1:md5$00$00", "tap 1:sha256$00$" + "0" * 64, ":sha256$00$" + "0" * 64,
                                  "tap1:sha256$zz$" + "0" * 64])
def test_a_bad_token_file_line_is_named(tmp_path, line):
    path = tmp_path / "t"
    path.write_text("# comment\n\n" + line + "\n")
    with pytest.raises(AuthError, match="line 3"):
        read_tokens(path)
    with pytest.raises(AuthError, match="cannot read"):
        read_tokens(tmp_path / "missing")


def test_a_short_cluster_secret_is_refused(tmp_path):
    (tmp_path / "c").write_text("short\n")
    with pytest.raises(AuthError, match="shorter than 16"):
        Keyring.load(secret_file=str(tmp_path / "c"))


def test_rate_limiter_bursts_then_paces():
    r = RateLimiter(per_minute=60, burst=3)
    assert [r.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = r.take("a", now=0.0)
    assert 0.9 < wait <= 1.0
    assert r.take("b", now=0.0) == 0.0                 # per key
    assert r.take("a", now=1.01) == 0.0                # one more a second later
    assert r.take("a", now=1.02) > 0


def test_security_settings_are_checked(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="go together"):
        Settings.from_env({"FLOWSIGHT_TLS_CERT": str(cert)})
    with pytest.raises(SettingsError, match="no such file"):
        Settings.from_env({"FLOWSIGHT_SENSOR_TOKENS": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="SASL_SSL"):
        Settings.from_env({"FLOWSIGHT_KAFKA_SECURITY_PROTOCOL": "KERBEROS"})
    s = Settings.from_env({"FLOWSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "FLOWSIGHT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                           "FLOWSIGHT_KAFKA_SASL_USERNAME": "fs", "FLOWSIGHT_KAFKA_SASL_PASSWORD": "pw-secret"})
    assert s.kafka_kwargs() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": "fs", "sasl_plain_password": "pw-secret"}
    assert s.faust_credentials().mechanism.value == "SCRAM-SHA-512"
    assert "pw-secret" not in str(s.redacted())
    assert Settings.from_env({}).auth   # on unless turned off
