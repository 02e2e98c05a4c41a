"""A bad network between the worker and the broker, and between the uploader and the worker.

The worker runs in a network namespace of its own (veth pair 10.77.0.1 <-> 10.77.0.2). Inside it,
nft drops 2% of incoming and outgoing packets at random, a tbf qdisc limits the rate (queueing
delay), and the broker is reached through a proxy adding 100 ms +- 20 ms that resets one broker
connection mid-stream. Totals must stay exact, and the counters must show that packets really
were dropped, limited and delayed. A machine that cannot build the namespace fails this test.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import aiohttp
import pytest

from tests import reference
from tests.conftest import AUTH, KAFKA_PORT, ROOT, Worker, broker_of_its_own, drain, upload
from tests.integration.test_faults import FILES, body, exact, report
from tests.integration.test_pipeline import expected, sensor_of

pytestmark = pytest.mark.integration
NS, HOST_IF, NS_IF = "fsbadnet", "fsbn-h", "fsbn-n"
HOST_IP, NS_IP = "10.77.0.1", "10.77.0.2"


def sh(*cmd: str, ns: bool = False) -> str:
    full = ["ip", "netns", "exec", NS, *cmd] if ns else list(cmd)
    r = subprocess.run(full, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed: {r.stderr.strip()}")
    return r.stdout


@pytest.fixture
def badnet():
    if os.geteuid() != 0:
        pytest.fail("the bad-network test builds a network namespace and needs root")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    try:
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        sh("ip", "link", "set", NS_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF, ns=True)
        sh("ip", "link", "set", NS_IF, "up", ns=True)
        sh("ip", "link", "set", "lo", "up", ns=True)
        sh("tc", "qdisc", "add", "dev", NS_IF, "root", "tbf", "rate", "20mbit", "burst", "32kb", "latency", "200ms",
           ns=True)
        rules = (f"table inet chaos {{\n"
                 f" chain in {{\n  type filter hook input priority 0;\n"
                 f"  iifname \"{NS_IF}\" numgen random mod 100 < 2 counter drop\n }}\n"
                 f" chain out {{\n  type filter hook output priority 0;\n"
                 f"  oifname \"{NS_IF}\" numgen random mod 100 < 2 counter drop\n }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input=rules, text=True, check=True,
                       capture_output=True)
    except (AssertionError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"this machine cannot build the test network namespace: {exc}")
    yield
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)


@pytest.fixture
def reachable_broker(kafka):
    """A broker that also listens on the host end of the veth pair."""
    with broker_of_its_own("badnet-kafka", 30, KAFKA_LISTEN_HOST="0.0.0.0") as b:
        yield b


async def test_lossy_slow_network_with_a_reset_keeps_totals_exact(badnet, reachable_broker, tmp_path):
    reference.pcaps_dir()
    port = KAFKA_PORT + 30
    stats_file = tmp_path / "proxy.json"
    proxy = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, str(ROOT / "tests" / "netproxy.py"),
                              f"127.0.0.1:{port}", f"{HOST_IP}:{port}", "100", "20", "300000", str(stats_file)])
    w = Worker(f"127.0.0.1:{port}", tmp_path / "w", "fs-badnet", "bn-", FLOWSIGHT_PRODUCE_TIMEOUT_S="60",
               FLOWSIGHT_SESSION_TIMEOUT_S="30")
    w.url = f"http://{NS_IP}:{w.port}"
    w.command_prefix = ["ip", "netns", "exec", NS]
    exp = expected(FILES[:4])
    try:
        w.start(timeout_s=180)
        async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=180)) as s:
            for rel in FILES[:4]:
                for _ in range(30):
                    try:
                        status, answer = await upload(s, w.url, body(rel), sensor=sensor_of(rel))
                    except (aiohttp.ClientError, TimeoutError):
                        status, answer = 0, {}
                    if status in (200, 202):
                        break
                    time.sleep(2)
                assert status in (200, 202), answer
            records, _ = await drain(s, w.url, None, lambda got: exact(got) == exp, timeout_s=300)
        assert exact(records) == exp, report(exact(records), exp)
    finally:
        w.stop()
        proxy.terminate()
        proxy.wait()
    drops = [int(n) for n in re.findall(r"counter packets (\d+)", sh("nft", "list", "ruleset", ns=True))]
    assert sum(drops) > 0, "nft dropped no packet"
    qdisc = sh("tc", "-s", "qdisc", "show", "dev", NS_IF, ns=True)
    assert int(re.search(r"overlimits (\d+)", qdisc).group(1)) > 0, qdisc
    stats = json.loads(stats_file.read_text())
    assert stats["resets"] == 1 and stats["pieces_delayed"] > 100, stats
    assert 80 <= stats["delay_ms_total"] / stats["pieces_delayed"] <= 120, stats
