"""Every transition of the incident and rights-request case files, allowed and refused.

A refused step raises before any event exists: each refusal also checks that the aggregate
has no new pending event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cases.domain import Incident, RightsRequest
from ledger.errors import CaseRefused, InvalidInput

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HASH = "ab" * 32
COUNTS = {"people": 120, "records": 300, "reachable": 100, "unreachable": 20, "erased": 5,
          "people_with_sensitive_data": 3, "cross_border_people": 2,
          "residence": {"CN": 110, "DE": 10}}
DUTIES = ["pipl57_regulator", "pipl57_individuals", "gdpr33:DE"]
BEFORE_CLOSE = ["pipl57_regulator", "gdpr33:DE"]
VERIFY = ["access", "erasure", "closure"]
REAL_NAME = ["user.name", "user.government_id"]
ACTIONS = {"access": "export", "erasure": "erase"}


def _incident(scoped: bool = True, graded: bool = True) -> Incident:
    incident = Incident.open("inc-1", "bucket left public", ["logs"], T0 - timedelta(days=1),
                             T0, ["user.contact.email"], at=T0)
    if scoped:
        incident.scope({"hash": HASH, "counts": COUNTS}, at=T0)
    if graded:
        incident.grade_from("general", "judgment", DUTIES, "few people, no sensitive data",
                            at=T0)
    return incident


def refused(aggregate: Any, step: Callable[[], object],
            error: type[Exception] = CaseRefused, match: str = "") -> str:
    """The step raises ``error`` and leaves no new pending event."""
    before = len(aggregate._pending_events)
    with pytest.raises(error, match=match) as info:
        step()
    assert len(aggregate._pending_events) == before
    return str(info.value)


# --- incidents ------------------------------------------------------------------------


def test_an_incident_opens_with_a_valid_window_only() -> None:
    incident = _incident(scoped=False, graded=False)
    assert incident.is_open and incident.discovered_at == T0
    with pytest.raises(InvalidInput, match="window_end is before window_start"):
        Incident.open("inc-2", "x", ["logs"], T0, T0 - timedelta(hours=1), at=T0)
    with pytest.raises(InvalidInput, match="stores"):
        Incident.open("inc-2", "x", [], T0, T0, at=T0)


def test_scope_then_grade_and_not_the_other_way() -> None:
    incident = _incident(scoped=False, graded=False)
    refused(incident, lambda: incident.grade_from("general", "threshold", DUTIES),
            match="take its scope before grading")
    incident.scope({"hash": HASH, "counts": COUNTS}, at=T0)
    assert incident.snapshot is not None and incident.snapshot["hash"] == HASH
    refused(incident, lambda: incident.grade_from("general", "judgment", DUTIES, "  "),
            InvalidInput, "justification is required")
    incident.grade_from("general", "judgment", DUTIES, "few people", at=T0)
    assert incident.grade == "general" and incident.duties == DUTIES
    # a new scope voids the grade: it must be graded again from the new snapshot
    incident.scope({"hash": "cd" * 32, "counts": COUNTS}, at=T0)
    assert incident.grade is None


def test_a_scope_with_a_bad_hash_is_refused() -> None:
    incident = _incident(scoped=False, graded=False)
    refused(incident, lambda: incident.scope({"hash": "not-a-hash", "counts": COUNTS}),
            InvalidInput, "snapshot_hash")


def test_reports_need_a_grade_and_a_duty_of_the_incident_once() -> None:
    ungraded = _incident(graded=False)
    refused(ungraded, lambda: ungraded.report("pipl57_regulator", "CAC"),
            match="grade it before reporting")
    incident = _incident()
    refused(incident, lambda: incident.report("cac_report", "CAC Jiangsu"),
            match="not a duty of this incident")
    incident.report("pipl57_regulator", "CAC Jiangsu", at=T0 + timedelta(hours=2))
    assert incident.reports["pipl57_regulator"]["authority"] == "CAC Jiangsu"
    refused(incident, lambda: incident.report("pipl57_regulator", "CAC"),
            match="already filed")


def test_an_exemption_needs_its_justification_and_cannot_replace_a_report() -> None:
    incident = _incident()
    refused(incident, lambda: incident.exempt("gdpr33:DE", "short"), InvalidInput,
            "justification")
    incident.exempt("gdpr33:DE", "unlikely to result in a risk: hashed addresses only")
    assert "gdpr33:DE" in incident.exemptions
    refused(incident, lambda: incident.exempt("gdpr33:DE", "once more, with feeling"),
            match="already exempted")
    incident.report("pipl57_regulator", "CAC")
    refused(incident, lambda: incident.exempt("pipl57_regulator", "too late for an excuse"),
            match="an exemption cannot replace it")


def test_an_incident_cannot_close_before_its_regulator_reports_unless_exempted() -> None:
    ungraded = _incident(graded=False)
    refused(ungraded, lambda: ungraded.close(BEFORE_CLOSE), match="before it is graded")
    incident = _incident()
    message = refused(incident, lambda: incident.close(BEFORE_CLOSE),
                      match="cannot close before these reports")
    assert "pipl57_regulator" in message and "gdpr33:DE" in message
    incident.report("pipl57_regulator", "CAC")
    refused(incident, lambda: incident.close(BEFORE_CLOSE), match="gdpr33:DE")
    incident.exempt("gdpr33:DE", "unlikely to result in a risk to anyone in Germany")
    incident.close(BEFORE_CLOSE, at=T0 + timedelta(days=3))
    assert not incident.is_open
    refused(incident, lambda: incident.close(BEFORE_CLOSE), match="close it again")


def test_after_closing_only_the_summary_report_is_taken() -> None:
    incident = _incident()
    incident.grade_from("relatively_major", "judgment", DUTIES + ["cac_summary"], "many")
    refused(incident, lambda: incident.report("cac_summary", "CAC"),
            match="filed after closing")
    incident.report("pipl57_regulator", "CAC")
    incident.report("gdpr33:DE", "BfDI")
    incident.close(BEFORE_CLOSE, at=T0 + timedelta(days=1))
    incident.report("cac_summary", "CAC", at=T0 + timedelta(days=20))
    assert "cac_summary" in incident.reports
    for step in (lambda: incident.scope({"hash": HASH, "counts": COUNTS}),
                 lambda: incident.grade_from("general", "judgment", DUTIES, "again"),
                 lambda: incident.report("pipl57_individuals", "x"),
                 lambda: incident.exempt("pipl57_individuals", "a long enough reason"),
                 lambda: incident.notices_sent("pipl57_individuals", "email", 1),
                 lambda: incident.announce("website")):
        refused(incident, step, match="it was closed")


def test_notices_and_announcement_follow_the_scope() -> None:
    incident = _incident(scoped=False, graded=False)
    refused(incident, lambda: incident.notices_sent("pipl57_individuals", "email", 1),
            match="scope before notifying")
    refused(incident, lambda: incident.announce("website"), match="scope before announcing")
    refused(incident, lambda: incident.drafted("notice_zh", HASH), match="scope before drafting")
    incident.scope({"hash": HASH, "counts": COUNTS})
    refused(incident, lambda: incident.notices_sent("pipl57_individuals", "email", 101),
            match="only 100 people can be reached")
    incident.notices_sent("pipl57_individuals", "email", 100)
    incident.announce("website")
    assert incident.announced is not None and incident.announced["people"] == 20
    refused(incident, lambda: incident.announce("newspaper"), match="already announced")
    incident.drafted("notice_zh", HASH)
    refused(incident, lambda: incident.drafted("letter", HASH), InvalidInput, "draft")


# --- rights requests ------------------------------------------------------------------


def _request(kind: str, categories: tuple[str, ...] = ()) -> RightsRequest:
    return RightsRequest.receive(f"req-{kind}", kind, "p_someone", T0 + timedelta(days=15),
                                 categories, at=T0)


def test_a_request_is_received_with_a_due_date_after_it() -> None:
    request = _request("access")
    assert request.status == "open" and request.due == T0 + timedelta(days=15)
    with pytest.raises(InvalidInput, match="due"):
        RightsRequest.receive("r", "access", "p_x", T0 - timedelta(days=1), at=T0)
    with pytest.raises(InvalidInput, match="kind"):
        RightsRequest.receive("r", "telepathy", "p_x", T0, at=T0)


def test_a_deletion_cannot_be_fulfilled_before_identity_is_verified() -> None:
    request = _request("erasure")
    refused(request, lambda: request.fulfil(VERIFY, REAL_NAME, ACTIONS),
            match="before the person's identity is verified")
    request.verify("sms_code")
    refused(request, lambda: request.verify("again"), match="already verified")
    refused(request, lambda: request.fulfil(VERIFY, REAL_NAME, ACTIONS),
            match="erase is done and linked")
    refused(request, lambda: request.link("export", "e-1", ACTIONS), match="not export")
    request.link("erase", "e-1", ACTIONS)
    request.fulfil(VERIFY, REAL_NAME, ACTIONS)
    assert request.status == "fulfilled" and request.links == [{"action": "erase",
                                                                "event_id": "e-1"}]


def test_an_access_request_is_fulfilled_by_its_linked_export() -> None:
    request = _request("access")
    refused(request, lambda: request.fulfil(VERIFY, REAL_NAME, ACTIONS), match="verified")
    request.verify("face_match")
    request.link("export", "audit-1", ACTIONS)
    request.fulfil(VERIFY, REAL_NAME, ACTIONS)
    assert request.status == "fulfilled"


def test_a_real_name_correction_needs_verified_identity_others_do_not() -> None:
    real_name = _request("correction", ("user.name",))
    refused(real_name, lambda: real_name.fulfil(VERIFY, REAL_NAME, ACTIONS),
            match="correction of real-name data")
    id_number = _request("correction", ("user.government_id.national_identification_number",))
    refused(id_number, lambda: id_number.fulfil(VERIFY, REAL_NAME, ACTIONS),
            match="real-name")
    email = _request("correction", ("user.contact.email",))
    email.fulfil(VERIFY, REAL_NAME, ACTIONS)
    assert email.status == "fulfilled"
    withdrawal = _request("consent_withdrawal")
    withdrawal.fulfil(VERIFY, REAL_NAME, ACTIONS)
    assert withdrawal.status == "fulfilled"


def test_a_closed_request_takes_no_further_step() -> None:
    done = _request("consent_withdrawal")
    done.fulfil(VERIFY, REAL_NAME, ACTIONS)
    no = _request("complaint")
    refused(no, lambda: no.refuse("  "), InvalidInput, "reason")
    no.refuse("not_a_complaint_about_us")
    assert no.status == "refused" and no.reason == "not_a_complaint_about_us"
    for request in (done, no):
        for step in (lambda r=request: r.verify("sms"),
                     lambda r=request: r.link("export", "e", ACTIONS),
                     lambda r=request: r.fulfil(VERIFY, REAL_NAME, ACTIONS),
                     lambda r=request: r.refuse("late")):
            refused(request, step, match="already")
