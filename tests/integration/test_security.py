"""Authentication, limits and hostile clients against a real worker on a real broker.

Every test ends by checking that the worker still serves and that what it accepted before the abuse
comes out exact at egress.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from app.capture import synth
from tests.conftest import AUTH, AUTH_DIR, ROOT, SENSOR_TOKENS, TOKEN, drain, upload
from web.openapi import DOCUMENT

pytestmark = pytest.mark.integration

TAP1 = {"Authorization": f"Bearer {SENSOR_TOKENS['tap1']}"}
READER = {"Authorization": f"Bearer {SENSOR_TOKENS['reader']}"}
WRONG = {"Authorization": "Bearer fs_" + "A" * 43}
PAGE = {"X-Flowsight-Page": "1"}
PUBLIC = {("/healthz", "get"), ("/readyz", "get"), ("/openapi.json", "get"), ("/", "get"), ("/ui/{name}", "get"),
          ("/v1/login", "post"), ("/v1/logout", "post")}
SECRETS = [TOKEN, *SENSOR_TOKENS.values(), (AUTH_DIR / "secret").read_text().strip()]


def small_capture(seed: int = 1) -> tuple[bytes, int]:
    tr = synth.generate(seed=seed, conversations=5, packets=40, inside=5, outside=5,
                        start_s=1_700_000_000 + seed * 3600, duration_s=1.0)
    return tr.pcap, int(tr.packets.sum())


def concrete(path: str) -> str:
    return path.replace("{name}", "app.js").replace("{key}", "tap1~b1")


def assert_clean(body: str) -> None:
    """No stack trace, file path or secret in what a client is shown."""
    assert "Traceback" not in body and not re.search(r"/(work|home|tmp|usr)/|\.py\b", body), body
    assert not any(s in body for s in SECRETS), body


async def request(s: aiohttp.ClientSession, method: str, url: str, headers: dict) -> tuple[int, str, dict]:
    data = b"" if method in ("post", "put") else None
    params = {"timeout": "0"} if method == "get" else None
    async with s.request(method.upper(), url, headers={"Content-Type": "application/octet-stream", **headers},
                         data=data, params=params) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_auth_matrix_on_every_endpoint(deployment):
    w = deployment().start()
    pcap, _ = small_capture()
    async with aiohttp.ClientSession() as s:
        for path, item in DOCUMENT["paths"].items():
            for method in item:
                url = w.url + concrete(path)
                label = f"{method.upper()} {path}"
                if (path, method) in PUBLIC:   # sign-in and sign-out take the page's header (login CSRF)
                    status, body, _ = await request(s, method, url, PAGE if path.startswith("/v1/log") else {})
                    assert status not in (401, 403), label
                    continue
                for name, headers in (("no token", {}), ("a wrong token", WRONG)):
                    status, body, h = await request(s, method, url, headers)
                    assert status == 401 and h.get("WWW-Authenticate", "").startswith("Bearer"), (label, name, body)
                    assert_clean(body)
                status, body, _ = await request(s, method, url, READER if path == "/v1/captures" else TAP1)
                if path == "/v1/blocks/{key}":   # tap1 may ask about its own blocks
                    assert status in (200, 404), (label, body)
                else:
                    assert status == 403, (label, "the other kind of token", body)
                status, body, _ = await request(s, method, url, AUTH)
                assert status not in (401, 403), (label, "a valid token", body)
        # a tap1 token: uploads count under tap1 without X-Sensor, and it may not upload as tap2
        async with s.put(w.url + "/v1/captures", data=pcap, headers={**TAP1, "Content-Type": "application/vnd.tcpdump.pcap",
                                                                     "X-Sensor": "tap2"}) as r:
            assert r.status == 403 and "tap2" in (await r.json())["error"]
        async with s.put(w.url + "/v1/captures", data=pcap, headers={**TAP1, "Content-Type": "application/vnd.tcpdump.pcap"}) as r:
            answer = await r.json()
            assert r.status == 202 and answer["sensor"] == "tap1", answer
        # the reader's token signs the page in: the session reads but does not upload
        async with s.post(w.url + "/v1/login", json={"token": SENSOR_TOKENS["tap1"]}, headers=PAGE) as r:
            assert r.status == 401
        async with s.post(w.url + "/v1/login", json={"token": SENSOR_TOKENS["reader"]}, headers=PAGE) as r:
            assert r.status == 200
            cookie = r.cookies["flowsight_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        jar = {"flowsight_session": cookie.value}
        async with s.get(w.url + "/v1/alerts", params={"timeout": "0"}, cookies=jar) as r:
            assert r.status == 200
        async with s.put(w.url + "/v1/captures", data=pcap, cookies=jar,
                         headers={"Content-Type": "application/vnd.tcpdump.pcap"}) as r:
            assert r.status == 403
        # a cross-site write riding on the cookie is refused; the page's own is not
        act = {"action": "suppress", "type": "traffic", "entity": "tap1", "for_s": 60}
        async with s.post(w.url + "/v1/actions", json=act, cookies=jar, headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        async with s.post(w.url + "/v1/actions", json=act, cookies=jar, headers={"X-Flowsight-Page": "1"}) as r:
            assert r.status == 202
        forged = cookie.value[:-4] + ("0000" if not cookie.value.endswith("0000") else "1111")
        async with s.get(w.url + "/v1/alerts", params={"timeout": "0"}, cookies={"flowsight_session": forged}) as r:
            assert r.status == 401
        # security headers everywhere, CSP on the page
        async with s.get(w.url + "/") as r:
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert 'data-signed-in="no"' in await r.text()
        async with s.get(w.url + "/v1/flows", headers=AUTH, params={"timeout": "0"}) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        # no secret in what operators read
        for path in ("/metrics", "/v1/health"):
            async with s.get(w.url + path, headers=AUTH) as r:
                text = await r.text()
                assert r.status == 200 and not any(sec in text for sec in SECRETS), path
    log = w.log_path.read_text(errors="replace")
    assert "flowsight settings:" in log and not any(sec in log for sec in SECRETS)


async def test_limits_and_slow_clients_leave_the_worker_serving_and_lose_nothing(deployment, tmp_path):
    w = deployment(FLOWSIGHT_MAX_UPLOAD_BYTES=str(600_000), FLOWSIGHT_CHUNK_BYTES=str(256 * 1024),
                   FLOWSIGHT_SENSOR_UPLOADS_PER_MIN="6", FLOWSIGHT_MAX_CONCURRENT_UPLOADS="1",
                   FLOWSIGHT_MAX_LONG_POLLS="1", FLOWSIGHT_CLIENT_IDLE_TIMEOUT_S="3",
                   FLOWSIGHT_MIN_UPLOAD_RATE="20000").start()
    host, port = "127.0.0.1", w.port
    pcap, packets = small_capture(2)
    pcap_ct = {"Content-Type": "application/vnd.tcpdump.pcap"}
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, pcap, sensor="tap3", block_id="before")
        assert status == 202, answer
        # size: declared and streamed
        async with s.put(w.url + "/v1/captures", data=b"\0" * 700_000, headers={**pcap_ct, "X-Sensor": "big"}) as r:
            assert r.status == 413, await r.text()

        async def stream(n: int):
            for _ in range(n):
                yield b"\0" * 100_000
        async with s.put(w.url + "/v1/captures", data=stream(7), headers={**pcap_ct, "X-Sensor": "big"}) as r:
            assert r.status == 413 and "over the limit" in (await r.json())["error"]
        # rate: tap2 gets a burst of 5, then 429 with Retry-After
        statuses = []
        for i in range(7):
            status, answer = await upload(s, w.url, small_capture(10 + i)[0], sensor="tap2", block_id=f"r{i}")
            statuses.append(status)
        assert statuses[:5] == [202] * 5 and 429 in statuses[5:], statuses
        status, answer = await upload(s, w.url, pcap, sensor="tap3", block_id="other-sensor")
        assert status == 202, "another sensor is not limited by tap2's rate"
        # concurrency: one slow upload holds the only slot; the next is told to come back
        slow = socket.create_connection((host, port))
        slow.sendall(f"PUT /v1/captures HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Sensor: slow\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n".encode() + b"\0" * 10)
        await asyncio.sleep(0.5)
        async with s.put(w.url + "/v1/captures", data=pcap, headers={**pcap_ct, "X-Sensor": "tap1"}) as r:
            assert r.status == 503 and r.headers["Retry-After"].isdigit(), await r.text()
        # ... and the slow one, which then sends nothing, is answered 408 after the idle timeout
        t0 = time.monotonic()
        answer_408 = await asyncio.to_thread(read_answer, slow, 15)
        assert answer_408.startswith("HTTP/1.1 408") and 2 < time.monotonic() - t0 < 10, answer_408
        # a body trickled under the minimum rate is cut off with 408
        trickle = socket.create_connection((host, port))
        trickle.sendall(f"PUT /v1/captures HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Sensor: slow\r\n"
                        f"Content-Type: application/octet-stream\r\nContent-Length: 500000\r\n\r\n".encode())
        t0 = time.monotonic()
        answer = ""
        for _ in range(30):
            try:
                trickle.sendall(b"\0" * 1000)
            except OSError:
                break
            trickle.settimeout(1.0)
            try:
                answer = trickle.recv(4096).decode(errors="replace")
                break
            except TimeoutError:
                continue
        trickle.close()
        assert answer.startswith("HTTP/1.1 408") and "too slow" in answer, answer
        # slowloris: headers trickled a byte a second are closed after the idle timeout
        loris = socket.create_connection((host, port))
        loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        closed = await asyncio.to_thread(trickle_headers, loris, 20)
        assert closed and time.monotonic() - t0 < 10, "a client trickling its headers kept its connection"
        # long polls: one slot
        first = asyncio.create_task(s.get(w.url + "/v1/flows", params={"from": "end", "timeout": "3"}))
        await asyncio.sleep(0.7)
        async with s.get(w.url + "/v1/flows", params={"from": "end", "timeout": "1"}) as r:
            assert r.status == 503 and "long polls" in (await r.json())["error"]
        (await first).release()
        # still serving, and the first upload comes out exact
        async with s.get(w.url + "/healthz") as r:
            assert r.status == 200
        records, _ = await drain(s, w.url, None, lambda got: sum(
            r["packetDeltaCount"] for r in got if r["flowsight"]["sensor"] == "tap3") >= 2 * packets)
        tap3 = [r for r in {r["flowId"]: r for r in records}.values() if r["flowsight"]["sensor"] == "tap3"]
        # the same capture twice under two block ids: twice the packets, never more
        assert sum(r["packetDeltaCount"] for r in tap3) == 2 * packets
    log = w.log_path.read_text(errors="replace")
    assert not any(sec in log for sec in SECRETS)


def read_answer(sock: socket.socket, timeout_s: float) -> str:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(4096).decode(errors="replace")
    except TimeoutError:
        return ""
    finally:
        sock.close()


def trickle_headers(sock: socket.socket, seconds: int) -> bool:
    """Send one header byte a second; True once the server closed the connection."""
    sock.settimeout(1.0)
    for _ in range(seconds):
        try:
            sock.sendall(b"X")
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    sock.close()
    return False


@pytest.fixture
def small_volume(tmp_path):
    """A 6 MiB tmpfs as the spool volume (needs root, as the network tests do)."""
    mnt = tmp_path / "spool"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs for the spool-full test (root needed): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_full_spool_volume_is_507_before_and_during_an_upload(deployment, small_volume):
    w = deployment(FLOWSIGHT_SPOOL_DIR=str(small_volume), FLOWSIGHT_SPOOL_MIN_FREE_BYTES=str(1 << 20)).start()
    pcap, packets = small_capture(3)
    ct = {"Content-Type": "application/vnd.tcpdump.pcap", "X-Sensor": "tap1"}
    async with aiohttp.ClientSession(headers=AUTH) as s:
        # declared: refused before a byte is read
        async with s.put(w.url + "/v1/captures", data=b"\0" * (11 << 19), headers=ct) as r:
            assert r.status == 507 and r.headers["Retry-After"].isdigit(), await r.text()
            assert_clean(await r.text())

        lowest = []

        async def stream():
            for _ in range(10):
                st = os.statvfs(small_volume)
                lowest.append(st.f_bavail * st.f_frsize)
                yield b"\0" * (1 << 20)
                await asyncio.sleep(0.05)
        # undeclared (chunked): the reserve is kept while the body is written (it once filled the volume)
        async with s.put(w.url + "/v1/captures", data=stream(), headers=ct) as r:
            assert r.status == 507 and "nearly full" in (await r.json())["error"], await r.text()
        assert min(lowest) >= 1 << 20, f"the spool volume went below its reserve: {min(lowest)} bytes free"
        assert os.listdir(small_volume) == [], "the spool file of a refused upload is removed"
        status, answer = await upload(s, w.url, pcap, sensor="tap1")
        assert status == 202, answer
        records, _ = await drain(s, w.url, None, lambda got: sum(r["packetDeltaCount"] for r in got) >= packets)
        assert sum(r["packetDeltaCount"] for r in {r["flowId"]: r for r in records}.values()
                   if r["flowsight"]["sensor"] == "tap1") == packets


async def test_tls_only_with_a_certificate(deployment, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    w = deployment(FLOWSIGHT_TLS_CERT=str(cert), FLOWSIGHT_TLS_KEY=str(key))
    w.url = w.url.replace("http://", "https://")
    import ssl
    ctx = ssl.create_default_context(cafile=str(cert))
    w.ssl = ctx
    w.start()
    pcap, packets = small_capture(4)
    async with aiohttp.ClientSession(headers=AUTH, connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        status, answer = await upload(s, w.url, pcap, sensor="tap1")
        assert status == 202, answer   # the upload's block lookup went to the worker itself over HTTPS
        records, _ = await drain(s, w.url, None, lambda got: sum(r["packetDeltaCount"] for r in got) >= packets)
        assert sum(r["packetDeltaCount"] for r in {r["flowId"]: r for r in records}.values()) == packets
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(w.url.replace("https://", "http://") + "/healthz") as r:
                await r.read()


async def test_fuzz_the_http_api_from_its_openapi_document(deployment, tmp_path):
    """schemathesis against a running worker: no 5xx, and every answer is one the document lists."""
    w = deployment(FLOWSIGHT_LONG_POLL_MAX_S="1").start()
    pcap, _ = small_capture(5)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, _ = await upload(s, w.url, pcap, sensor="tap1")
        assert status == 202
    report = tmp_path / "schemathesis.json"
    env = dict(os.environ)
    r = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run", w.url + "/openapi.json",
                        "-H", f"Authorization: Bearer {TOKEN}",
                        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                                    "response_headers_conformance,response_schema_conformance",
                        "--max-examples", os.environ.get("FLOWSIGHT_FUZZ_EXAMPLES", "15"), "--seed", "1",
                        "--max-time", os.environ.get("FLOWSIGHT_FUZZ_SECONDS", "150"),
                        "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
                        # X-Sensor and X-Block-Id have patterns: most drawn headers are filtered, by design
                        "--suppress-health-check", "filter_too_much",
                        "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert counts and int(counts[1]) >= 100 and counts[1] == counts[2], out[-3000:]
    from web.openapi import DOCUMENT
    # every operation of the document was exercised, and passed (the document's own URL is where it starts)
    tested = set()
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished") or {}
        if finished.get("status") == "success":
            tested.add(finished.get("recorder", {}).get("label"))
    documented = {f"{m.upper()} {path}" for path, methods in DOCUMENT["paths"].items() for m in methods}
    assert tested == documented - {"GET /openapi.json"}, (documented - tested, tested - documented)
    log = w.log_path.read_text(errors="replace")
    assert not any(sec in log for sec in SECRETS)
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture
def sasl_broker(kafka):
    """A one-node broker that also takes SASL_PLAINTEXT PLAIN logins (user fs, password fs-kafka-pw)."""
    from tests.conftest import KAFKA_PORT, broker_of_its_own
    with broker_of_its_own("sasl-kafka", 40, KAFKA_SASL_PLAIN_USERS="fs=fs-kafka-pw") as b:
        b.sasl_bootstrap = f"127.0.0.1:{KAFKA_PORT + 40 + 1000}"
        yield b


async def test_kafka_sasl_settings_reach_every_kafka_client(sasl_broker, tmp_path):
    """The worker talks only to the SASL listener: Faust's clients, egress and health all log in."""
    from tests.conftest import Worker
    sasl = {"FLOWSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FLOWSIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
            "FLOWSIGHT_KAFKA_SASL_USERNAME": "fs"}
    bad = Worker(sasl_broker.sasl_bootstrap, tmp_path / "bad", "fs-sasl-bad", "sb-",
                 FLOWSIGHT_KAFKA_SASL_PASSWORD="wrong", **sasl)
    with pytest.raises(AssertionError):
        bad.start(timeout_s=25)  # a wrong password never gets ready
    bad.stop()
    assert "Authentication failed" in bad.log_path.read_text(errors="replace") or \
        "SaslAuthenticationFailed" in bad.log_path.read_text(errors="replace")
    w = Worker(sasl_broker.sasl_bootstrap, tmp_path / "w", "fs-sasl", "s-",
               FLOWSIGHT_KAFKA_SASL_PASSWORD="fs-kafka-pw", **sasl).start(timeout_s=120)
    try:
        pcap, packets = small_capture(6)
        async with aiohttp.ClientSession(headers=AUTH) as s:
            status, answer = await upload(s, w.url, pcap, sensor="tap1")
            assert status == 202, answer
            records, _ = await drain(s, w.url, None, lambda got: sum(r["packetDeltaCount"] for r in got) >= packets)
            assert sum(r["packetDeltaCount"] for r in {r["flowId"]: r for r in records}.values()) == packets
            async with s.get(w.url + "/v1/health") as r:
                health = await r.json()
            assert health["lag"] is not None, health   # health's own consumer logged in too
        assert "fs-kafka-pw" not in w.log_path.read_text(errors="replace")
    finally:
        w.stop()
