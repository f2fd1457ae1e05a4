"""The demo and the toolbar panel in a real browser: headless Chromium.

The demo is served by waitress on a free port, as development.ini
configures it (the debug toolbar included), its Valkey embedded. Two
browsers (two Chromium processes, each with its own profile and cookies)
log in as the same user; one sees both in "Your sessions" and ends the
other, which is then logged out; the toolbar's "Redis session" tab shows
no round trip for a read that the process's local cache serves. The
screenshots in the docs are taken here (``PRS_SCREENSHOTS=docs/_static``):
the page after "Add one", "Your sessions", and the toolbar's panel.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them; see docs/contributing.rst). Selenium is pointed at
``/usr/bin/chromedriver``, so that Selenium Manager downloads nothing.
Skipped when they are missing, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import configparser
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prs_demo
import pytest
from prs_demo.embedded import stop_valkey

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INI = Path(prs_demo.__file__).parents[1] / "development.ini"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
]


def _require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    why = (
        f"{' and '.join(missing)} not found: apt-get install chromium "
        "chromium-driver (see docs/contributing.rst)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo, as development.ini sets it up, on free ports: its URL."""
    _require_chromium()
    import waitress

    # [app:main] as pserve reads it (the demo's egg need not be installed).
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(INI)
    settings = {k: v for k, v in ini["app:main"].items() if k != "use"}
    # The ini's fixed port may be another demo's: the same embedded server
    # on a free one.
    settings.pop("redis.sessions.url")
    app = prs_demo.main({}, **settings)
    server: Any = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)
        stop_valkey(app.registry.embedded_valkey)


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``browsers()``: a new headless Chromium, with a profile of its own."""
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    started: list[Any] = []

    def start() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        profile = tmp_path_factory.mktemp("chromium-profile")
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=str(CHROMEDRIVER))
        driver = webdriver.Chrome(service=service, options=options)
        driver.implicitly_wait(5)
        started.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in started:
            driver.quit()


def by_id(driver: Any, id_: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(driver.find_element(By.ID, id_).text.split())


def click(driver: Any, selector: str) -> None:
    """Click what ``selector`` finds and wait for the page it leads to: read
    at once, the old page's elements may still answer (or go stale). The
    old page's window carries a mark; the new page's has none."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.prsOldPage = true;")
    driver.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return window.prsOldPage === undefined"
            " && document.readyState === 'complete';"
        )
    )


def log_in(driver: Any, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    driver.find_element(By.NAME, "username").send_keys(name)
    click(driver, "#login button")
    assert by_id(driver, "user") == f"Logged in as {name}."


def screenshot(driver: Any, name: str) -> None:
    """Kept in ``$PRS_SCREENSHOTS`` (docs/_static, for the docs) if set."""
    where = os.environ.get("PRS_SCREENSHOTS")
    if where:
        driver.save_screenshot(str(Path(where) / name))


def test_two_browsers_one_ends_the_other_and_the_panel_counts_a_read(
    demo: str, browsers: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    first, second = browsers(), browsers()
    log_in(first, demo, "alice")
    log_in(second, demo, "alice")
    click(first, "#count-form button")
    assert by_id(first, "count") == "Counter in this session: 1"
    assert by_id(first, "saved") == "count, (slid)"
    screenshot(first, "demo.png")

    click(first, "#sessions-link")
    rows = first.find_elements(By.CSS_SELECTOR, "#sessions tr.session")
    assert len(rows) == 2
    names = [row.find_element(By.CLASS_NAME, "browser").text for row in rows]
    assert all(name.startswith("HeadlessChrome ") for name in names), names
    assert all(name.endswith(" on Linux") for name in names), names
    current = first.find_element(By.CSS_SELECTOR, "tr.current .browser")
    assert "Mozilla/5.0" in current.get_attribute("title")  # the raw string
    assert first.find_element(By.ID, "inspector").is_displayed()
    screenshot(first, "demo-sessions.png")

    click(first, "form.end button")
    assert by_id(first, "flash") == "That session has ended."
    assert len(first.find_elements(By.CSS_SELECTOR, "#sessions tr.session")) == 1

    second.refresh()
    assert by_id(second, "user") == "Not logged in."
    first.get(demo + "/")
    assert by_id(first, "user") == "Logged in as alice."

    # Reads: the page again, nothing changes. The second is served from the
    # process's local cache, and its toolbar shows no round trip.
    first.get(demo + "/")
    assert by_id(first, "so-far") in (
        "1 round trip: HGETALL",
        "0 round trips: served from this process's cache",
    )
    first.get(demo + "/")
    assert by_id(first, "so-far") == "0 round trips: served from this process's cache"
    toolbar = first.find_element(By.ID, "pShowToolBarButton").get_attribute("href")
    first.get(toolbar)
    tab = first.find_element(By.CSS_SELECTOR, "#pDebugPanel-redis_sessions a")
    assert "0 round trips" in tab.text
    tab.click()
    report = first.find_element(By.CSS_SELECTOR, "#prs-round-trips td")
    WebDriverWait(first, 5).until(expected_conditions.visibility_of(report))
    assert " ".join(report.text.split()) == "0"
    cache = first.find_element(By.CSS_SELECTOR, "#prs-cache td").text
    assert cache.startswith("hit: 0 round trips")
    assert first.find_element(By.CSS_SELECTOR, "#prs-saved td").text == "none"
    cookie = first.find_element(By.CSS_SELECTOR, "#prs-cookie td").text
    assert cookie.startswith("not sent: unchanged")
    screenshot(first, "toolbar-panel.png")
