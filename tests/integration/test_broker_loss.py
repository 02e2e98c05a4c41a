"""A broker that goes away: uploads get 503 with Retry-After, and work again once it is back."""
from __future__ import annotations

import aiohttp
import pytest

from tests import reference
from tests.conftest import Worker, drain, upload
from tests.integration.test_pipeline import expected, per_sensor, sensor_of

pytestmark = pytest.mark.integration


async def test_upload_while_the_broker_is_down_is_503_and_a_retry_later_counts_once(own_broker, tmp_path):
    rel = "real/zeek-wikipedia.pcap"
    body = (reference.pcaps_dir() / rel).read_bytes()
    w = Worker(own_broker.bootstrap, tmp_path / "w", "fs-loss", "loss-").start()
    try:
        own_broker.run("stop")
        async with aiohttp.ClientSession() as s:
            async with s.put(w.url + "/v1/captures", data=body, headers={"X-Sensor": sensor_of(rel)}) as r:
                assert r.status == 503, await r.text()
                assert int(r.headers["Retry-After"]) > 0
                assert "retry" in (await r.json())["error"].lower()
            own_broker.run("start", "1")
            for _ in range(30):  # the client's retry loop, as the shipper does it
                status, answer = await upload(s, w.url, body, sensor=sensor_of(rel))
                if status == 202:
                    break
                assert status == 503
            assert status == 202, answer
            exp = expected([rel])
            records, _ = await drain(s, w.url, None, lambda got: per_sensor(got) == exp, timeout_s=180)
        assert per_sensor(records) == exp
    finally:
        w.stop()
