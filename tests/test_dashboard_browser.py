"""The dashboard in a real browser: Debian's chromium, driven through chromium-driver by
selenium, against a real uvicorn server over a small simulated log.

Screenshots of every page land in ``test-artifacts/screenshots/`` (gitignored; CI keeps
them as artifacts). Every URL the browser visits is collected: none may hold a person's
identifier.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from test_queries_cli import ALICE
from webkit import CASE_REQUEST, LEDGER_REQUEST, WebLive, cli_scope, latest_residences, web_server

from ledger.principals import Role

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebLive]:
    with web_server(tmp_path_factory.mktemp("webui") / "data") as server:
        yield server


def _gone(element: WebElement) -> bool:
    """Whether ``element`` has left the page (the browser moved on). During a navigation
    chromium may answer for the old node with an inspector error rather than "stale"."""
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException is one of these
        return True
    return False


class Browser:
    """A chromium session that records every URL it lands on."""

    def __init__(self, web: WebLive, driver: webdriver.Chrome):
        self.web = web
        self.driver = driver
        self.visited: list[str] = []

    def go(self, path: str) -> None:
        self.driver.get(self.web.url + path)
        self.landed()

    def landed(self) -> None:
        self.visited.append(self.driver.current_url)

    def click(self, element_id: str) -> None:
        element = self.driver.find_element(By.ID, element_id)
        element.click()
        # A click that submits a form or follows a link returns before the next page is
        # there: wait until the clicked element is gone and the new page has loaded.
        try:
            WebDriverWait(self.driver, 10).until(lambda _: _gone(element))
        except TimeoutException:
            pass  # the click did not navigate
        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        self.landed()

    def type(self, element_id: str, text: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(text)

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text

    def has(self, element_id: str) -> bool:
        try:
            self.driver.find_element(By.ID, element_id)
        except NoSuchElementException:
            return False
        return True

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def sign_in(self, role: Role) -> None:
        self.driver.delete_all_cookies()
        self.go("/ui/login")
        self.type("token", self.web.live.tokens[role])
        self.click("sign-in")
        assert self.has("who"), self.driver.page_source[:2000]
        assert role.value in self.text("who")

    def session_client(self) -> httpx.Client:
        """An HTTP client holding the browser's session cookie (to fetch a download)."""
        client = httpx.Client(base_url=self.web.url, timeout=60)
        cookie = self.driver.get_cookie("pdl_session")
        assert cookie is not None
        client.cookies.set("pdl_session", cookie["value"])
        return client


@pytest.fixture(scope="module")
def browser(web: WebLive) -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="pdl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield Browser(web, driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_every_role_signs_in_and_sees_only_its_pages(browser: Browser) -> None:
    browser.go("/ui/")
    assert browser.driver.current_url.endswith("/ui/login")
    browser.shot("login")
    for role in (Role.COMPLIANCE, Role.RESPONDER, Role.PRIVACY_OFFICER, Role.ADMIN):
        browser.sign_in(role)
        assert browser.driver.find_element(By.TAG_NAME, "h1").text == "Overview"
        assert browser.driver.find_element(By.CSS_SELECTOR, "svg.chart")
        links = {a.text for a in browser.driver.find_elements(By.CSS_SELECTOR, "nav a")}
        assert ("Disclosure register" in links) == (role is Role.COMPLIANCE)
        assert ("A person" in links) == (role in (Role.COMPLIANCE, Role.PRIVACY_OFFICER))
        assert browser.has("findings") == (role is Role.COMPLIANCE)
        assert browser.has("incidents") == (role is Role.RESPONDER)
        # the case files with links to their drafts: responder and privacy officer only
        assert browser.has("case-files") == (role in (Role.RESPONDER, Role.PRIVACY_OFFICER))
        drafts = browser.driver.find_elements(By.CSS_SELECTOR, "a.draft-link")
        assert bool(drafts) == (role in (Role.RESPONDER, Role.PRIVACY_OFFICER))
        browser.shot(f"overview-{role.value}")
    # the session cookie as the browser holds it
    cookie = browser.driver.get_cookie("pdl_session")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # findings explained, not bare clause codes
    browser.sign_in(Role.COMPLIANCE)
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
    assert rows and all(len(r.find_elements(By.TAG_NAME, "td")[1].text) > 5 for r in rows)


def test_filter_the_register_and_download_what_is_shown(browser: Browser) -> None:
    browser.sign_in(Role.COMPLIANCE)
    browser.go("/ui/register")
    browser.type("f-from", "01/01/2024")
    browser.driver.find_element(By.CSS_SELECTOR, "#f-cross option[value=no]").click()
    browser.driver.find_element(By.CSS_SELECTOR, "#f-group option[value=recipient]").click()
    browser.click("apply")
    url = browser.driver.current_url
    assert "cross_border=no" in url and "group=recipient" in url and "from=2024-01-01" in url
    shown = [tr.find_elements(By.TAG_NAME, "td")
             for tr in browser.driver.find_elements(By.CSS_SELECTOR, "#register tbody tr")]
    shown_ids = [cells[-1].text for cells in shown]
    assert shown_ids and all(cells[7].text == "" for cells in shown)
    browser.shot("register")
    href = browser.driver.find_element(By.ID, "csv").get_attribute("href")
    assert href is not None
    with browser.session_client() as client:
        text = client.get(href).text
    head, _, detail = text.partition("\r\n\r\n")
    assert [r["event_id"] for r in csv.DictReader(io.StringIO(detail))] == shown_ids
    groups = {r["recipient"]: int(r["disclosures"]) for r in csv.DictReader(io.StringIO(head))}
    api = browser.web.live.client(Role.COMPLIANCE).get("/disclosures", params={
        "from": "2024-01-01T00:00:00Z", "limit": 1000}).json()["items"]
    expected: dict[str, int] = {}
    for d in api:
        if not d["cross_border"]:
            expected[d["recipient"]] = expected.get(d["recipient"], 0) + 1
    assert groups == expected


def test_look_a_person_up_and_unseal_as_the_privacy_officer(browser: Browser) -> None:
    browser.sign_in(Role.COMPLIANCE)
    browser.go("/ui/person")
    browser.type("subject", ALICE)
    browser.click("look-up")
    assert browser.text("pseudonym") == browser.web.live.service.pseudonym(ALICE)
    timeline = browser.text("timeline")
    assert "collected" in timeline and "shared" in timeline and "payco" in timeline
    assert not browser.has("unseal-button")  # compliance may not unseal
    # their rights requests: one known only from the log (answered), one with a case file
    answered = browser.text(f"request-{LEDGER_REQUEST}")
    assert "correction" in answered and "answered" in answered and "overdue" not in answered
    pending = browser.text(f"request-{CASE_REQUEST}")
    assert "access" in pending and "open" in pending and "overdue" in pending
    browser.driver.find_element(By.ID, "person-requests").location_once_scrolled_into_view
    browser.shot("person-compliance")

    browser.sign_in(Role.PRIVACY_OFFICER)
    browser.go("/ui/person")
    browser.type("subject", ALICE)
    browser.click("look-up")
    assert browser.has("unseal-button")
    browser.type("unseal-reason", "DSR-web-1")
    browser.click("unseal-button")
    assert "alice.wang@example.com" in browser.text("export")
    browser.shot("person-unsealed")
    audits = [a for a in browser.web.live.audits() if a.get("reason") == "DSR-web-1"]
    assert audits and audits[-1]["clear"] is True


def test_a_role_without_the_right_is_refused_in_the_browser(browser: Browser) -> None:
    browser.sign_in(Role.RESPONDER)
    browser.go("/ui/person")
    assert "may not" in browser.text("error")
    browser.shot("refused-responder")
    with browser.session_client() as client:
        answer = client.post("/ui/person/export", data={"subject": ALICE, "reason": "x"})
    assert answer.status_code == 403
    # compliance follows no case's drafts: no link on its pages, a 403 on the route
    browser.sign_in(Role.COMPLIANCE)
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "a.draft-link")
    browser.go("/ui/incident/draft?incident=inc-web&draft=notice_zh")
    assert "may not" in browser.text("error")
    browser.shot("refused-compliance-draft")
    with browser.session_client() as client:
        answer = client.get("/ui/incident/draft",
                            params={"incident": "inc-web", "draft": "notice_zh"})
    assert answer.status_code == 403


def test_findings_drill_down_in_the_browser(browser: Browser) -> None:
    browser.sign_in(Role.COMPLIANCE)
    browser.go("/ui/findings")
    assert browser.driver.find_element(By.CSS_SELECTOR, "svg.chart")
    browser.shot("findings")
    first = browser.driver.find_element(By.CSS_SELECTOR, "#clauses tbody a")
    clause = first.text
    first.click()
    WebDriverWait(browser.driver, 30).until(lambda _: _gone(first))
    browser.landed()
    assert clause in browser.text("detail-h")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#detail tbody tr")
    browser.shot("findings-clause")


def test_run_a_scope_in_the_browser_and_match_the_cli(browser: Browser) -> None:
    browser.sign_in(Role.RESPONDER)
    browser.go("/ui/incident")
    browser.type("s-stores", "accounts-db,payments-db")
    browser.type("s-from", "01/01/2024")
    browser.type("s-until", "01/01/2027")
    browser.click("run-scope")
    cli = cli_scope(browser.web, "--stores", "accounts-db,payments-db", "--from",
                    "2024-01-01T00:00:00Z", "--until", "2027-01-01T00:00:00Z")
    counts = cli["counts"]
    assert isinstance(counts, dict)
    for key in ("people", "records", "reachable", "unreachable", "sensitive_records"):
        assert browser.text(f"count-{key}") == str(counts[key])
    # people per country of residence, for this ad-hoc scope, against the log itself
    people = cli["people"]
    assert isinstance(people, list)
    where = latest_residences(browser.web)
    expected = Counter(where.get(p["pseudonym"], "unknown") for p in people)
    shown = {row.find_elements(By.TAG_NAME, "td")[0].text:
             int(row.find_elements(By.TAG_NAME, "td")[1].text)
             for row in browser.driver.find_elements(By.CSS_SELECTOR, "#countries tbody tr")}
    assert shown == dict(expected) and {"CN", "DE"} <= set(shown)
    assert browser.driver.find_element(By.CSS_SELECTOR, "#country-bars svg")
    browser.shot("incident-scope")
    browser.driver.find_element(By.ID, "countries").location_once_scrolled_into_view
    browser.shot("incident-scope-countries")
    browser.go("/ui/incident?incident=inc-web")
    assert browser.has("clocks") and browser.has("notify")
    browser.shot("incident-case")
    # the case file's drafts, one click away
    browser.click("draft-notice_zh")
    assert "inc-web" in browser.text("draft-text")
    case = browser.web.live.client(Role.RESPONDER).get("/incidents/inc-web/case").json()
    assert browser.text("draft-digest") == case["drafts"]["notice_zh"]
    browser.shot("incident-draft-notice-zh")


def test_no_personal_value_in_any_url_visited_or_log_line(browser: Browser) -> None:
    assert len(browser.visited) > 10
    for url in browser.visited:
        assert ALICE not in url and "alice" not in url.lower()
    assert browser.web.log.lines
    assert not [line for line in browser.web.log.lines if ALICE in line]
    # and the CSP held: no console error about a refused script or style
    logs = browser.driver.get_log("browser")
    assert not [e for e in logs if "Content Security Policy" in e.get("message", "")]
