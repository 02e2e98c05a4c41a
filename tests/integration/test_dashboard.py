"""The analyst's page in a real browser (Debian's Chromium, headless, driven by Selenium).

A worker scores a capture with a flood; the page must list the alert under a title
that names what happened, draw its chart with the expected band, show the flood's
target among the top destinations, send an acknowledgement (with who and a note)
that comes back on /v1/actions, go in one click to the alert's flows (the explorer:
flows, top N, a chart with a time axis) and to the target's own page, and suppress
and lift. Screenshots are kept in var/test-artifacts/ (dashboard, explorer,
suppressions).
"""
from __future__ import annotations

import shutil
import time

import aiohttp
import pytest

from tests.conftest import AUTH, TOKEN, ROOT, upload
from tests.integration.test_alerts import TARGET, capture

pytestmark = pytest.mark.integration
ARTIFACTS = ROOT / "var" / "test-artifacts"


@pytest.fixture
def browser():
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: the dashboard test needs Debian's chromium and chromium-driver "
                        "(make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = predicate()
        except Exception:  # the element is not there yet
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def test_dashboard_shows_explains_and_acknowledges_an_alert(deployment, browser):
    from selenium.webdriver.common.by import By

    w = deployment(FLOWSIGHT_WINDOW_S="60").start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(w.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        browser.get(w.url + "/")
        # no session: the sign-in form; an API token signs in, and the session is an HttpOnly cookie
        wait_for(lambda: browser.find_element(By.ID, "token").is_displayed(), 10, "the sign-in form")
        assert not browser.find_element(By.ID, "app").is_displayed()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "signin").click()
        wait_for(lambda: browser.find_element(By.ID, "app").is_displayed(), 10, "the page after signing in")
        cookie = browser.get_cookie("flowsight_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"], cookie
        status, answer = await upload(s, w.url, capture(), sensor="site-a")
        assert status == 202, answer
        alert_id = wait_for(lambda: [li.get_attribute("data-id") for li in browser.find_elements(
            By.CSS_SELECTOR, "#alerts li") if "SYN flood" in li.text], 120, "the alert in the list")[0]
        # the list is redrawn as records arrive: find the item afresh until the click lands
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, f'#alerts li[data-id="{alert_id}"]').click() or
                 browser.find_element(By.ID, "d-title").text, 10, "the alert's details")
        path = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#charts svg path.observed"), 10, "the chart")
        assert path.get_attribute("d").count("L") >= 10            # a line through the recent windows
        assert browser.find_element(By.CSS_SELECTOR, "#charts svg path.band").get_attribute("d").endswith("Z")
        assert browser.find_elements(By.CSS_SELECTOR, "#charts svg path.threshold")
        wait_for(lambda: "decode" in browser.find_element(By.ID, "stages").text, 10, "the stages' progress")
        assert TARGET in browser.find_element(By.ID, "t-dst").text
        assert "P(event)" in browser.find_element(By.ID, "d-facts").text
        title = browser.find_element(By.ID, "d-title").text
        assert title.startswith(f"SYN flood on {TARGET}:80/tcp") and "sources" in title, title   # reads like a finding
        # the evidence ranked by what made the alert: the failed attempts' targets, sources and port
        assert browser.find_element(By.ID, "h-dst").text == "Targets of failed attempts"
        assert browser.find_element(By.CSS_SELECTOR, "#t-dst tr:nth-child(2)").text.startswith(TARGET)
        assert "80/tcp" in browser.find_element(By.ID, "t-flows").text                       # a port, not 80 bytes
        browser.find_element(By.ID, "note").send_keys("flood seen")
        browser.find_element(By.ID, "ack").click()
        wait_for(lambda: "acknowledged by tests" in browser.find_element(By.ID, "d-state").text, 30,
                 "the acknowledgement, with who")
        assert "flood seen" in browser.find_element(By.ID, "d-state").text
        assert not browser.find_element(By.ID, "ack").is_enabled()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        async with s.get(w.url + "/v1/actions", params={"timeout": "1"}) as r:
            acts = (await r.json())["records"]
        assert [(a["id"], a["by"], a["note"]) for a in acts if a["action"] == "ack"] == [(alert_id, "tests", "flood seen")]

        # one click to the alert's flows: the explorer, its range and filter, the flood's flows and top N
        browser.find_element(By.ID, "to-flows").click()
        wait_for(lambda: browser.find_element(By.ID, "explorer").is_displayed(), 10, "the flows explorer")
        assert TARGET in browser.find_element(By.ID, "q-filter").get_attribute("value")
        wait_for(lambda: TARGET in browser.find_element(By.ID, "q-flows").text, 60, "the alert's flows")
        assert "80/tcp" in browser.find_element(By.ID, "q-top-port").text
        assert TARGET in browser.find_element(By.ID, "q-top-dst").text
        chart_path = browser.find_element(By.CSS_SELECTOR, "#q-chart svg path.observed").get_attribute("d")
        assert chart_path.startswith("M") and "UTC" in browser.find_element(By.ID, "q-chart").text   # a time axis
        browser.save_screenshot(str(ARTIFACTS / "explorer.png"))
        # the target's own page: its flows and the alert about it
        next(a for a in browser.find_elements(By.CSS_SELECTOR, "#q-top-dst a.host") if a.text == TARGET).click()
        wait_for(lambda: f"Host {TARGET}" in browser.find_element(By.ID, "q-host").text, 60, "the host's page")
        assert "alert(s) about it" in browser.find_element(By.ID, "q-host").text
        assert browser.find_element(By.ID, "q-filter").get_attribute("value") == f"host {TARGET}"

        # suppress with a note, see it listed, lift it
        browser.find_element(By.ID, "tab-alerts").click()
        browser.find_element(By.ID, "note").send_keys("maintenance")
        browser.find_element(By.ID, "suppress").click()
        browser.find_element(By.ID, "tab-supp").click()
        row = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '#supp tr[data-entity="site-a"]'), 30,
                       "the suppression in the list")
        assert "maintenance" in row.text and "tests" in row.text
        browser.save_screenshot(str(ARTIFACTS / "suppressions.png"))
        row.find_element(By.CSS_SELECTOR, "button.lift").click()
        wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, '#supp tr[data-entity="site-a"]'), 30,
                 "the suppression lifted")
        async with s.post(w.url + "/v1/actions", json={"action": "delete"}) as r:
            assert r.status == 400 and "action must be" in (await r.json())["error"]
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


async def test_an_alert_about_an_entity_reads_as_its_finding_and_leads_to_its_flows(deployment, browser):
    from selenium.webdriver.common.by import By

    from tests.reference import pcaps_dir
    scan = (pcaps_dir() / "attack" / "esnet-masscan-tcp_0_1000.pcap").read_bytes()
    w = deployment(FLOWSIGHT_WINDOW_S="60").start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        status, answer = await upload(s, w.url, scan, sensor="edge")
        assert status == 202, answer
        browser.get(w.url + "/")
        wait_for(lambda: browser.find_element(By.ID, "token").is_displayed(), 10, "the sign-in form")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "signin").click()
        item = wait_for(lambda: [li for li in browser.find_elements(By.CSS_SELECTOR, "#alerts li")
                                 if "vertical scan" in li.text], 120, "the scan's alert in the list")[0]
        assert "ports of 198.124.152.15 from 172.31.15.102" in item.text, item.text
        alert_id = item.get_attribute("data-id")
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, f'#alerts li[data-id="{alert_id}"]').click() or
                 browser.find_element(By.ID, "d-title").text, 10, "the alert's details")
        facts = browser.find_element(By.ID, "d-facts").text
        assert "target" in facts and "198.124.152.15" in facts and "distinct-ports-per-host" in facts, facts
        assert browser.find_element(By.ID, "h-flows").text == "examplePorts"
        assert "/tcp" in browser.find_element(By.ID, "t-flows").text
        browser.save_screenshot(str(ARTIFACTS / "entity-alert.png"))
        browser.find_element(By.ID, "to-flows").click()
        wait_for(lambda: browser.find_element(By.ID, "explorer").is_displayed(), 10, "the flows explorer")
        assert "src host 172.31.15.102" in browser.find_element(By.ID, "q-filter").get_attribute("value")
        wait_for(lambda: "198.124.152.15" in browser.find_element(By.ID, "q-flows").text, 60, "the scan's flows")
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not w.errors(), w.log_tail()
