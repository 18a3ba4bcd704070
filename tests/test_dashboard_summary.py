"""The overview's cached findings summary always equals a fresh one for the same inputs
(the views' content and the minute the clock rules are judged at)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apikit import publish_sample, sample_settings
from test_queries_cli import ALICE, shared, wire

from ledger.application import Ledger
from ledger.settings import Settings
from pdl.service import QueryService, findings_summary
from pdl.web.summary import (
    AuditStableCache,
    FindingsSummaryCache,
    KeyedAuditStableCache,
    minute_of,
)
from workload import simulate

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


@contextmanager
def sample_service(settings: Settings) -> Iterator[QueryService]:
    """A service over the sample events and 20 simulated people, caught up."""
    publish_sample(settings)
    with Ledger(settings) as ledger:
        ledger.publish_lines(list(simulate(20, seed=5)))
    with QueryService(Ledger(settings)) as service:
        service.catch_up()
        yield service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[QueryService]:
    with sample_service(sample_settings(tmp_path / "data")) as served:
        yield served


def fresh(service: QueryService, now: datetime) -> list[dict[str, Any]]:
    return findings_summary(service.findings(service.views, as_of=minute_of(now)))


def cached(cache: FindingsSummaryCache, service: QueryService, now: datetime
           ) -> list[dict[str, Any]]:
    """The cached summary, after checking the cached list of findings it counts equals a
    fresh one (as the findings page and a person's page read it)."""
    service.catch_up(names=["findings"])
    rows = cache.summary(service, service.views, now)
    reused = cache.reused
    listed = cache.findings(service, service.views, now)
    assert cache.reused == reused + 1  # this second look is always a reuse: not counted
    cache.reused = reused
    assert listed == service.findings(service.views, as_of=minute_of(now))
    return rows


def test_a_cached_summary_equals_a_fresh_one_and_audit_records_keep_it(
        service: QueryService) -> None:
    cache = FindingsSummaryCache(prejudge=False)
    first = cached(cache, service, NOW)
    assert first == fresh(service, NOW) and first
    assert (cache.computed, cache.reused) == (1, 0)
    # the same minute, only audit records since: reused, and still equal to a fresh answer
    # (the simulated workload keeps a staff list: a reader not on it is a stored 6.2.1b
    # finding, which the cache adds from the audit record's position)
    for n in range(3):
        service.audit("test", {}, actor="operator@tests", reason=f"ticket-{n}")
        again = cached(cache, service, NOW + timedelta(seconds=20))
        assert (cache.computed, cache.reused) == (1, n + 1)
        assert again == fresh(service, NOW + timedelta(seconds=20))
    counts = {r["clause"]: r["findings"] for r in again}
    assert counts["6.2.1b"] == {r["clause"]: r["findings"] for r in first}.get("6.2.1b", 0) + 3


def test_an_audit_record_that_is_a_finding_is_counted(service: QueryService) -> None:
    cache = FindingsSummaryCache(prejudge=False)
    before = {r["clause"]: r["findings"] for r in cached(cache, service, NOW)}
    # values read in clear with no reason: a stored 6.2.1b finding
    service.audit("export", {}, actor="operator@tests", people=[service.pseudonym(ALICE)],
                  clear=True)
    after = cached(cache, service, NOW)
    assert (cache.computed, cache.reused) == (1, 1)
    assert after == fresh(service, NOW)
    assert {r["clause"]: r["findings"] for r in after}["6.2.1b"] > before.get("6.2.1b", 0)
    # a stored finding changed behind the cache's back (not by an audit record): afresh
    with service.views.transaction() as tx:
        tx.execute("DELETE FROM findings WHERE clause = '6.2.1b'")
    service.audit("test", {}, actor="operator@tests", reason="ticket-2")
    assert cached(cache, service, NOW) == fresh(service, NOW)
    assert cache.computed == 2


def test_a_new_event_or_a_new_minute_judges_afresh(service: QueryService) -> None:
    cache = FindingsSummaryCache(prejudge=False)
    due = NOW + timedelta(seconds=20)  # 12:00:50
    clause_7_1 = {r["clause"]: r["findings"] for r in cached(cache, service, NOW)}.get("7.1", 0)
    # a request due at 12:00:50: not yet overdue at the minute 12:00, overdue at 12:01
    service.ledger.publish([wire("request.received", "2026-05-01T00:00:00Z", ALICE, {
        "request_id": "r-web-1", "kind": "access", "due": due.isoformat()})])
    at_now = cached(cache, service, NOW)
    assert cache.computed == 2 and at_now == fresh(service, NOW)
    assert {r["clause"]: r["findings"] for r in at_now}.get("7.1", 0) == clause_7_1
    later = NOW + timedelta(seconds=40)  # 12:01:10
    at_due = cached(cache, service, later)
    assert cache.computed == 3 and at_due == fresh(service, later)
    assert {r["clause"]: r["findings"] for r in at_due}["7.1"] == clause_7_1 + 1
    # the same minute again: reused
    assert cached(cache, service, later + timedelta(seconds=10)) == at_due
    assert cache.reused == 1


def test_the_activity_chart_is_kept_while_only_audit_records_come_in(
        service: QueryService) -> None:
    from pdl.web.pages import ACTIVITY_VIEWS, activity

    cache: AuditStableCache[object] = AuditStableCache(ACTIVITY_VIEWS)

    def chart() -> object:
        service.catch_up(names=list(ACTIVITY_VIEWS))
        return cache.get(service, service.views, lambda: activity(service.views))

    first = chart()
    service.audit("test", {}, actor="operator@tests", reason="ticket-3")
    assert chart() == first == activity(service.views)
    assert (cache.computed, cache.reused) == (1, 1)
    # a disclosure on a new day: computed afresh, and it shows
    service.ledger.publish([shared(ALICE, "2026-11-30T00:00:00Z", "payco",
                                   ["user.financial.bank_account"], "5.1.1")])
    again = chart()
    assert cache.computed == 2 and again == activity(service.views) and again != first


def test_the_next_minute_judged_ahead_is_used_only_while_it_holds(
        service: QueryService) -> None:
    import time

    cache = FindingsSummaryCache()
    late = NOW.replace(second=45)  # past PREJUDGE_AFTER_S: the next minute judged at once
    next_minute = late + timedelta(minutes=1)

    def prejudged(n: int) -> None:
        deadline = time.monotonic() + 60
        while cache.prejudged < n:
            assert time.monotonic() < deadline, "the next minute was not judged ahead"
            time.sleep(0.05)

    try:
        cached(cache, service, late)
        prejudged(1)
        service.audit("test", {}, actor="operator@tests", reason="ticket-4")
        assert cached(cache, service, next_minute) == fresh(service, next_minute)
        assert (cache.computed, cache.reused) == (1, 1)
        # judged ahead, then an event came in: the ready answer is not used
        prejudged(2)
        service.ledger.publish([wire("request.received", "2026-05-02T00:00:00Z", ALICE, {
            "request_id": "r-web-2", "kind": "access"})])
        after = next_minute + timedelta(seconds=20)
        assert cached(cache, service, after) == fresh(service, after)
        assert cache.computed == 2
    finally:
        cache.close()


def test_register_groups_are_kept_per_filter_while_only_audit_records_come_in(
        service: QueryService) -> None:
    from pdl.web.pages import GROUP_VIEWS, _groups_sql

    cache: KeyedAuditStableCache[list[dict[str, object]]] = KeyedAuditStableCache(
        GROUP_VIEWS, size=2)

    def groups(group: str) -> list[dict[str, Any]]:
        service.catch_up(names=list(GROUP_VIEWS))
        return cache.get((group, "", ()), service, service.views,
                         lambda: _groups_sql(service.views, group, "", []))

    by_recipient = groups("recipient")
    # an audit record that is itself a finding (values read in clear without a reason)
    service.audit("export", {}, actor="operator@tests", people=[service.pseudonym(ALICE)],
                  clear=True)
    assert groups("recipient") == by_recipient == _groups_sql(service.views, "recipient", "", [])
    assert groups("clause") == _groups_sql(service.views, "clause", "", [])
    service.ledger.publish([shared(ALICE, "2026-11-30T00:00:00Z", "payco",
                                   ["user.financial.bank_account"], "5.1.1")])
    fresh_groups = groups("recipient")
    assert fresh_groups == _groups_sql(service.views, "recipient", "", [])
    assert fresh_groups != by_recipient


def test_the_caches_premise_audit_records_change_no_state_the_views_keep() -> None:
    """What the caches rest on: the data map and disclosures views skip audit records; the
    findings view folds nothing from them (only event rules read them, and what those make
    are stored findings, which the cache adds), and no timed rule reads them."""
    from consumers.findings import RULES
    from consumers.findings.folds import FOLDS
    from consumers.registry import all_projections
    from schemas.events import LedgerQueried

    views = {p.name: p for p in all_projections()}
    for name in ("datamap", "disclosures"):
        assert views[name].topics and LedgerQueried.TYPE not in views[name].topics
    assert LedgerQueried not in FOLDS
    assert [r for r in RULES if r.evaluate is not None]
    assert not [r for r in RULES if r.evaluate is not None and LedgerQueried in r.reads]
