"""Deadline clocks from the rule table, with a frozen clock, across the three regimes:
PIPL art. 57, the CAC incident reporting measures (from 2025-11-01), GDPR art. 33/34,
and the rights-request deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cases import clocks
from cases.domain import Incident, RightsRequest
from ledger.errors import ConfigurationError
from ledger.settings import Settings

FOUND = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)  # after the CAC measures' start
H = timedelta(hours=1)
COUNTS = {"people": 2_500_000, "records": 9_000_000, "reachable": 2_400_000,
          "unreachable": 100_000, "erased": 30_000, "people_with_sensitive_data": 12,
          "cross_border_people": 40, "residence": {"CN": 2_499_000, "DE": 700, "FR": 300}}


def settings(**env: str) -> Settings:
    return Settings.from_env({f"LEDGER_{k}": v for k, v in env.items()})


def graded(counts: dict[str, object] = COUNTS, found: datetime = FOUND,
           s: Settings | None = None) -> Incident:
    s = s or settings()
    incident = Incident.open("inc-9", "database dump on a forum", ["accounts-db"],
                             found - 48 * H, found, at=found)
    incident.scope({"hash": "0" * 64, "counts": counts}, at=found)
    grade = clocks.assess(dict(counts), s).computed_grade or "general"
    incident.grade_from(grade, "threshold" if grade != "general" else "judgment",
                        clocks.duties(grade, dict(counts), found), "judged", at=found)
    return incident


def by_duty(incident: Incident, now: datetime, s: Settings | None = None
            ) -> dict[str, clocks.Clock]:
    return {c.duty: c for c in clocks.incident_clocks(incident, s or settings(), now)}


def test_every_clock_in_the_table_has_a_citation_and_an_effective_date() -> None:
    table = clocks.table()
    assert table["clock"]
    for rule in table["clock"]:
        assert rule["citation"] and rule["title"]
        datetime.fromisoformat(rule["effective"])
        assert rule["from"] in ("discovered", "closed")
        assert rule["audience"] in ("regulator", "individuals")
    assert table["requests"]["citation"] and table["grades"]["citation"]


def test_grades_follow_the_thresholds_and_the_setting_overrides_them() -> None:
    s = settings()
    assert clocks.assess({**COUNTS, "people": 999_999}, s).computed_grade is None
    assert "judge the grade yourself" in (clocks.assess({**COUNTS, "people": 10}, s).prompt or "")
    assert clocks.assess(COUNTS, s).computed_grade == "relatively_major"
    assert clocks.assess({**COUNTS, "people": 10_000_000}, s).computed_grade == "major"
    assert clocks.assess({**COUNTS, "people": 100_000_000}, s).computed_grade == \
        "especially_major"
    small = settings(INCIDENT_GRADE_THRESHOLDS="10,20,30")
    assert clocks.assess({**COUNTS, "people": 25}, small).computed_grade == "major"
    assert clocks.assess({**COUNTS, "people": 25}, small).prompt is None
    with pytest.raises(ConfigurationError, match="LEDGER_INCIDENT_GRADE_THRESHOLDS"):
        settings(INCIDENT_GRADE_THRESHOLDS="30,20,10")
    with pytest.raises(ConfigurationError, match="LEDGER_OPERATOR_KIND"):
        settings(OPERATOR_KIND="bank")


def test_duties_of_a_relatively_major_incident_touching_eu_residents() -> None:
    incident = graded()
    assert incident.grade == "relatively_major"
    assert incident.duties == ["pipl57_regulator", "pipl57_individuals", "cac_report",
                               "cac_summary", "gdpr33:DE", "gdpr33:FR", "gdpr34:DE",
                               "gdpr34:FR"]
    assert clocks.before_closing(incident.duties) == ["pipl57_regulator", "cac_report",
                                                      "gdpr33:DE", "gdpr33:FR"]


def test_cac_clock_is_1_2_or_4_hours_from_discovery_by_operator_kind() -> None:
    incident = graded()
    now = FOUND + 90 * timedelta(minutes=1)
    expect = {"cii": ("overdue", -30 * 60), "state_organ": ("running", 30 * 60),
              "other": ("running", 150 * 60)}
    for kind, (state, left) in expect.items():
        s = settings(OPERATOR_KIND=kind)
        clock = by_duty(incident, now, s)["cac_report"]
        assert clock.state == state, kind
        assert clock.remaining_s == left
        assert clock.due == FOUND + {"cii": 1, "state_organ": 2, "other": 4}[kind] * H
        assert clock.finding is (state == "overdue")


def test_cac_duties_do_not_apply_before_the_measures_took_effect() -> None:
    before = graded(found=datetime(2025, 10, 31, 23, 0, tzinfo=UTC))
    assert "cac_report" not in before.duties and "cac_summary" not in before.duties
    assert "pipl57_regulator" in before.duties and "gdpr33:DE" in before.duties
    general = graded(counts={**COUNTS, "people": 5000, "people_with_sensitive_data": 0,
                             "residence": {"CN": 5000}})
    assert general.grade == "general"
    assert general.duties == ["pipl57_regulator", "pipl57_individuals"]


def test_gdpr_33_is_72_hours_per_authority_and_34_has_no_fixed_deadline() -> None:
    incident = graded()
    at = by_duty(incident, FOUND + 3 * H)
    assert at["gdpr33:DE"].state == "running"
    assert at["gdpr33:DE"].remaining_s == 69 * 3600
    assert at["gdpr34:FR"].state == "no fixed deadline" and not at["gdpr34:FR"].finding
    incident.report("gdpr33:DE", "BfDI", at=FOUND + 50 * H)
    later = by_duty(incident, FOUND + 73 * H)
    assert later["gdpr33:DE"].state == "met" and not later["gdpr33:DE"].finding
    assert later["gdpr33:FR"].state == "overdue" and later["gdpr33:FR"].finding
    assert later["gdpr33:FR"].remaining_s == -3600
    incident.report("gdpr33:FR", "CNIL", at=FOUND + 80 * H)
    assert by_duty(incident, FOUND + 90 * H)["gdpr33:FR"].state == "late"


def test_pipl_57_and_the_summary_clock_that_starts_at_closing() -> None:
    incident = graded()
    at = by_duty(incident, FOUND + 2 * H)
    assert at["pipl57_regulator"].state == "running"
    assert at["cac_summary"].state == "waiting" and at["cac_summary"].due is None
    incident.report("pipl57_regulator", "CAC Beijing", at=FOUND + 1 * H)
    incident.report("cac_report", "CAC Beijing", at=FOUND + 1 * H)
    incident.exempt("gdpr33:DE", "data of German residents was encrypted at rest, key safe")
    incident.exempt("gdpr33:FR", "data of French residents was encrypted at rest, key safe")
    closed = FOUND + 10 * 24 * H
    incident.close(clocks.before_closing(incident.duties), at=closed)
    after = by_duty(incident, closed + 29 * 24 * H)
    assert after["pipl57_regulator"].state == "met"
    assert after["gdpr33:DE"].state == "exempted" and not after["gdpr33:DE"].finding
    assert after["cac_summary"].state == "running"
    assert after["cac_summary"].due == closed + 30 * 24 * H
    assert by_duty(incident, closed + 31 * 24 * H)["cac_summary"].state == "overdue"
    incident.report("cac_summary", "CAC Beijing", at=closed + 20 * 24 * H)
    assert by_duty(incident, closed + 31 * 24 * H)["cac_summary"].state == "met"


def test_rights_request_deadline_defaults_to_15_days_and_is_configurable() -> None:
    received = FOUND
    assert clocks.request_due(received, settings()) == received + timedelta(days=15)
    five = settings(REQUEST_DEADLINE_DAYS="5")
    request = RightsRequest.receive("req-1", "access", "p_x",
                                    clocks.request_due(received, five), at=received)
    assert clocks.request_clock(request, received + timedelta(days=4)).state == "running"
    overdue = clocks.request_clock(request, received + timedelta(days=6))
    assert overdue.state == "overdue" and overdue.finding
    request.verify("sms", at=received + H)
    request.link("export", "audit-1", {"access": "export"}, at=received + 2 * H)
    request.fulfil(["access"], [], {"access": "export"}, at=received + timedelta(days=3))
    assert clocks.request_clock(request, received + timedelta(days=6)).state == "met"
