"""Accountable reads over HTTP, as fast as they can be without weakening them.

A data map is answered only once its ``ledger.queried`` record is durable (a failed audit
answers nothing), reflects every event published before the question (by any writer),
concurrent questions are each audited once, and a revoked token is refused at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apikit import Live, sample_server
from samplekit import ALICE, BOB, EMAIL, collected

from ledger.application import Ledger
from ledger.errors import OperationalError, Unauthenticated
from ledger.persistence import AppendResult, EventLog, NewRecord
from ledger.principals import Role, SQLitePrincipalStore
from ledger.sqlite import SQLiteEventLog


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with sample_server(tmp_path_factory.mktemp("reads")) as server:
        yield server


def stored_audits(live: Live) -> int:
    """Audit records as another connection sees them (committed, not just cached)."""
    log = SQLiteEventLog(live.settings.data_dir / "log.db")
    try:
        return sum(1 for r in log.read() if r.event_type == "ledger.queried")
    finally:
        log.close()


class HeldLog:
    """Stands in for the group commit's log: each append waits for ``release`` (or fails)."""

    def __init__(self, inner: EventLog, fail: bool = False):
        self.inner = inner
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        self.entered.set()
        assert self.release.wait(30)
        if self.fail:
            raise OperationalError("injected: the log refused the audit record")
        return self.inner.append(records)


def test_the_answer_waits_for_its_audit_record_to_be_durable(live: Live) -> None:
    commits = live.service.ledger.commits
    held = HeldLog(commits.log)
    before = stored_audits(live)
    answers: list[httpx.Response] = []
    pseudonym = live.service.pseudonym(ALICE)
    commits.log = held  # type: ignore[assignment]
    try:
        asking = threading.Thread(target=lambda: answers.append(
            live.client(Role.COMPLIANCE).get(f"/subjects/{pseudonym}")))
        asking.start()
        assert held.entered.wait(30)
        asking.join(0.5)
        assert asking.is_alive() and answers == []  # no answer while the audit is not durable
        held.release.set()
        asking.join(30)
    finally:
        commits.log = held.inner  # type: ignore[assignment]
    [answer] = answers
    assert answer.status_code == 200 and answer.json()["pseudonym"] == pseudonym
    assert stored_audits(live) == before + 1  # on disk by the time the answer arrived


def test_a_failed_audit_answers_nothing(live: Live) -> None:
    commits = live.service.ledger.commits
    held = HeldLog(commits.log, fail=True)
    held.release.set()
    before = live.records()
    commits.log = held  # type: ignore[assignment]
    try:
        answer = live.client(Role.COMPLIANCE).get(
            f"/subjects/{live.service.pseudonym(ALICE)}")
    finally:
        commits.log = held.inner  # type: ignore[assignment]
    assert answer.status_code == 503
    assert "categories" not in answer.text and "pseudonym" not in answer.json()
    assert live.records() == before


def test_the_answer_reflects_every_event_published_before_the_question(live: Live) -> None:
    pseudonym = live.service.pseudonym(BOB)
    calls = []
    real = live.service.catch_up

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    live.service.catch_up = counted  # type: ignore[method-assign]
    try:
        with live.client(Role.COMPLIANCE) as client:
            first = client.get(f"/subjects/{pseudonym}").json()
            asked = len(calls)
            for _ in range(3):  # only audit records came since: nothing to read
                assert client.get(f"/subjects/{pseudonym}").json() == first
            assert len(calls) == asked
            stores = {s["store"] for c in first["categories"] for s in c.get("stores", [])}
            for n in range(3):
                # another writer (its own connection, as another process would be)
                with Ledger(live.settings) as writer:
                    writer.publish([collected(BOB, f"2026-01-1{n}T00:00:00Z", [EMAIL],
                                              f"crm-{n}", {EMAIL: "bob@example.com"})])
                answer = client.get(f"/subjects/{pseudonym}").json()
                now = {s["store"] for c in answer["categories"] for s in c.get("stores", [])}
                assert now == stores | {f"crm-{k}" for k in range(n + 1)}, now
            assert len(calls) == asked + 3
    finally:
        del live.service.catch_up


def test_concurrent_questions_are_each_audited_once(live: Live) -> None:
    before = stored_audits(live)
    merged_before = live.service.ledger.commits.appends
    pseudonym = live.service.pseudonym(ALICE)
    statuses: list[int] = []

    def ask(_: int) -> None:
        for _ in range(5):
            statuses.append(live.client(Role.RESPONDER).get(f"/subjects/{pseudonym}")
                            .status_code)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 40
    assert stored_audits(live) == before + 40
    assert live.service.ledger.commits.appends - merged_before <= 40


def test_a_revoked_token_is_refused_at_once(live: Live) -> None:
    issued = live.principals.issue("compliance@tests", label="revoked at once")
    pseudonym = live.service.pseudonym(ALICE)
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert live.http.get(f"/subjects/{pseudonym}", headers=headers).status_code == 200
    live.principals.revoke(issued.info.id)
    assert live.http.get(f"/subjects/{pseudonym}", headers=headers).status_code == 401


def test_a_token_revoked_by_another_process_is_refused_at_once(live: Live) -> None:
    issued = live.principals.issue("responder@tests", label="revoked elsewhere")
    pseudonym = live.service.pseudonym(ALICE)
    headers = {"Authorization": f"Bearer {issued.token}"}
    for _ in range(2):  # the second answer comes from the remembered token
        assert live.http.get(f"/subjects/{pseudonym}", headers=headers).status_code == 200
    # another connection to the file, as `pdl token revoke` in another process would be
    with SQLitePrincipalStore.for_data_dir(live.settings.data_dir) as other:
        other.revoke(issued.info.id)
    refused = live.http.get(f"/subjects/{pseudonym}", headers=headers)
    assert refused.status_code == 401


def test_remembered_tokens_obey_disabling_and_expiry(tmp_path: Path) -> None:
    with SQLitePrincipalStore(tmp_path / "access.db") as store, \
            SQLitePrincipalStore(tmp_path / "access.db") as other:
        store.add("svc@tests", Role.RESPONDER)
        store.add("brief@tests", Role.RESPONDER)
        lasting = store.issue("svc@tests").token
        brief = store.issue("brief@tests", ttl=timedelta(seconds=1)).token
        assert store.resolve(lasting).name == "svc@tests"
        assert store.resolve(brief).name == "brief@tests"
        with pytest.raises(Unauthenticated, match="unknown"):
            store.resolve(lasting[:-2] + ("AA" if not lasting.endswith("AA") else "BB"))
        time.sleep(1.1)
        with pytest.raises(Unauthenticated, match="expired"):
            store.resolve(brief)  # remembered, but expired since
        other.disable("svc@tests")
        with pytest.raises(Unauthenticated, match="disabled"):
            store.resolve(lasting)
