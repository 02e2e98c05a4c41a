"""The capture-side shippers against a real worker: ship.sh (sh + curl) and `faust -A app ship`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import aiohttp
import pytest

from tests import reference
from tests.conftest import AUTH, SENSOR_TOKENS, ROOT, drain
from tests.integration.test_faults import exact

pytestmark = pytest.mark.integration
SHIP_SH = ROOT / "compose" / "shipper" / "ship.sh"


async def test_ship_sh_from_dumpcap_printname_and_the_python_shipper(deployment, tmp_path):
    base = reference.pcaps_dir()
    w = deployment().start()
    spool, done = tmp_path / "spool", tmp_path / "done"
    spool.mkdir()
    names = ["real/zeek-wikipedia.pcap", "real/ndpi-iphone.pcap", "real/ndpi-android.pcap"]
    for rel in names:
        shutil.copy(base / rel, spool)
    # like `dumpcap -b printname:stdout | ship.sh`: file names on standard input, run by dash
    listing = "".join(f"{spool / n.split('/')[1]}\n" for n in names[:2])
    key = tmp_path / "tap1.token"  # tap1's own token: it decides the sensor, no -s needed
    key.write_text(SENSOR_TOKENS["tap1"] + "\n")
    r = subprocess.run(["dash", str(SHIP_SH), "-u", w.url, "-k", str(key), "-m", str(done)], input=listing,
                       text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(done)) == sorted(n.split("/")[1] for n in names[:2])
    # again, once decoded: the stable block id makes the repeat a duplicate
    first: dict = {}
    for rel in names[:2]:
        for k, v in reference.flow_table(base / rel).items():
            row = first.setdefault(k, [0, 0])
            row[0] += v[0]
            row[1] += v[1]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        await drain(s, w.url, None, lambda got: exact(got).get("tap1") == first)
    shutil.copy(done / "zeek-wikipedia.pcap", spool)
    r = subprocess.run([str(SHIP_SH), "-u", w.url, "-k", str(key), "-r", str(spool / "zeek-wikipedia.pcap")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and " 200" in r.stderr and not (spool / "zeek-wikipedia.pcap").exists(), r.stderr
    # the Python shipper
    r = subprocess.run([sys.executable, "-m", "faust", "-A", "app", "ship", "--url", w.url, "--token-file", str(key),
                        "--remove", str(spool / "ndpi-android.pcap")], cwd=ROOT, env=w.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not (spool / "ndpi-android.pcap").exists()
    want: dict = {}
    for rel in names:
        for k, v in reference.flow_table(base / rel).items():
            row = want.setdefault(k, [0, 0])
            row[0] += v[0]
            row[1] += v[1]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        records, _ = await drain(s, w.url, None, lambda got: exact(got).get("tap1") == want)
    assert exact(records)["tap1"] == want


async def test_ship_sh_rejects_a_bad_file_without_retrying(deployment, tmp_path):
    w = deployment().start()
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture")
    done = tmp_path / "done"
    r = subprocess.run([str(SHIP_SH), "-u", w.url, "-m", str(done), str(bad)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "FLOWSIGHT_TOKEN": SENSOR_TOKENS["tap2"]})
    assert r.returncode == 1 and "rejected with 400" in r.stderr
    assert (done / "rejected" / "bad.pcap").exists()
