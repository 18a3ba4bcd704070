"""Projections: what the data map and the disclosure register hold, and that views are the
same however the log was fed to them: in one rebuild, in chunks, or across a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eventkit import (
    Boom,
    at,
    closed,
    collected,
    dump_views,
    erased,
    event_sequences,
    granted,
    log_events,
    random_events,
    recipient,
    registered,
    shared,
    subscription,
    used,
    withdrawn,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers import queries
from consumers.projection import ProjectionRunner, RunStats
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore, ViewStore
from ledger.errors import NotFound
from ledger.persistence import EventLog
from ledger.sqlite import SQLiteEventLog


MakeStore = Callable[[], ViewStore]
ROOT = Path(__file__).resolve().parent.parent
EMAIL, PHONE, BANK = "user.contact.email", "user.contact.phone_number", "user.financial.bank_account"


def project(log: EventLog, store: ViewStore, batch_size: int = 1000) -> RunStats:
    return ProjectionRunner(log, store, all_projections(), batch_size=batch_size).run()


# --- the data map -----------------------------------------------------------------------


@pytest.fixture
def ann(event_log: EventLog, view_store: ViewStore) -> dict[str, Any]:
    """Ann's life in the ledger, in a batch size that splits it across transactions."""
    log_events(event_log, [
        registered("p_ann", at(0)),
        collected("p_ann", at(0), [EMAIL, PHONE], backups=["accounts-backup"]),
        collected("p_ann", at(1), [BANK], "payments-db", retention_days=30,
                  purpose="essential.service.payment_processing"),
        collected("p_ann", at(2), ["user.device.ip_address"], "logs-db", location="SG",
                  source="device", retention_days=7, cross_border_ref="xb-1"),
        collected("p_ann", at(2), ["user.biometric.face"], "verify", retention_days=0,
                  purpose="essential.service.identity_verification"),
        used("p_ann", at(3), [EMAIL], "essential.service.notifications.email",
             legal_ground="3.5.7"),
        used("p_ann", at(4), [EMAIL], "essential.service.notifications.email",
             legal_ground="3.5.7"),
        used("p_ann", at(5), [EMAIL], "marketing.communications.email", consent_id="c-mkt"),
        shared("p_ann", at(6), "payco", [BANK]),
        granted("p_ann", at(1), "c-mkt"),
        granted("p_ann", at(1), "c-prof", "personalize.profiling"),
        withdrawn("p_ann", at(8), "c-prof", "personalize.profiling"),
        subscription("p_ann", at(9), "marketing.communications.email", subscribed=False),
        erased("p_ann", at(10), [EMAIL], ["accounts-backup"]),
        erased("p_ann", at(10), ["user.device"], ["logs-db"], "anonymised"),
        closed("p_ann", at(20), legal_hold_categories=["user.financial"],
               legal_hold_until=at(200).isoformat()),
    ])
    project(event_log, view_store, batch_size=3)
    return queries.subject_map(view_store, "p_ann", now=at(25))


def category(answer: dict[str, Any], key: str) -> dict[str, Any]:
    return next(c for c in answer["categories"] if c["category"] == key)


def store_of(answer: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    return next(s for s in category(answer, key)["stores"] if s["store"] == name)


def test_data_map_lists_every_category_with_its_source_and_purposes(ann: dict[str, Any]) -> None:
    assert [c["category"] for c in ann["categories"]] == sorted(
        [EMAIL, PHONE, BANK, "user.device.ip_address", "user.biometric.face"])
    email = category(ann, EMAIL)
    assert email["sources"][0]["source"] == "subject"
    assert email["sources"][0]["purpose"] == "essential.service.authentication"
    uses = {(u["purpose"], u["legal_ground"], u["consent_id"]): u["first"] for u in email["uses"]}
    assert uses == {("essential.service.notifications.email", "3.5.7", None): at(3).isoformat(),
                    ("marketing.communications.email", None, "c-mkt"): at(5).isoformat()}
    assert category(ann, "user.device.ip_address")["sources"][0]["source"] == "device"
    assert category(ann, BANK)["sensitive"] is True


def test_data_map_stores_locations_and_erasure_per_store(ann: dict[str, Any]) -> None:
    primary = store_of(ann, EMAIL, "accounts-db")
    backup = store_of(ann, EMAIL, "accounts-backup")
    assert (primary["status"], primary["backup"], primary["location"]) == ("held", False, "CN")
    assert (backup["status"], backup["backup"]) == ("erased", True)
    assert backup["since"] == at(10).isoformat()
    assert store_of(ann, PHONE, "accounts-backup")["status"] == "held"
    ip = store_of(ann, "user.device.ip_address", "logs-db")
    assert (ip["status"], ip["location"]) == ("anonymised", "SG")
    # compared and discarded: collected, stored nowhere
    face = category(ann, "user.biometric.face")
    assert face["stores"] == [] and face["held"] is False
    assert face["sources"][0]["stored"] is False


def test_data_map_retention_deadlines(ann: dict[str, Any]) -> None:
    bank = store_of(ann, BANK, "payments-db")
    assert bank["retention_deadline"] == at(31).isoformat()
    assert bank["overdue"] is False  # now is day 25
    # until closure: closed at day 20; the financial legal hold does not cover e-mail
    assert store_of(ann, EMAIL, "accounts-db")["retention_deadline"] == at(20).isoformat()
    assert store_of(ann, EMAIL, "accounts-db")["overdue"] is True


def test_data_map_consents_opt_outs_and_recipients(ann: dict[str, Any]) -> None:
    assert ann["consents_in_force"] == ["c-mkt"]
    assert ann["opt_outs"] == ["marketing.communications.email"]
    assert [r["recipient"] for r in category(ann, BANK)["recipients"]] == ["payco"]
    assert ann["subject"]["closed_at"] == at(20).isoformat()
    assert ann["subject"]["legal_hold"]["categories"] == ["user.financial"]
    assert ann["subject"]["erased"] is False


def test_data_map_of_a_regranted_consent_and_a_shredded_person(event_log: EventLog, view_store: ViewStore) -> None:
    log_events(event_log, [
        granted("p_bo", at(1), "c-1"), withdrawn("p_bo", at(2), "c-1"), granted("p_bo", at(3), "c-1"),
        collected("p_bo", at(1), [EMAIL]),
        erased("p_bo", at(4), ["user"], ["accounts-db"]),
        collected("p_bo", at(5), [EMAIL]),  # collected again after erasure: held again
        erased("p_bo", at(6), ["user"], ["ledger-key-vault"], "crypto_shredded"),
    ])
    project(event_log, view_store, batch_size=1000)  # all in one batch: order still counts
    answer = queries.subject_map(view_store, "p_bo")
    assert answer["consents_in_force"] == ["c-1"]
    assert store_of(answer, EMAIL, "accounts-db")["status"] == "held"
    assert answer["subject"]["erased"] is True


def test_unknown_person_is_not_found(view_store: ViewStore, event_log: EventLog) -> None:
    project(event_log, view_store)
    with pytest.raises(NotFound):
        queries.subject_map(view_store, "p_nobody")


# --- the disclosure register ------------------------------------------------------------


@pytest.fixture
def register(event_log: EventLog, view_store: ViewStore) -> ViewStore:
    log_events(event_log, [
        recipient("payco", at(0), "Pay Co", roles=["payment_processor"]),
        recipient("adco", at(0), "Ad Co", kind="partner", location="US"),
        shared("p_ann", at(1), "payco", [BANK, EMAIL]),
        shared("p_bob", at(2), "payco", [BANK], agreement_ref="dpa-7"),
        shared("p_ann", at(3), "adco", [EMAIL], "5.1.3", "marketing.communications",
               kind="partner", consent_id="c-xb", cross_border={
                   "destination_country": "US", "recipient_name": "Ad Co",
                   "recipient_contact": "dpo@adco", "processing": "ads",
                   "purpose": "marketing", "categories": [EMAIL], "rights_howto": "mail"}),
        shared("p_cy", at(4), "police", [PHONE], "5.3.4", "essential.legal_obligation",
               kind="authority", legal_ground="5.3.4"),
        shared("p_cy", at(5), "adco", ["user.device.ip_address"], None, "sales", kind="partner"),
    ])
    project(event_log, view_store, batch_size=2)
    return view_store


def test_register_lists_each_disclosure_with_its_categories(register: ViewStore) -> None:
    rows = queries.disclosures(register)
    assert [r["pseudonym"] for r in rows] == ["p_ann", "p_bob", "p_ann", "p_cy", "p_cy"]
    first = rows[0]
    assert first["categories"] == [EMAIL, BANK]
    assert (first["recipient"], first["recipient_name"], first["clause"]) == ("payco", "Pay Co", "5.1.1")
    xb = rows[2]["cross_border"]
    assert xb["destination_country"] == "US" and xb["recipient_contact"] == "dpo@adco"
    assert rows[1]["agreement_ref"] == "dpa-7"
    assert rows[0]["position"]["offset"] < rows[1]["position"]["offset"]


def test_register_filters(register: ViewStore) -> None:
    def people(**kw: Any) -> list[tuple[str, str]]:
        return [(r["pseudonym"], r["recipient"]) for r in queries.disclosures(register, **kw)]

    assert people(recipient="adco") == [("p_ann", "adco"), ("p_cy", "adco")]
    assert people(clause="5.3.4") == [("p_cy", "police")]
    assert people(clause="5.1") == [("p_ann", "payco"), ("p_bob", "payco"), ("p_ann", "adco")]
    assert people(clause="none") == [("p_cy", "adco")]
    assert people(category="user.financial") == [("p_ann", "payco"), ("p_bob", "payco")]
    assert people(since=at(2), until=at(3)) == [("p_bob", "payco"), ("p_ann", "adco")]
    # a category filter still shows the disclosure's other categories
    assert queries.disclosures(register, category="user.financial")[0]["categories"] == [EMAIL, BANK]
    assert len(queries.disclosures(register, limit=2)) == 2
    assert queries.disclosures(register, pseudonym="p_cy", recipient="police")[0]["legal_ground"] == "5.3.4"


def test_register_summary_per_recipient(register: ViewStore) -> None:
    summary = {r["recipient"]: r for r in queries.disclosure_summary(register)}
    assert set(summary) == {"adco", "payco", "police"}
    assert (summary["payco"]["disclosures"], summary["payco"]["people"]) == (2, 2)
    assert summary["payco"]["categories"] == [EMAIL, BANK]
    assert summary["adco"]["cross_border_to"] == {"US": 1}
    assert summary["adco"]["clauses"] == {"5.1.3": 1, "none": 1}
    assert summary["police"]["name"] is None  # never registered as a recipient
    only_52 = queries.disclosure_summary(register, queries.DisclosureFilter(clause="5.3"))
    assert [r["recipient"] for r in only_52] == ["police"]


# --- same views however the log is fed --------------------------------------------------


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from consumers.projection import ProjectionRunner
    from consumers.registry import all_projections
    from consumers.scope import HoldingsProjection
    from consumers.views import SQLiteViewStore
    from ledger.sqlite import SQLiteEventLog

    log_path, views_path, mode, crash_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = 0
    original = HoldingsProjection.apply

    def apply(self, tx, items):
        global calls
        original(self, tx, items)  # rows written inside the open transaction ...
        calls += 1
        if calls == crash_at:      # ... then die before it commits
            if mode == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure")

    HoldingsProjection.apply = apply
    if log_path.startswith("kafka|"):
        from ledger.kafka import KafkaEventLog
        _, bootstrap, topic = log_path.split("|")
        log = KafkaEventLog(bootstrap, topic, partitions=1)
    else:
        log = SQLiteEventLog(log_path)
    if views_path.startswith("postgresql://"):
        from consumers.postgres import PostgresViewStore
        store = PostgresViewStore(views_path)
    else:
        store = SQLiteViewStore(views_path)
    ProjectionRunner(log, store, all_projections(), batch_size=25).run()
""")


@pytest.mark.parametrize("mode", ["sigkill", "exception"])
def test_killed_mid_run_then_restarted_equals_a_fresh_rebuild(
    mode: str, tmp_path: Path, event_log: SQLiteEventLog, make_view_store: MakeStore
) -> None:
    log_events(event_log, random_events(seed=1, n=600))
    crashed = make_view_store()  # created here, written by the crashing process
    views_path = getattr(crashed, "url", None) or getattr(crashed, "path", "")
    where = (f"kafka|{event_log.bootstrap}|{event_log.topic}" if event_log.name == "kafka"
             else str(event_log.path))
    result = subprocess.run(
        [sys.executable, "-c", CRASHER, where, str(views_path), mode, "7"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if mode == "sigkill":
        assert result.returncode == -signal.SIGKILL, result.stderr
    else:
        assert result.returncode == 1 and "injected failure" in result.stderr
    runner = ProjectionRunner(event_log, crashed, all_projections(), batch_size=25)
    stopped_at = runner.positions()
    # six batches committed; the seventh died inside its transaction and left nothing
    last_committed = list(event_log.read(limit=150))[-1]
    expected = {last_committed.partition: last_committed.offset}
    assert all(pos == expected for pos in stopped_at.values()), stopped_at
    runner.run()  # restart: resumes from the stored positions
    fresh = make_view_store()
    ProjectionRunner(event_log, fresh, all_projections()).rebuild()
    assert dump_views(crashed, all_projections()) == dump_views(fresh, all_projections())
    assert runner.positions() == ProjectionRunner(event_log, fresh, all_projections()).positions()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sequences(max_size=80), data=st.data())
def test_incremental_projection_equals_rebuild(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    _incremental_equals_rebuild(events, data, lambda: SQLiteViewStore(":memory:"))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sequences(max_size=80), data=st.data())
def test_incremental_projection_equals_rebuild_on_postgres(
    postgres_server: Any, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    from consumers.postgres import PostgresViewStore

    _incremental_equals_rebuild(
        events, data, lambda: PostgresViewStore(postgres_server.new_schema(tcp=False)))


def _incremental_equals_rebuild(events: list[dict[str, Any]], data: st.DataObject,
                                new_store: Callable[[], ViewStore]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = SQLiteEventLog(Path(tmp) / "log.db", synchronous="OFF")
        incremental = new_store()
        rebuilt = new_store()
        # two long-lived sets of projections take turns, as two processes would: each
        # must notice the other's writes (their caches go stale)
        workers = [all_projections(), all_projections()]
        try:
            i = 0
            while i < len(events):
                # new events arrive in chunks; the runner reads them in batches of any size
                chunk = data.draw(st.integers(1, 20), label="chunk")
                log_events(log, events[i : i + chunk])
                i += chunk
                batch = data.draw(st.integers(1, 15), label="batch")
                worker = workers[data.draw(st.integers(0, 1), label="worker")]
                ProjectionRunner(log, incremental, worker, batch_size=batch).run()
            ProjectionRunner(log, rebuilt, all_projections(), batch_size=10_000).rebuild()
            assert dump_views(incremental, all_projections()) == dump_views(rebuilt, all_projections())
        finally:
            log.close()
            incremental.close()
            rebuilt.close()


def test_a_rolled_back_batch_leaves_no_trace_in_the_same_process(
    event_log: EventLog, make_view_store: MakeStore
) -> None:
    log_events(event_log, random_events(seed=2, n=400))
    store = make_view_store()
    projections = all_projections()
    runner = ProjectionRunner(event_log, store, [*projections, Boom(fail_at=3)], batch_size=30)
    with pytest.raises(RuntimeError):
        runner.run()
    runner.run()  # the same projection objects, caches and all, carry on
    fresh = make_view_store()
    ProjectionRunner(event_log, fresh, all_projections()).rebuild()
    assert dump_views(store, projections) == dump_views(fresh, projections)


def test_caches_that_overflow_change_nothing(
    event_log: EventLog, make_view_store: MakeStore
) -> None:
    log_events(event_log, random_events(seed=3, n=1500))
    store = make_view_store()
    projections = all_projections()
    for projection in projections:
        cache = getattr(projection, "cache", None)
        if cache is not None:
            cache.capacity = 6  # evicts at nearly every batch
    ProjectionRunner(event_log, store, projections, batch_size=20).rebuild()
    fresh = make_view_store()
    ProjectionRunner(event_log, fresh, all_projections(), batch_size=10_000).rebuild()
    assert dump_views(store, projections) == dump_views(fresh, projections)


def test_rebuild_of_one_projection_leaves_the_others_alone(event_log: EventLog, view_store: ViewStore) -> None:
    log_events(event_log, [collected("p_ann", at(1), [EMAIL]), shared("p_ann", at(2), "payco", [EMAIL])])
    project(event_log, view_store)
    before = dump_views(view_store, all_projections())
    datamap = [p for p in all_projections() if p.name == "datamap"]
    ProjectionRunner(event_log, view_store, datamap).rebuild()
    assert dump_views(view_store, all_projections()) == before
