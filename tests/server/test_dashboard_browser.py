"""The dashboard (``/ui``) in a real browser: Debian's Chromium, headless, driven by Selenium.

The test pastes the admin key, sees the deployments of a running ``msgflux serve`` and the
requests and spend charts per gateway and per key, makes one deployment fail (the fake
upstream answers 500) and sees its breaker open within the refresh interval, creates a key in
the page and calls the server with it through the openai SDK (and sees that use against its
rpm and budget), rotates it there (both secrets work, the old one for its grace period), then
revokes it and sees the 401. The page fits a 1366 x 768 laptop screen. The browser's own logs
show what the page did: no CSP violation, no request to anything but the server's origin, the
admin key in sessionStorage only.

A screenshot of the page is kept as ``dashboard.png`` in the test's tmp dir, and copied to
``$MSGFLUX_TEST_ARTIFACTS`` when that is set (``docs/dashboard.png`` is one of them). Skipped
only when chromium or chromedriver is not installed (``make browser``), saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.server.harness import SERVER_KEY, Served, chat_gateway, start
from tests.upstream import Reply, Upstream

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
USER_KEY = "sk-test-dashboard-user-01"
CHAT: Any = [{"role": "user", "content": "hi"}]
REFRESH = 3.0
"""The page's refresh interval (``dashboard.REFRESH``)."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=f"{CHROMIUM} and {CHROMEDRIVER} are needed (`make browser` installs them)",
    ),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1440,1500",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)  # fmt: skip
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Upstream]]:
    with Upstream() as up:
        gateway = chat_gateway(
            up.base_url,
            up.base_url,
            breaker={"failure_threshold": 2, "failure_rate": None, "open_for": 120},
        )
        for deployment in gateway["models"]:  # a price, so the spend charts have bars
            deployment["price"] = {"input_per_mtok": 1000, "output_per_mtok": 1000}
        config = {
            "server": {
                "keys": [
                    {"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True},
                    {"name": "app", "key": USER_KEY, "models": "*"},
                ]
            },
            "gateways": {"chat": gateway},
        }
        server = start(tmp_path, config)
        try:
            yield server, up
        finally:
            server.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the element is not there yet, or was just replaced
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


def test_chromium_shows_deployments_an_open_breaker_and_a_key_made_rotated_revoked(
    browser: Any, served: tuple[Served, Upstream], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    server, up = served
    client = openai.OpenAI(base_url=server.base_url, api_key=USER_KEY, max_retries=0)
    client.chat.completions.create(model="chat", messages=CHAT)

    def text(css: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, css).text)

    def breaker(deployment: str) -> str:
        return text(f'tr[data-gateway="chat"][data-deployment="{deployment}"] td.breaker')

    # Load the page and paste the admin key.
    browser.get(server.url + "/ui")
    assert browser.title == "msgflux gateway"
    browser.find_element(By.ID, "admin-key").send_keys(SERVER_KEY)
    browser.find_element(By.ID, "connect").click()
    wait_for(lambda: breaker("d0") == "closed" and breaker("d1") == "closed", 10, "deployments")
    assert browser.execute_script("return sessionStorage.getItem('msgflux.adminKey')") == (
        SERVER_KEY
    )
    assert browser.execute_script("return localStorage.length + document.cookie.length") == 0
    assert SERVER_KEY not in browser.page_source

    # One deployment fails: its breaker opens, and the page shows it within a refresh.
    up.set_default(Reply(status=500), model="m0")
    for _ in range(3):
        client.chat.completions.create(model="chat", messages=CHAT)  # d1 answers
    opened = time.monotonic()
    wait_for(lambda: breaker("d0").startswith("open"), REFRESH + 2, "d0's breaker open")
    assert time.monotonic() - opened <= REFRESH + 2
    assert breaker("d1") == "closed"
    wait_for(lambda: "InternalServerError" in text("#failures"), REFRESH + 2, "failed attempts")
    for series in ("gateway:chat", "key:app"):  # requests and spend, per gateway and per key
        charts = f'[data-series="{series}"] svg.chart'
        assert browser.find_elements(By.CSS_SELECTOR, f"{charts}.requests rect")
        assert browser.find_elements(By.CSS_SELECTOR, f"{charts}.spend rect")
    assert "$0.0000 spent" not in text('[data-series="key:app"]')

    # A key made in the page works with the openai SDK, its use shows against its limit ...
    browser.find_element(By.ID, "create-name").send_keys("from-the-browser")
    browser.find_element(By.ID, "create-rpm").send_keys("50")
    browser.find_element(By.ID, "create-budget").send_keys("5")
    browser.find_element(By.ID, "create-team").send_keys("web")
    browser.find_element(By.ID, "create-submit").click()
    secret = wait_for(lambda: text("#secret-value"), 5, "the new key's secret")
    assert secret.startswith("mfx-")
    made = openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0)
    assert made.chat.completions.create(model="chat", messages=CHAT).choices
    row = 'tr[data-key="from-the-browser"]'
    wait_for(lambda: text(f"{row} td.key-status") == "active", REFRESH + 2, "the key listed")
    wait_for(lambda: "1 / 50" in text(row), REFRESH + 2, "its use against its rpm")
    assert "/ $5.00 per day" in text(row)  # and against its budget
    browser.find_element(By.ID, "secret-done").click()
    assert secret not in browser.page_source

    # ... a rotation in the page gives a new secret (the old one works its grace period) ...
    browser.find_element(By.CSS_SELECTOR, f"{row} button.rotate").click()
    rotated = wait_for(lambda: text("#secret-value"), 5, "the rotated secret")
    assert rotated.startswith("mfx-") and rotated != secret
    fresh = openai.OpenAI(base_url=server.base_url, api_key=rotated, max_retries=0)
    assert fresh.chat.completions.create(model="chat", messages=CHAT).choices
    assert made.chat.completions.create(model="chat", messages=CHAT).choices  # grace
    browser.find_element(By.ID, "secret-done").click()

    # ... until it is revoked there (two clicks: Revoke, then Confirm revoke).
    def revoke() -> bool:
        if text(f"{row} td.key-status") == "revoked":
            return True
        button = browser.find_element(By.CSS_SELECTOR, f"{row} button.revoke")
        button.click()
        if button.text == "Confirm revoke":  # a refresh in between re-renders it unarmed
            button.click()
        return False

    wait_for(revoke, 10, "the key revoked")
    for client_ in (made, fresh):
        with pytest.raises(openai.AuthenticationError):
            client_.chat.completions.create(model="chat", messages=CHAT)
    wait_for(lambda: "revoke" in text("#audit"), REFRESH + 2, "the audit entry")
    assert "rotate" in text("#audit") and rotated not in browser.page_source

    shot = tmp_path / "dashboard.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("MSGFLUX_TEST_ARTIFACTS")  # CI: a folder it uploads
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "dashboard.png")

    # Readable on a laptop screen: nothing wider than a 1366 x 768 window.
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.set_window_size(1366, 768)
    wide = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    scroll, client = wait_for(lambda: browser.execute_script(wide), 2, "the page's width")
    assert scroll <= client, (scroll, client)

    # What the page did: no policy violation, no error, nothing but same-origin calls.
    console = browser.get_log("browser")
    assert not [e for e in console if e["level"] == "SEVERE"], console
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls and all(u.startswith(server.url + "/") for u in urls), urls
    assert {u.removeprefix(server.url).split("?")[0] for u in urls} >= {
        "/ui",
        "/ui/app.js",
        "/ui/style.css",
        "/admin/dashboard",
        "/admin/keys",
    }
