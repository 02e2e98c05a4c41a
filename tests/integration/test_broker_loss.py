"""A broker that goes away: uploads get 503 with Retry-After, and work again once it is back."""
from __future__ import annotations

import asyncio
import os
import subprocess

import aiohttp
import pytest

from tests import reference
from tests.conftest import AUTH, TOKEN, Worker, drain
from tests.integration.test_pipeline import expected, per_sensor, sensor_of
from tests.integration.test_shipper import SHIP_SH

pytestmark = pytest.mark.integration


async def test_while_the_broker_is_down_uploads_get_503_and_the_shipper_retries_until_it_is_back(
        own_broker, tmp_path):
    rel = "real/zeek-wikipedia.pcap"
    body = (reference.pcaps_dir() / rel).read_bytes()
    w = Worker(own_broker.bootstrap, tmp_path / "w", "fs-loss", "loss-", FLOWSIGHT_PRODUCE_TIMEOUT_S="4").start()
    try:
        own_broker.run("stop")
        async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=60)) as s:
            # health tells the truth: once said ok, with the producer object alive and no broker
            for _ in range(30):
                async with s.get(w.url + "/readyz") as r:
                    if r.status == 503:
                        assert "Kafka does not answer" in (await r.json())["reasons"]
                        break
                await asyncio.sleep(1)
            else:
                raise AssertionError("/readyz said ready for 30 s with the broker stopped")
            async with s.get(w.url + "/v1/health") as r:
                h = await r.json()
                assert r.status == 503 and h["status"] == "degraded" and h["kafka"]["reachable"] is False, h
            # the same block id as the shipper's (name, size and cksum): a 503'd upload may still land later,
            # and only the same id makes its retry count once
            path = tmp_path / "wiki.pcap"
            path.write_bytes(body)
            crc, size = subprocess.run(["cksum"], stdin=open(path, "rb"), capture_output=True,
                                       text=True).stdout.split()[:2]
            async with s.put(w.url + "/v1/captures", data=body,
                             headers={"X-Sensor": sensor_of(rel), "X-Block-Id": f"wiki.pcap-{size}-{crc}"}) as r:
                assert r.status == 503, await r.text()
                assert int(r.headers["Retry-After"]) > 0
                assert "retry" in (await r.json())["error"].lower()
            # the shipper keeps retrying while the broker is down, and succeeds once it is back
            shipper = subprocess.Popen([str(SHIP_SH), "-u", w.url, "-s", sensor_of(rel), "-r", str(path)],
                                       stderr=subprocess.PIPE, text=True, env={**os.environ, "FLOWSIGHT_TOKEN": TOKEN})
            await asyncio.sleep(12)
            assert shipper.poll() is None and path.exists()
            own_broker.run("start", "1")
            _, err = shipper.communicate(timeout=180)
            assert shipper.returncode == 0 and "retrying" in err and not path.exists(), err
            exp = expected([rel])
            records, _ = await drain(s, w.url, None, lambda got: per_sensor(got) == exp, timeout_s=180)
        assert per_sensor(records) == exp
    finally:
        w.stop()
