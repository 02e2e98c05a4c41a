"""`make run` as a user runs it (compose/run.sh): it serves, the commands beside it find it, and a SIGTERM to
its process group stops the worker first, then Kafka, within 10 s, without a traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import KAFKA_PORT, ROOT, free_port

pytestmark = pytest.mark.integration


def test_make_run_serves_tells_its_commands_where_it_is_and_stops_in_order_within_10_s(kafka, tmp_path):
    var = tmp_path / "var"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSIGHT_", "KAFKA_"))}
    env.update({"FLOWSIGHT_VAR": str(var), "KAFKA_BASE_PORT": str(KAFKA_PORT + 50), "FLOWSIGHT_WEB_PORT": str(port),
                "FLOWSIGHT_PARTITIONS": "2"})
    log = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen(["bash", str(ROOT / "compose" / "run.sh")], cwd=ROOT, env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError((tmp_path / "run.log").read_text()[-3000:])
        deployment = (var / "run" / "deployment.env").read_text()
        assert f"FLOWSIGHT_WEB_PORT={port}" in deployment and f":{KAFKA_PORT + 50}" in deployment
        # a command beside it, with nothing set, reaches this deployment (not 127.0.0.1:9092 or port 6066)
        bare = {k: v for k, v in env.items() if k not in ("FLOWSIGHT_WEB_PORT",)}
        out = subprocess.run([sys.executable, "-c", "from app.settings import Settings; s = Settings.from_env(); "
                              "print(s.broker, s.own_url)"], cwd=ROOT, env=bare, capture_output=True, text=True)
        assert out.stdout.split() == [f"kafka://127.0.0.1:{KAFKA_PORT + 50}", f"http://localhost:{port}"], out
        time.sleep(3)
        t0 = time.monotonic()
        os.killpg(run.pid, signal.SIGTERM)              # what a terminal's Ctrl-C or a service manager does
        run.wait(30)
        took = time.monotonic() - t0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        subprocess.run([str(ROOT / "compose" / "kafka" / "kafka.sh"), "stop"], env=env, capture_output=True)
    text = (tmp_path / "run.log").read_text(errors="replace")
    assert took < 10, f"stopping took {took:.1f} s\n{text[-3000:]}"
    assert "flowsight: stopped" in text and "Traceback" not in text, text[-3000:]
    assert not (var / "run" / "deployment.env").exists()
    alive = subprocess.run(["pgrep", "-f", f"kafka.logs.dir={var}"], capture_output=True, text=True)
    assert alive.stdout.strip() == "", "Kafka outlived make run"
