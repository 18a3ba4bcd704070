"""The overview's findings under continuous ingestion (stale-while-revalidate,
``FindingsSummaryCache.judgement``): every answer marked current equals a fresh judgement
of the views as they are; every other one is marked as not current, with the position and
minute it was judged at; once ingestion stops, the answer is current again and equal to a
fresh one."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apikit import publish_sample, sample_settings
from test_dashboard_summary import fresh, sample_service, service  # noqa: F401 (a fixture)
from test_queries_cli import ALICE, EMAIL
from webkit import WebLive, signed_in, web_server

from ledger.application import Ledger
from ledger.principals import Role
from pdl.service import QueryService
from pdl.web.pages import TEMPLATES, as_of
from pdl.web.summary import (
    AuditStableCache,
    FindingsSummaryCache,
    Judgement,
    Stamped,
    minute_of,
    records,
)
from workload import simulate

NOW = datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC)
FINDINGS_VIEW = "findings"


def label(judged: Judgement) -> str:
    """The overview's sentence about the findings it shows, as the page renders it."""
    html = TEMPLATES.from_string(
        '{% if judged.current %}<p class="current">Current: as of log position '
        "{{ judged.position }}</p>{% else %}<p>Not current, updating: as of log position "
        "{{ judged.position }} / time {{ judged.minute }}</p>{% endif %}").render(
        judged=as_of(judged))
    return html


class Publisher(threading.Thread):
    """Services publishing: simulated events appended in small batches until stopped."""

    def __init__(self, ledger: Ledger, lines: list[str]) -> None:
        super().__init__(name="test-publisher", daemon=True)
        self.ledger, self.lines = ledger, lines
        self.stop = threading.Event()
        self.published = 0

    def run(self) -> None:
        while not self.stop.is_set() and self.published < len(self.lines):
            batch = self.lines[self.published:self.published + 10]
            self.ledger.publish_lines(batch)
            self.published += len(batch)
            time.sleep(0.01)


def test_under_ingestion_current_means_fresh_and_stale_is_labelled(
        service: QueryService) -> None:
    cache = FindingsSummaryCache(prejudge=False)
    lines = list(simulate(40, seed=23))
    first = cache.judgement(service, service.views, NOW)
    assert first.current and first.rows == fresh(service, NOW)
    publisher = Publisher(service.ledger, lines)
    publisher.start()
    seen = {"current": 0, "stale": 0}
    try:
        while publisher.is_alive():
            service.catch_up(names=[FINDINGS_VIEW])
            with service.lock:  # nothing catches the views up between the two reads
                judged = cache.judgement(service, service.views, NOW)
                position = service.views.position(FINDINGS_VIEW, service.ledger.log.log_id)
                if judged.current:
                    assert judged.rows == fresh(service, NOW)
                    assert judged.position == position and judged.behind == 0
                else:
                    # an earlier answer: said so, with where and when it was judged
                    assert judged.behind == records(position) - records(judged.position) > 0
                    assert judged.position != position
            text = label(judged)
            assert ("Not current, updating" in text) != judged.current
            assert f"as of log position {records(judged.position):,}" in text
            seen["current" if judged.current else "stale"] += 1
            time.sleep(0.02)
    finally:
        publisher.stop.set()
        publisher.join()
    assert seen["stale"] >= 1, seen
    assert cache.stale == seen["stale"]
    # caught up, ingestion stopped: once the background judgement is in, current and fresh
    service.catch_up()
    deadline = time.monotonic() + 60
    while not (judged := cache.judgement(service, service.views, NOW)).current:
        assert time.monotonic() < deadline, "the summary never became current"
        cache.wait(10)
    assert judged.rows == fresh(service, NOW) and judged.behind == 0
    assert cache.revalidated >= 1  # judged in the background, not while waiting
    assert cache.computed == 1
    assert judged.position == service.views.position(FINDINGS_VIEW, service.ledger.log.log_id)
    # nothing came in: still current, reused
    reused = cache.reused
    assert cache.judgement(service, service.views, NOW).current and cache.reused == reused + 1


def test_the_activity_chart_under_ingestion(service: QueryService) -> None:
    from pdl.web.pages import ACTIVITY_VIEWS, activity

    cache: AuditStableCache[Any] = AuditStableCache(ACTIVITY_VIEWS)

    def chart() -> Stamped[Any]:
        service.catch_up(names=list(ACTIVITY_VIEWS))
        with service.lock:
            stamped = cache.latest(service, service.views, activity)
            if stamped.current:
                assert stamped.value == activity(service.views) and stamped.behind == 0
            else:
                assert stamped.behind > 0 or stamped.positions != {
                    n: service.views.position(n, service.ledger.log.log_id)
                    for n in ACTIVITY_VIEWS}
        return stamped

    assert chart().current
    publisher = Publisher(service.ledger, list(simulate(15, seed=29)))
    publisher.start()
    stale = 0
    while publisher.is_alive():
        stale += not chart().current
        time.sleep(0.02)
    publisher.join()
    assert stale >= 1 and cache.stale == stale
    deadline = time.monotonic() + 60
    while not chart().current:
        assert time.monotonic() < deadline, "the chart never became current"
        cache.wait(10)
    assert cache.revalidated >= 1


def test_a_new_minute_shows_the_last_one_labelled_until_judged(service: QueryService) -> None:
    cache = FindingsSummaryCache(prejudge=False)
    assert cache.judgement(service, service.views, NOW).current
    later = NOW + timedelta(minutes=1)
    stale = cache.judgement(service, service.views, later)
    assert not stale.current and stale.minute == minute_of(NOW) and stale.behind == 0
    assert "Not current, updating" in label(stale) and "12:00 UTC" in label(stale)
    assert cache.wait(60)
    judged = cache.judgement(service, service.views, later)
    assert judged.current and judged.minute == minute_of(later)
    assert judged.rows == fresh(service, later)


def test_the_first_judgement_waits_rather_than_guess(
        tmp_path: Path) -> None:
    settings = sample_settings(tmp_path / "data")
    publish_sample(settings)
    with QueryService(Ledger(settings)) as service:
        service.catch_up()
        cache = FindingsSummaryCache(prejudge=False)
        # nothing judged yet: judged while the caller waits, current
        first = cache.judgement(service, service.views, NOW)
        assert first.current and first.rows == fresh(service, NOW)


# --- over HTTP, on a live server --------------------------------------------------------

@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebLive]:
    with web_server(tmp_path_factory.mktemp("web-ingest") / "data") as server:
        yield server


AS_OF = re.compile(r'<p id="judged-at" class="as-of (current|stale)"[^>]*>(.*?)</p>', re.S)


def test_the_overview_says_when_its_findings_are_not_current(web: WebLive) -> None:
    compliance, _ = signed_in(web, Role.COMPLIANCE)
    first = AS_OF.search(compliance.get("/ui/").text)
    assert first is not None
    service = web.live.service
    service.ledger.publish_lines(list(simulate(5, seed=31)))
    page = compliance.get("/ui/")
    found = AS_OF.search(page.text)
    assert found is not None and found.group(1) == "stale", page.text
    assert 'id="chart-as-of"' in page.text  # the activity chart: likewise
    words = re.sub(r"<[^>]+>", "", found.group(2))
    assert "Not current, updating" in words and "records have come in since" in words
    # no personal value in the label, nor in any log line of the server
    assert ALICE not in page.text and EMAIL not in page.text
    assert re.fullmatch(r"[A-Za-z ,:;/().0-9\-]+", " ".join(words.split())), words
    assert not any(ALICE in line or EMAIL in line for line in web.log.lines)
    # the findings page likewise (another event: whatever was judged is behind it)
    service.ledger.publish_lines(list(simulate(2, seed=37)))
    listing = AS_OF.search(compliance.get("/ui/findings").text)
    assert listing is not None and listing.group(1) == "stale"
    # ingestion stopped: the page becomes current (the audit records of these reads keep it)
    deadline = time.monotonic() + 60
    while True:
        text = compliance.get("/ui/").text
        found = AS_OF.search(text)
        if found and found.group(1) == "current" and 'id="chart-as-of"' not in text:
            break
        assert time.monotonic() < deadline, "the overview never became current"
        time.sleep(0.2)
    assert found is not None and "Current: as of log position" in found.group(2)
    now = datetime.now(UTC)
    table = compliance.get("/ui/").text
    assert 'id="chart-as-of"' not in table
    if minute_of(datetime.now(UTC)) == minute_of(now):  # not across a minute's end
        service.catch_up(names=[FINDINGS_VIEW])
        expected = fresh(service, now)
        rows = re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>(\d+)</td><td>(\d+)"
                          r"</td><td>(\d+)</td></tr>", table.split('id="findings"')[1])
        assert [(c, int(n), int(o), int(p)) for c, n, o, p in rows] == [
            (r["clause"], r["findings"], r["open"], r["people"]) for r in expected]
    # the findings page is current too (one judgement serves both)
    listing = AS_OF.search(compliance.get("/ui/findings").text)
    assert listing is not None and listing.group(1) == "current"


def test_a_failed_judgement_aside_makes_the_next_request_wait_not_stay_stale(
        service: QueryService, monkeypatch: pytest.MonkeyPatch) -> None:
    import pdl.web.summary as summary

    # the judging process is given up (and killed) at once
    monkeypatch.setattr(summary, "JUDGING_TIMEOUT_S", 0.01)
    cache = FindingsSummaryCache(prejudge=False)
    assert cache.judgement(service, service.views, NOW).current
    later = NOW + timedelta(minutes=1)
    assert not cache.judgement(service, service.views, later).current
    assert cache.wait(60)
    judged = cache.judgement(service, service.views, later)  # judged while waiting
    assert judged.current and judged.rows == fresh(service, later) and cache.computed == 2


def test_the_chart_redrawn_aside_beside_judging_processes_never_fails(
        service: QueryService) -> None:
    """The chart's side connection (in the server's process) and the judging processes
    (their own connections, closed when done) in turn, the server committing between
    them: every redrawing aside succeeds, and the server's commits stay in the views
    (``tests/test_files_locks.py`` has the cause: a second connection used to drop the
    server connection's locks, and a judging process then deleted the WAL)."""
    from pathlib import Path

    from pdl.web.pages import ACTIVITY_VIEWS, activity

    chart: AuditStableCache[Any] = AuditStableCache(ACTIVITY_VIEWS)
    judging = FindingsSummaryCache(prejudge=False)
    assert chart.latest(service, service.views, activity).current
    for round_, seed in enumerate((41, 43), start=1):
        service.ledger.publish_lines(list(simulate(3, seed=seed)))
        service.catch_up()  # the server commits
        assert not chart.latest(service, service.views, activity).current
        assert chart.wait(60)
        assert judging._judge_aside(service, minute_of(NOW)) is not None
        assert chart.revalidated == round_ and not chart._aside_failed
        assert Path(f"{service.views.path}-wal").exists()  # type: ignore[attr-defined]
    service.ledger.publish_lines(list(simulate(3, seed=53)))
    service.catch_up()
    assert not chart.latest(service, service.views, activity).current
    assert chart.wait(60) and not chart._aside_failed
    stamped = chart.latest(service, service.views, activity)
    assert stamped.current and stamped.value == activity(service.views)


# --- PostgreSQL views: judged aside too -------------------------------------------------

@pytest.fixture
def pg_service(tmp_path: Path, postgres_server: Any) -> Iterator[QueryService]:
    """The summary tests' service, its views in a schema of the session's PostgreSQL."""
    settings = sample_settings(tmp_path / "data").with_(views_url=postgres_server.new_schema())
    with sample_service(settings) as served:
        yield served


def test_postgres_views_are_judged_aside_while_the_page_shows_the_last_answer(
        pg_service: QueryService) -> None:
    from pdl.web.pages import ACTIVITY_VIEWS, activity

    service = pg_service
    assert type(service.views).__name__ == "PostgresViewStore"
    cache = FindingsSummaryCache(prejudge=False)
    chart: AuditStableCache[Any] = AuditStableCache(ACTIVITY_VIEWS)
    assert cache.judgement(service, service.views, NOW).current
    assert chart.latest(service, service.views, activity).current
    service.ledger.publish_lines(list(simulate(5, seed=59)))
    service.catch_up()
    position = service.views.position(FINDINGS_VIEW, service.ledger.log.log_id)
    # not judged while waiting: the last answer, labelled, with the records behind
    stale = cache.judgement(service, service.views, NOW)
    assert not stale.current and stale.behind == records(position) - records(stale.position) > 0
    assert "Not current, updating" in label(stale)
    drawn = chart.latest(service, service.views, activity)
    assert not drawn.current and drawn.behind > 0
    assert cache.computed == 1 and chart.computed == 1
    # judged in a process of its own on its own PostgreSQL connection, then current
    assert cache.wait(60) and chart.wait(60)
    judged = cache.judgement(service, service.views, NOW)
    assert judged.current and judged.rows == fresh(service, NOW) and judged.position == position
    assert cache.revalidated == 1 and cache.computed == 1
    drawn = chart.latest(service, service.views, activity)
    assert drawn.current and drawn.value == activity(service.views)
    assert chart.revalidated == 1 and chart.computed == 1
