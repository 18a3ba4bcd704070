"""The first overview after a server starts (``pdl.web.kept``, ``FindingsSummaryCache.warm``):
the last server's findings summary, kept in the data directory, is shown at once labelled
"Not current, updating" while a fresh one is judged aside; without one, the judgement
started with the server is waited for rather than made again. A kept answer of another
log or view store, or a damaged file, is never shown. Real files, judging processes and,
over HTTP, two ``pdl serve`` processes one after the other."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from apikit import publish_sample
from test_dashboard_ingestion import AS_OF, NOW, label
from test_dashboard_summary import fresh
from webkit import CSRF

from ledger.application import Ledger
from ledger.principals import Role, SQLitePrincipalStore
from ledger.settings import Settings, generate_key
from pdl.api.server import spawned
from pdl.service import QueryService
from pdl.web import KEPT_FINDINGS
from pdl.web.summary import FindingsSummaryCache, records
from workload import simulate

FINDINGS_VIEW = "findings"
ROOT = Path(__file__).resolve().parent.parent


def _settings(data_dir: Path, key: str) -> Settings:
    return Settings(data_dir=data_dir, master_key=Settings.from_env(
        {"LEDGER_MASTER_KEY": key}).master_key, actor="operator@tests",
        sqlite_synchronous="NORMAL")


@pytest.fixture
def data(tmp_path: Path) -> tuple[Settings, str]:
    key = generate_key()
    settings = _settings(tmp_path / "data", key)
    publish_sample(settings)
    with Ledger(settings) as ledger:
        ledger.publish_lines(list(simulate(20, seed=5)))
    return settings, key


def _served(settings: Settings) -> QueryService:
    service = QueryService(Ledger(settings))
    service.catch_up()
    return service


def _kept_written(path: Path, position: dict[int, int]) -> dict[str, object]:
    """The kept file once it holds the answer at ``position`` (written off the request)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            kept = json.loads(path.read_text())
            if {int(p): o for p, o in kept["answer"]["position"].items()} == position:
                return kept  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, "the answer was never kept"
        time.sleep(0.05)


def test_a_restarted_server_shows_the_kept_summary_labelled_then_a_fresh_one(
        data: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pdl.web import summary

    settings, _ = data
    monkeypatch.setattr(summary, "KEEP_EVERY_S", 0)  # keep every answer, not every 30 s
    kept = settings.data_dir / KEPT_FINDINGS
    with _served(settings) as service:
        first = FindingsSummaryCache(prejudge=False, keep=kept)
        judged = first.judgement(service, service.views, NOW)
        assert judged.current and first.computed == 1
        _kept_written(kept, judged.position)
    assert kept.stat().st_mode & 0o777 == 0o600
    with Ledger(settings) as ledger:  # events come in while no server runs
        ledger.publish_lines(list(simulate(5, seed=61)))
    with _served(settings) as service:
        position = service.views.position(FINDINGS_VIEW, service.ledger.log.log_id)
        again = FindingsSummaryCache(prejudge=False, keep=kept)
        shown = again.judgement(service, service.views, NOW)
        # at once: the last server's answer, labelled, not judged while waiting
        assert again.restored == 1 and again.computed == 0
        assert not shown.current and shown.rows == judged.rows
        assert shown.position == judged.position
        assert shown.behind == records(position) - records(judged.position) > 0
        assert "Not current, updating" in label(shown)
        assert again.wait(60)
        current = again.judgement(service, service.views, NOW)
        assert current.current and current.rows == fresh(service, NOW)
        assert again.computed == 0 and again.revalidated == 1
        # the judging process kept the fresh one for the next server
        _kept_written(kept, position)


def test_a_kept_summary_of_other_views_or_damaged_is_not_shown(
        data: tuple[Settings, str]) -> None:
    settings, _ = data
    kept = settings.data_dir / KEPT_FINDINGS
    with _served(settings) as service:
        judged = FindingsSummaryCache(prejudge=False, keep=kept).judgement(
            service, service.views, NOW)
        _kept_written(kept, judged.position)
    written = json.loads(kept.read_text())
    other = settings.with_(views_path=settings.data_dir / "other-views.db")
    for i, damaged in enumerate((
            {**written, "of": {**written["of"], "log_id": "another-log"}},
            {**written, "of": {**written["of"], "format": 0}}, "{not json",
            {**written, "answer": {"position": "x"}}, None)):
        # a file each: each cache keeps its own answer when done
        path = settings.data_dir / f"kept-{i}.json"
        if damaged is None:  # the same file, but another view store
            path.write_text(json.dumps(written))
            service = _served(other)
        else:
            path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
            service = _served(settings)
        with service:
            cache = FindingsSummaryCache(prejudge=False, keep=path)
            answer = cache.judgement(service, service.views, NOW)
            assert answer.current and cache.restored == 0 and cache.computed == 1
            assert answer.rows == fresh(service, NOW)


def test_warm_judges_at_start_and_the_first_page_waits_for_it(
        data: tuple[Settings, str]) -> None:
    settings, _ = data
    with _served(settings) as service:
        cache = FindingsSummaryCache(prejudge=False, keep=settings.data_dir / KEPT_FINDINGS)
        cache.warm(service, NOW)  # nothing kept: judged aside from now on
        answer = cache.judgement(service, service.views, NOW)
        assert answer.current and answer.rows == fresh(service, NOW)
        assert cache.computed == 0 and cache.revalidated == 1


# --- over HTTP: two `pdl serve` processes, one after the other ---------------------------

def _signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/ui/login")
    csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    client.cookies.set("pdl_login_csrf", form.cookies["pdl_login_csrf"])
    answer = client.post("/ui/login", data={"csrf": csrf, "token": token})
    assert answer.status_code == 303, answer.text
    client.cookies.clear()
    client.cookies.set("pdl_session", answer.cookies["pdl_session"])
    return client


def _findings_label(client: httpx.Client) -> tuple[str, str]:
    page = client.get("/ui/")
    assert page.status_code == 200, page.text
    found = AS_OF.search(page.text)
    assert found is not None, page.text
    return found.group(1), re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(2)))


def test_pdl_serve_restarted_shows_the_last_summary_at_once(
        data: tuple[Settings, str]) -> None:
    settings, key = data
    with SQLitePrincipalStore.for_data_dir(settings.data_dir) as principals:
        principals.add("compliance@tests", Role.COMPLIANCE)
        token = principals.issue("compliance@tests").token
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(LEDGER_DATA_DIR=str(settings.data_dir), LEDGER_MASTER_KEY=key,
               LEDGER_SCOPE_INDEX="0", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    kept = settings.data_dir / KEPT_FINDINGS
    with spawned(env, cwd=ROOT) as (url, _):
        with closing(_signed_in(url, token)) as client:
            state, words = _findings_label(client)
        assert state == "current", words  # the judgement started with the server
    assert kept.exists()
    before = re.search(r"as of log position ([0-9,]*[0-9])", words)
    assert before is not None
    with Ledger(settings) as ledger:
        ledger.publish_lines(list(simulate(5, seed=67)))
    with spawned(env, cwd=ROOT) as (url, _), closing(_signed_in(url, token)) as client:
        state, words = _findings_label(client)
        assert state == "stale" and "Not current, updating" in words, words
        assert f"as of log position {before.group(1)}" in words
        deadline = time.monotonic() + 60
        while state != "current":
            assert time.monotonic() < deadline, "the overview never became current"
            time.sleep(0.2)
            state, words = _findings_label(client)


def test_a_restarted_server_shows_the_kept_activity_chart_labelled(
        data: tuple[Settings, str]) -> None:
    from pdl.web import KEPT_ACTIVITY
    from pdl.web.pages import ACTIVITY_VIEWS, activity, activity_from_json
    from pdl.web.summary import AuditStableCache

    settings, _ = data
    kept = settings.data_dir / KEPT_ACTIVITY
    with _served(settings) as service:
        first: AuditStableCache[object] = AuditStableCache(ACTIVITY_VIEWS, kept,
                                                           activity_from_json)
        drawn = first.latest(service, service.views, activity)
        assert drawn.current and kept.exists()
    with Ledger(settings) as ledger:
        ledger.publish_lines(list(simulate(5, seed=71)))
    with _served(settings) as service:
        again: AuditStableCache[object] = AuditStableCache(ACTIVITY_VIEWS, kept,
                                                           activity_from_json)
        shown = again.latest(service, service.views, activity)
        assert again.restored == 1 and again.computed == 0
        assert not shown.current and shown.value == drawn.value and shown.behind > 0
        assert shown.positions == drawn.positions
        assert again.wait(60)
        current = again.latest(service, service.views, activity)
        assert current.current and current.value == activity(service.views)
        assert again.computed == 0 and again.revalidated == 1
        # only ever an earlier answer: with nothing new, a kept chart is still not current
    with _served(settings) as service:
        third: AuditStableCache[object] = AuditStableCache(ACTIVITY_VIEWS, kept,
                                                           activity_from_json)
        assert not third.latest(service, service.views, activity).current
        assert third.restored == 1


def test_kept_answers_are_written_at_most_every_so_often_and_in_order(tmp_path: Path) -> None:
    from pdl.web.kept import KeptAnswer

    of = {"log_id": "log", "views": "sqlite /x"}
    path = tmp_path / "kept.json"
    KeptAnswer(path).save(of, {"n": 1}, (1,), every_s=30)
    assert KeptAnswer(path).load(of) == {"n": 1}
    KeptAnswer(path).save(of, {"n": 2}, (2,), every_s=30)  # written a moment ago: kept
    assert KeptAnswer(path).load(of) == {"n": 1}
    writer = KeptAnswer(path)
    writer.save(of, {"n": 3}, (3,))
    writer.save(of, {"n": 2}, (2,))  # earlier than what this writer kept: not written
    assert KeptAnswer(path).load(of) == {"n": 3}
    assert KeptAnswer(path).load({**of, "log_id": "other"}) is None
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*.tmp"))
