"""Shared fixtures: a real Kafka broker for the session, and Flowsight workers as subprocesses.

The broker is started by compose/kafka/kafka.sh on its own port and data folder,
so it never collides with `make run`. If Java, Maven or the Kafka jars cannot be
had, every test that needs the broker fails and says why: nothing is skipped.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.nfdump import nfcapd  # noqa: F401  (a fixture: Debian's nfcapd on loopback)

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "compose" / "kafka" / "kafka.sh"
KAFKA_PORT = int(os.environ.get("FLOWSIGHT_TEST_KAFKA_PORT", "19092"))
# brokers' data of a session apart from another session's on another port
TEST_VAR = ROOT / "var" / ("test" if KAFKA_PORT == 19092 else f"test-{KAFKA_PORT}")



def _make_tokens() -> tuple[Path, str, dict[str, str]]:
    """Token files for every worker of the session: TOKEN relays any sensor and reads; one token per tap."""
    import tempfile

    from app.api.auth import hash_token, new_token

    folder = Path(tempfile.mkdtemp(prefix="flowsight-auth-"))
    token = new_token()
    per_sensor = {name: new_token() for name in ("tap1", "tap2", "tap3")}
    (folder / "sensors").write_text(f"*:{hash_token(token)}\n" +
                                    "".join(f"{n}:{hash_token(t)}\n" for n, t in per_sensor.items()))
    os.chmod(folder / "sensors", 0o600)
    per_sensor["reader"] = new_token()  # an API token and nothing more
    (folder / "api").write_text(f"tests:{hash_token(token)}\nreader:{hash_token(per_sensor['reader'])}\n")
    (folder / "secret").write_text(new_token() + "\n")
    return folder, token, per_sensor


#: TOKEN relays any sensor and reads; SENSOR_TOKENS holds one upload token per tap and "reader" (API only).
AUTH_DIR, TOKEN, SENSOR_TOKENS = _make_tokens()
#: Headers of a client that may upload as any sensor and read everything.
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUTH_ENV = {"FLOWSIGHT_SENSOR_TOKENS": str(AUTH_DIR / "sensors"), "FLOWSIGHT_API_TOKENS": str(AUTH_DIR / "api"),
            "FLOWSIGHT_CLUSTER_SECRET_FILE": str(AUTH_DIR / "secret")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_env(nodes_var: Path, base_port: int) -> dict[str, str]:
    return {**os.environ, "FLOWSIGHT_VAR": str(nodes_var), "KAFKA_BASE_PORT": str(base_port)}


@pytest.fixture(scope="session")
def kafka() -> str:
    """A one-node Kafka 4.1 (KRaft) started for this test session; yields its bootstrap address."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: the integration tests need Java 17 and Maven "
                        "to run a real Kafka broker (make test installs them with apt-get)")
    var = TEST_VAR / "kafka1"
    env = kafka_env(var, KAFKA_PORT)
    subprocess.run([str(KAFKA_SH), "wipe"], env=env, check=False, capture_output=True)
    run = subprocess.run([str(KAFKA_SH), "start", "1"], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"could not start Kafka for the tests:\n{run.stdout}\n{run.stderr}")
    yield f"127.0.0.1:{KAFKA_PORT}"
    subprocess.run([str(KAFKA_SH), "stop"], env=env, check=False, capture_output=True)


class Worker:
    """One `faust -A app worker` subprocess with its own data folder, web port and log file."""

    def __init__(self, bootstrap: str, datadir: Path, app_id: str, prefix: str, **settings: str):
        self.port = free_port()
        self.datadir = datadir
        self.log_path = datadir / f"worker-{self.port}.log"
        # nothing of this process's FLOWSIGHT_* leaks in (the agent tests set a memory store for themselves)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSIGHT_")}
        self.env = {**inherited, "FLOWSIGHT_BROKER": f"kafka://{bootstrap}", "FLOWSIGHT_APP_ID": app_id,
                    "FLOWSIGHT_TOPIC_PREFIX": prefix, "FLOWSIGHT_DATADIR": str(datadir),
                    "FLOWSIGHT_WEB_PORT": str(self.port), "FLOWSIGHT_IDLE_FLUSH_S": "2",
                    "FLOWSIGHT_PARTITIONS": "4", "FLOWSIGHT_PLACEBO_INTERVAL_S": "3600", **AUTH_ENV, **settings}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.command_prefix: list[str] = []  # e.g. ["ip", "netns", "exec", NAME]

    def start(self, timeout_s: float = 90, wait_partitions: bool = True) -> Worker:
        """Start the worker and wait until it serves (and, by default, holds every flow-parts partition)."""
        self.wait_partitions = wait_partitions
        self.datadir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.command_prefix, sys.executable, "-m", "faust", "-A", "app", "worker",
                                      "-l", "info",
                                      "--web-port", str(self.port)],
                                     cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.5)
        raise AssertionError(f"worker not ready in {timeout_s} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        import json
        import urllib.request
        try:
            req = urllib.request.Request(self.url + "/v1/health", headers=AUTH)
            with urllib.request.urlopen(req, timeout=5, context=getattr(self, "ssl", None)) as r:
                body = json.loads(r.read())
        except Exception:
            return False
        n = int(self.env["FLOWSIGHT_PARTITIONS"])
        assigned = [a.split(":")[0] for a in body.get("assigned", [])]
        if not self.wait_partitions:
            return body.get("status") == "ok"
        return body.get("status") == "ok" and all(
            sum(1 for t in assigned if t.endswith(topic)) == n for topic in ("flow-parts", "pcap-chunks"))

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def errors(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [ln for ln in text.splitlines() if "Traceback" in ln or "[CRITICAL]" in ln]


@pytest.fixture
def deployment(kafka, tmp_path):
    """A factory of workers that share one app id and topic prefix, unique to the test."""
    tag = uuid.uuid4().hex[:8]
    workers: list[Worker] = []

    def make(**settings: str) -> Worker:
        w = Worker(kafka, tmp_path / f"w{len(workers)}", f"fs-{tag}", f"t{tag}-", **settings)
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()


async def upload(session: aiohttp.ClientSession, url: str, body: bytes, sensor: str | None = None,
                 block_id: str | None = None, method: str = "PUT",
                 content_type: str = "application/octet-stream") -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **AUTH}
    if sensor:
        headers["X-Sensor"] = sensor
    if block_id:
        headers["X-Block-Id"] = block_id
    async with session.request(method, url + "/v1/captures", data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def drain(session: aiohttp.ClientSession, url: str, cursor: str | None, until, timeout_s: float = 120,
                quiet_s: float = 4) -> tuple[list[dict], str | None]:
    """Long-poll /v1/flows until ``until(records)`` holds and then nothing more arrives for quiet_s."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        params = {"timeout": str(quiet_s if until(got) else 5)}
        if cursor:
            params["cursor"] = cursor
        async with session.get(url + "/v1/flows", params=params, headers=AUTH) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        cursor = body["cursor"]
        got.extend(body["records"])
        if not body["records"] and until(got):
            return got, cursor
    return got, cursor


class Broker:
    """A Kafka of a test's own (port and data folder apart from the session broker), to stop and start."""

    def __init__(self, var: Path, base_port: int, nodes: int = 1):
        self.env = kafka_env(var, base_port)
        self.nodes = nodes
        self.bootstrap = ",".join(f"127.0.0.1:{base_port + 2 * i}" for i in range(nodes))

    def run(self, *args: str) -> None:
        r = subprocess.run([str(KAFKA_SH), *args], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"kafka.sh {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


@contextlib.contextmanager
def broker_of_its_own(name: str, port_offset: int, nodes: int = 1, **env: str):
    """A fresh broker (or cluster) on its own ports and data folder, stopped afterwards. Offsets in use:
    10 own-kafka, 20-25 the 3-node cluster, 30 badnet-kafka, 40 (and 1040) sasl-kafka."""
    b = Broker(TEST_VAR / name, KAFKA_PORT + port_offset, nodes)
    b.env.update(env)
    b.run("wipe")
    b.run("start", str(nodes))
    try:
        yield b
    finally:
        b.run("stop")


@pytest.fixture
def own_broker(kafka):
    """A second one-node broker for tests that stop it (the session one must stay up)."""
    with broker_of_its_own("own-kafka", 10) as b:
        yield b
