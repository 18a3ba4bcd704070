"""Breach scope (6.2.1) is exact at the window's edges.

Each person below is built to sit on one side of one edge; the scope must name exactly
the affected ones, with what was exposed and whether they can still be contacted.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from eventkit import (
    at,
    collected,
    erased,
    incident,
    log_events,
    notified,
)

from consumers import queries
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.scope_index import ScopeIndex
from consumers.views import ViewStore
from ledger.errors import NotFound
from ledger.persistence import EventLog


US = timedelta(microseconds=1)
START, END = at(10), at(13)  # a three-day window
STORE = "accounts-db"
EMAIL, PHONE = "user.contact.email", "user.contact.phone_number"
BANK, IP = "user.financial.bank_account", "user.device.ip_address"


@pytest.fixture(params=["sql", "index"])
def views(request: Any, event_log: EventLog, view_store: ViewStore) -> ViewStore:
    """Views of a log of people placed around the window [START, END]; every test runs
    twice: answered from SQL and from the in-memory ``ScopeIndex`` (the HTTP API's)."""
    log_events(event_log, [
        # collected long before, still held: affected
        collected("p_held", at(1), [EMAIL, PHONE]),
        # collected one microsecond before the window, still held: affected
        collected("p_just_before", START - US, [EMAIL]),
        # collected at the window's last instant: affected
        collected("p_at_end", END, [EMAIL]),
        # collected one microsecond after the window: not affected
        collected("p_after", END + US, [EMAIL]),
        # erased one microsecond before the window: not affected
        collected("p_erased_before", at(1), [EMAIL, BANK]),
        erased("p_erased_before", START - US, ["user"], [STORE]),
        # erased at the window's first instant: affected (edges count as exposed)
        collected("p_erased_at_start", at(1), [EMAIL]),
        erased("p_erased_at_start", START, [EMAIL], [STORE]),
        # erased during the window: affected
        collected("p_erased_during", at(1), [EMAIL, BANK]),
        erased("p_erased_during", START + timedelta(hours=5), ["user"], [STORE]),
        # crypto-shredded before the window but the store still held the data: affected,
        # unreachable (the ledger can no longer read their contact details)
        collected("p_shredded", at(1), [EMAIL]),
        erased("p_shredded", at(5), ["user"], ["ledger-key-vault"], "crypto_shredded"),
        # contact data erased everywhere, bank account still held: affected, unreachable
        collected("p_no_contact", at(1), [EMAIL, BANK]),
        erased("p_no_contact", at(2), ["user.contact"], [STORE]),
        # data only in another store: not affected
        collected("p_elsewhere", at(1), [EMAIL], "crm-db"),
        # only a backup copy in the breached store: affected
        collected("p_backup", at(1), [IP], "logs-db", backups=[STORE]),
        # compared and discarded, never stored: not affected
        collected("p_transient", at(11), ["user.biometric.face"], retention_days=0),
        # erased before the window, collected again during it: affected once
        collected("p_again", at(1), [EMAIL]),
        erased("p_again", at(2), [EMAIL], [STORE]),
        collected("p_again", at(12), [EMAIL]),
        # erased before, collected again after the window: not affected
        collected("p_later", at(1), [EMAIL]),
        erased("p_later", at(2), [EMAIL], [STORE]),
        collected("p_later", at(20), [EMAIL]),
        # anonymised during the window: affected
        collected("p_anonymised", at(1), [IP]),
        erased("p_anonymised", at(11), [IP], [STORE], "anonymised"),
        # reported out of time order: logged after a later collection, held from day 9
        collected("p_reported_late", at(14), [EMAIL]),
        collected("p_reported_late", at(9), [EMAIL]),
        # an incident recorded in the log, two people notified
        incident("inc-7", at(14), [STORE], START, END),
        notified("p_held", at(15), "inc-7"),
        notified("p_at_end", at(15), "inc-7"),
    ])
    runner = ProjectionRunner(event_log, view_store, all_projections(), batch_size=7)
    if request.param == "index":
        # loaded before the run: it follows the view through the journal
        index = ScopeIndex.attach(view_store)
        index.refresh()
        runner.run()
        index.refresh()
        assert (index.loads, index.catch_ups) == (1, 1)
    else:
        runner.run()
    return view_store


AFFECTED = {
    "p_held", "p_just_before", "p_at_end", "p_erased_at_start", "p_erased_during",
    "p_shredded", "p_no_contact", "p_backup", "p_again", "p_anonymised", "p_reported_late",
}


def by_person(result: queries.Scope) -> dict[str, queries.AffectedPerson]:
    return {p.pseudonym: p for p in result.people}


def test_exactly_the_people_whose_data_was_held_during_the_window(views: ViewStore) -> None:
    result = queries.scope(views, [STORE], START, END)
    assert set(by_person(result)) == AFFECTED


def test_collected_just_before_and_still_held_is_affected(views: ViewStore) -> None:
    people = by_person(queries.scope(views, [STORE], START, END))
    assert people["p_just_before"].categories == (EMAIL,)
    assert people["p_held"].categories == (EMAIL, PHONE)


def test_erased_just_before_is_not_affected_and_erased_during_is(views: ViewStore) -> None:
    people = by_person(queries.scope(views, [STORE], START, END))
    assert "p_erased_before" not in people
    assert people["p_erased_during"].categories == (EMAIL, BANK)
    assert people["p_erased_during"].sensitive_categories == (BANK,)
    assert "p_erased_at_start" in people


def test_window_edges_move_the_answer_by_one_microsecond(views: ViewStore) -> None:
    narrower = by_person(queries.scope(views, [STORE], START + US, END - US))
    assert "p_erased_at_start" not in narrower
    assert "p_at_end" not in narrower
    wider = by_person(queries.scope(views, [STORE], START, END + US))
    assert "p_after" in wider


def test_erased_people_are_affected_but_unreachable(views: ViewStore) -> None:
    people = by_person(queries.scope(views, [STORE], START, END))
    shredded = people["p_shredded"]
    assert not shredded.reachable
    assert shredded.unreachable_reason == queries.UNREACHABLE_ERASED
    no_contact = people["p_no_contact"]
    assert not no_contact.reachable
    assert no_contact.unreachable_reason == queries.UNREACHABLE_NO_CONTACT
    assert no_contact.categories == (BANK,)
    assert people["p_held"].reachable
    assert not people["p_backup"].reachable  # only an IP address was ever held


def test_categories_filter_includes_sub_and_parent_categories(views: ViewStore) -> None:
    financial = queries.scope(views, [STORE], START, END, ["user.financial"])
    assert {p.pseudonym for p in financial.people} == {"p_erased_during", "p_no_contact"}
    contact = queries.scope(views, [STORE], START, END, ["user.contact.email"])
    assert "p_backup" not in {p.pseudonym for p in contact.people}
    assert all(p.categories == (EMAIL,) for p in contact.people)


def test_counts_for_the_regulator(views: ViewStore) -> None:
    counts = queries.scope(views, [STORE], START, END).counts
    assert counts["people"] == len(AFFECTED)
    # one record per (person, category, store) holding exposed
    assert counts["records"] == 13
    # shredded; no contact data ever (p_backup, p_anonymised); contact data erased since
    # (p_no_contact, p_erased_at_start, p_erased_during)
    assert counts["unreachable"] == 6
    assert counts["reachable"] == len(AFFECTED) - 6
    assert counts["sensitive_records"] == 2
    assert counts["people_with_sensitive_data"] == 2
    assert counts["sensitive_categories"] == {BANK: 2}
    assert counts["categories"][EMAIL] == 8


def test_several_stores_count_each_holding_once(views: ViewStore) -> None:
    both = by_person(queries.scope(views, [STORE, "logs-db", STORE], START, END))
    assert both["p_backup"].stores == ("accounts-db", "logs-db")
    assert both["p_backup"].records == 2
    assert "p_elsewhere" not in both


def test_an_incident_recorded_in_the_log_reports_who_was_notified(views: ViewStore) -> None:
    result = queries.incident_scope(views, "inc-7")
    assert {p.pseudonym for p in result.people} == AFFECTED
    assert result.counts["notified"] == 2
    assert result.counts["not_notified"] == len(AFFECTED) - 2
    assert by_person(result)["p_held"].notified is True
    assert queries.incidents(views)[0]["stores"] == [STORE]
    with pytest.raises(NotFound):
        queries.incident_scope(views, "inc-unknown")


def test_a_window_ending_before_it_starts_is_refused(views: ViewStore) -> None:
    with pytest.raises(ValueError):
        queries.scope(views, [STORE], END, START)


def test_pages_list_everyone_once_in_order_and_counts_stay_whole(views: ViewStore) -> None:
    whole = queries.scope(views, [STORE], START, END)
    seen: list[str] = []
    after = None
    while True:
        page = queries.scope(views, [STORE], START, END, limit=4, after=after)
        assert page.counts == whole.counts  # the counts cover everyone on every page
        assert page.page["listed"] == len(page.people) <= 4
        seen += [p.pseudonym for p in page.people]
        after = page.page["next"]
        if after is None:
            break
    assert seen == sorted(AFFECTED)
    assert [p.as_dict() for p in whole.people] == [
        p.as_dict() for p in queries.scope(views, [STORE], START, END, limit=100).people]
    assert queries.scope(views, [STORE], START, END, limit=0).people == ()
    assert queries.incident_scope(views, "inc-7", limit=2).page["next"] == sorted(AFFECTED)[1]


def test_ended_holdings_of_every_span_are_found_exactly(tmp_path: Any) -> None:
    """The span-class index bounds reads per class; no span may fall between classes."""
    from consumers.scope import INDEXES, SCHEMA, SPAN_BOUNDS, exposed
    from consumers.views import SQLiteViewStore

    rnd = random.Random(5)
    spans = sorted({0, 1, *(b + d for b in SPAN_BOUNDS for d in (-1, 0, 1)),
                    SPAN_BOUNDS[-1] * 3, *(rnd.randrange(SPAN_BOUNDS[-1] * 2) for _ in range(60))})
    rows = []
    for i, span in enumerate(spans):
        for j in range(4):
            collected_at = rnd.randrange(-SPAN_BOUNDS[-1], SPAN_BOUNDS[-1])
            rows.append((f"p{i:03d}-{j}", "db", collected_at, collected_at + span, "erased",
                         1 << rnd.randrange(8)))
    store = SQLiteViewStore(tmp_path / "spans.db")
    try:
        with store.transaction() as tx:
            for statement in (*SCHEMA, *INDEXES):
                tx.execute(statement)
            tx.executemany("INSERT INTO holdings_erased VALUES (?, ?, ?, ?, ?, ?)", rows)
        index = ScopeIndex(store)
        edges = [0, SPAN_BOUNDS[3], -SPAN_BOUNDS[6]] + [r[2] for r in rows[:20]] + [
            r[3] for r in rows[20:40]]
        for start in edges:
            for length in (0, 1, SPAN_BOUNDS[2], SPAN_BOUNDS[7]):
                end = start + length
                want: dict[str, int] = {}
                for p, _, c, e, _, mask in rows:
                    if c <= end and e >= start:
                        want[p] = want.get(p, 0) | mask
                got = exposed(store, ["db"], start, end)
                assert got.per_store["db"] == want, (start, length)
                # nobody has a scope_people row: all unreachable for want of contact data
                assert got.unreachable == dict.fromkeys(want, 2)
                # the in-memory index's finer span classes find the same
                assert index.exposed(["db"], start, end) == got, (start, length)
    finally:
        store.close()
