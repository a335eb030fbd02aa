"""The daemon's web UI in a real browser (issue 18's "Done when"), over the real libvirtd.

Every test starts a real ``infinibay daemon`` subprocess (:class:`Daemon`) on
loopback and drives headless Chromium (the ``browser`` fixture) through its
pages exactly as a person would: the login form, links, the live page left
open. Tokens come from ``infinibay token create``. With
``INFINIBAY_SCREENSHOTS=1`` the first test saves the list and a resource page
to ``docs/screenshots/`` (the README shows them).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.harness import Harness, doc
from tests.integration.test_daemon import ROOT, Daemon, dump, running, until
from tests.integration.test_daemon_access import _converged, ask, names, spawn, token

pytestmark = pytest.mark.integration
__all__ = ["spawn"]  # a fixture shared with test_daemon
SHOTS = ROOT / "docs" / "screenshots"


def _url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def _path(browser: WebDriver) -> str:
    return urllib.parse.urlsplit(browser.current_url).path


def _sign_in(browser: WebDriver, daemon: Daemon, secret: str) -> None:
    browser.get(_url(daemon, "/login"))
    field = browser.find_element(By.ID, "token")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text == "API token"
    field.send_keys(secret)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    WebDriverWait(browser, 15).until(
        lambda b: _path(b) == "/" and b.find_elements(By.CSS_SELECTOR, "table.resources")
    )


_ROWS = """
const table = document.querySelector("table.resources");
if (!table) { return {}; }
const headers = [...table.querySelectorAll("thead th")].map(th => th.textContent.trim());
const rows = {};
for (const tr of table.querySelectorAll("tbody tr[data-name]")) {
  rows[tr.dataset.name] = Object.fromEntries(
    [...tr.cells].map((td, i) => [headers[i], td.innerText.trim()]));
}
return rows;
"""


def _rows(browser: WebDriver) -> dict[str, dict[str, str]]:
    """The resource table, name -> {column header: cell text}, read in one go: a live
    update may swap it between two reads of single elements."""
    rows: dict[str, dict[str, str]] = browser.execute_script(_ROWS)
    return rows


def _texts(browser: WebDriver, selector: str) -> list[str]:
    """The text of every element ``selector`` finds, read in one go like :func:`_rows`."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);"
    texts: list[str] = browser.execute_script(script, selector)
    return texts


_OUTLINE = "return getComputedStyle(document.activeElement).outlineWidth;"
_UNLABELLED = (
    "return [...document.querySelectorAll('input, select, textarea')]"
    ".filter(e => e.labels.length === 0).map(e => e.outerHTML);"
)
_SIDEWAYS = "return document.documentElement.scrollWidth > window.innerWidth;"


def _raw(daemon: Daemon, path: str) -> tuple[int, dict[str, str]]:
    """A GET that follows no redirect."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def _shoot(browser: WebDriver, name: str) -> None:
    if os.environ.get("INFINIBAY_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SHOTS / name))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_a_token_pages_go_to_the_login_and_an_admin_sees_vms_history_and_refusals_live(
    h: Harness, spawn: Callable[..., Daemon], browser: WebDriver
) -> None:
    def declare(cpus: int) -> None:
        h.write(
            h.pool(), h.network(), h.template(),
            doc("VirtualMachine", h.name("web"), {"template": h.name("tpl"), "cpus": cpus},
                labels={"infinibay.io/owner": "alice", "team": "web"}),
            h.vm("db", powerState="Stopped"),
        )  # fmt: skip

    declare(cpus=2)
    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    daemon = spawn("--source", str(h.workdir), "--interval", "10m")
    until(lambda: daemon.readyz()["ready"], 120, "the daemon is ready", daemon)
    admin = token(h, "ops", "--role", "admin")

    # No token: the API says 401, the pages send the browser to the login.
    assert ask(daemon.port, "/api/v1/resources")[0] == 401
    assert _raw(daemon, "/")[0] == 303 and _raw(daemon, "/")[1]["Location"] == "/login"
    browser.get(_url(daemon, "/"))
    assert _path(browser) == "/login"
    browser.find_element(By.ID, "token").send_keys("ib_not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.ID, "login-error").text == "That token is not valid."
    )
    assert _path(browser) == "/login"

    _sign_in(browser, daemon, admin)
    rows = _rows(browser)
    web, db = h.name("web"), h.name("db")
    assert {web, db, h.name("pool"), h.name("net"), h.name("tpl")} <= set(rows)
    assert rows[web]["Phase"] == "Ready" and rows[web]["Power"] == "Running"
    assert rows[db]["Power"] == "Stopped" and rows[web]["Host"] == "local"
    assert rows[web]["Drift"] == "In sync" and rows[web]["Owner"] == "alice"
    WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.ID, "live-status").text == "Live updates: on"
    )
    # The cookie is HttpOnly: no script of the page reads the token; no page holds it.
    assert browser.execute_script("return document.cookie") == ""
    assert admin not in browser.page_source
    _shoot(browser, "ui-list.png")

    # A keyboard and a laptop screen do: the skip link comes first, shows, and leads to
    # the content; the focus is outlined; every field has a label; nothing scrolls sideways.
    ActionChains(browser).send_keys(Keys.TAB).perform()
    skip = browser.switch_to.active_element
    assert skip.text == "Skip to content" and skip.rect["y"] >= 0
    assert browser.execute_script(_OUTLINE) == "3px"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    assert browser.execute_script(_UNLABELLED) == []
    assert browser.execute_script(_SIDEWAYS) is False

    # The filters apply as they are typed, and the address keeps them.
    browser.find_element(By.ID, "f-q").send_keys(web)
    WebDriverWait(browser, 10).until(lambda b: set(_rows(b)) == {web})
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(browser.current_url).query) == {"q": [web]}
    browser.find_element(By.LINK_TEXT, web).click()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.TAG_NAME, "h1").text == web)
    page = browser.page_source
    assert f"template: {h.name('tpl')}" in browser.find_element(By.CSS_SELECTOR, "pre.yaml").text
    assert "cpus: 2" in browser.find_element(By.CSS_SELECTOR, "pre.yaml").text
    assert "Generation 1" in browser.find_element(By.ID, "history").text
    events = browser.find_element(By.ID, "events").text
    assert "Created" in events and "cli:" in events  # the actor of the apply
    assert browser.find_element(By.LINK_TEXT, "Open console").get_attribute("href") == _url(
        daemon, f"/console/{web}"
    )
    assert admin not in page

    # The page is live too: a new generation shows, with its diff, without a reload.
    browser.execute_script("window.infinibayNotReloaded = true")
    declare(cpus=3)
    WebDriverWait(browser, 60).until(lambda b: "Generation 2" in _texts(b, "#history")[0])
    assert "spec.cpus: 2 → 3" in _texts(browser, "#history")[0]
    assert "cpus: 3" in _texts(browser, "pre.yaml")[0]
    assert browser.execute_script("return window.infinibayNotReloaded") is True
    if os.environ.get("INFINIBAY_SCREENSHOTS") == "1":  # the whole page: history included
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1366, min(int(height) + 140, 2400))
        _shoot(browser, "ui-resource.png")
        browser.set_window_size(1366, 768)

    # A source that does not validate: the list says which revision was refused and why.
    browser.get(_url(daemon, "/"))
    WebDriverWait(browser, 10).until(lambda b: _texts(b, "#live-status") == ["Live updates: on"])
    (h.workdir / "manifests.yaml").write_text(
        dump(h.pool(), h.network(), h.template(), h.vm("web", cpus=2, memory="64"))
    )
    WebDriverWait(browser, 30).until(lambda b: "was refused" in _texts(b, "#source-banner")[0])
    banner = _texts(browser, "#source-banner")[0]
    assert "manifests.yaml:" in banner and "spec.memory" in banner
    assert str(daemon.readyz()["source"]["refusedRevision"]) in banner
    assert daemon.terminate() == 0


@pytest.mark.timing
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_destroyed_vm_shows_as_drift_then_healed_on_the_open_page_within_5s_without_reload(
    h: Harness, spawn: Callable[..., Daemon], browser: WebDriver
) -> None:
    (h.workdir / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = spawn("--source", str(h.workdir), "--interval", "10m")
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 30, "the daemon is ready", daemon)
    _sign_in(browser, daemon, token(h, "ops", "--role", "admin"))
    web = h.name("web")
    WebDriverWait(browser, 10).until(
        lambda b: (
            b.find_element(By.ID, "live-status").text == "Live updates: on"
            and _rows(b)[web]["Drift"] == "In sync"
        )
    )
    browser.execute_script("window.infinibayNotReloaded = true")

    h.domain("web").destroy()
    destroyed = time.monotonic()

    def recent(b: WebDriver) -> list[str]:
        return [line for line in _texts(b, "#recent tbody tr") if web in line]

    WebDriverWait(browser, 5, poll_frequency=0.1).until(
        lambda b: (
            _rows(b)[web]["Drift"] == "Healed"
            and any("DriftDetected" in line for line in recent(b))
            and any("DriftCorrected" in line for line in recent(b))
        )
    )
    assert time.monotonic() - destroyed < 5
    assert _rows(browser)[web]["Power"] == "Running"
    assert browser.execute_script("return window.infinibayNotReloaded") is True
    assert running(h, "web")
    assert daemon.terminate() == 0


def _fetch(browser: WebDriver, path: str) -> Any:
    """``path`` fetched by the page's own JavaScript, with its cookie: what the UI reads."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'})"
        ".then(r => r.text().then(t => done([r.status, t])))"
    )
    return browser.execute_async_script(script, path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_user_token_sees_only_its_own_vms_in_the_ui_and_the_api(
    h: Harness, spawn: Callable[..., Daemon], browser: WebDriver
) -> None:
    daemon = _converged(h, spawn)
    alice = token(h, "alice", "--role", "user", "--owner", "alice")
    mine, theirs = h.name("alice-vm"), h.name("bob-vm")

    _sign_in(browser, daemon, alice)
    assert set(_rows(browser)) == {mine}
    assert theirs not in browser.page_source
    assert "Signed in as alice (user)" in browser.find_element(By.TAG_NAME, "nav").text
    browser.find_element(By.LINK_TEXT, mine).click()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.TAG_NAME, "h1").text == mine)
    # Their own VM's console (stopped here): the page offers it once it runs.
    assert "The console opens while the VM runs." in browser.find_element(By.ID, "summary").text
    browser.get(_url(daemon, f"/ui/vm/{theirs}"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert theirs not in browser.find_element(By.TAG_NAME, "main").text

    # The API, with the browser's cookie and with the token, says the same.
    status, body = _fetch(browser, "/api/v1/resources")
    assert (status, names(body)) == (200, {mine})
    assert _fetch(browser, f"/api/v1/resources/vm/{theirs}")[0] == 404
    status, _, body = ask(daemon.port, "/api/v1/resources", alice)
    assert (status, names(body)) == (200, {mine})
    assert {
        e["object"]["name"] for e in json.loads(_fetch(browser, "/api/v1/events")[1])["items"]
    } == {mine}

    # Signing out clears the cookie: the pages send to the login again.
    browser.find_element(By.LINK_TEXT, "Sign out").click()
    WebDriverWait(browser, 10).until(lambda b: _path(b) == "/login")
    browser.get(_url(daemon, "/"))
    assert _path(browser) == "/login"

    # A token revoked while its page is open: the stream is cut, the page goes to the login.
    _sign_in(browser, daemon, alice)
    WebDriverWait(browser, 10).until(lambda b: _texts(b, "#live-status") == ["Live updates: on"])
    assert h.cli("token", "revoke", "alice").returncode == 0
    WebDriverWait(browser, 20).until(lambda b: _path(b) == "/login")
    assert daemon.terminate() == 0
