"""The case files over HTTP: the notify list only for the privacy officer, with a reason,
audited in the principal's name; the case's clocks for the responder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apikit import Live, sample_server
from test_queries_cli import ALICE_EMAIL

from ledger.principals import Role


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with sample_server(tmp_path_factory.mktemp("cases-api"), case="inc-api") as server:
        yield server


def test_the_notify_list_is_for_the_privacy_officer_with_a_reason(live: Live) -> None:
    before = live.records()
    with live.client(Role.RESPONDER) as responder:
        assert responder.post("/incidents/inc-api/notify-list",
                              json={"reason": "INC-7"}).status_code == 403
    with live.client(Role.PRIVACY_OFFICER) as officer:
        missing = officer.post("/incidents/inc-api/notify-list", json={})
        assert missing.status_code == 422 and "reason" in missing.text
        assert live.records() == before  # refused: nothing appended, not even an audit
        answer = officer.post("/incidents/inc-api/notify-list", json={"reason": "INC-7"})
        assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {p["contact"] for p in body["people"]} == {ALICE_EMAIL, "bob@example.com"}
    assert body["announcement"]["people"] == 0
    (audit,) = [a for a in live.audits() if a["query"] == "incident notify-list"]
    assert (audit["actor"], audit["role"], audit["reason"], audit["clear"]) == (
        "privacy_officer@tests", "privacy_officer", "INC-7", True)
    assert len(audit["people"]) == 2 and ALICE_EMAIL not in str(audit)


def test_the_case_and_its_clocks_for_the_responder(live: Live) -> None:
    with live.client(Role.RESPONDER) as responder:
        case = responder.get("/incidents/inc-api/case",
                             params={"now": "2026-02-01T00:00:00Z"}).json()
        assert case["incident_id"] == "inc-api" and case["grade"] is None
        assert case["snapshot"]["people"] == 2
        assert responder.get("/incidents/nope/case").status_code == 404
        assert responder.get("/incidents/inc-api/case",
                             params={"now": "yesterday"}).status_code == 400
