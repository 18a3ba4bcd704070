"""Deadline clocks, read from the rule table ``cases/deadlines.toml``.

The table holds every deadline with its citation and effective date; this module only
interprets its fields: which duties apply to an incident (``assess``), and where each
clock stands at a given instant (``incident_clocks``, ``request_clock``). ``now`` is always
passed in, so a test can freeze it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from cases.domain import GRADES, Incident, RightsRequest
from ledger.settings import Settings


@cache
def table() -> dict[str, Any]:
    """The rule table, parsed once."""
    return tomllib.loads(resources.files("cases").joinpath("deadlines.toml").read_text("utf-8"))


def thresholds(settings: Settings) -> dict[str, int]:
    """People affected from which each grade applies (settings override the table)."""
    if settings.grade_thresholds is not None:
        return dict(zip(GRADES[1:], settings.grade_thresholds))
    grades = table()["grades"]
    return {g: int(grades[g]) for g in GRADES[1:]}


def _rank(grade: str | None) -> int:
    return GRADES.index(grade) if grade in GRADES else -1


@dataclass(frozen=True)
class Assessment:
    """What the scope says: the grade by threshold (None: below them, a person judges), the
    duties that apply with that grade, and the prompt shown when judgment is needed."""

    computed_grade: str | None
    thresholds: dict[str, int]
    prompt: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"computed_grade": self.computed_grade, "thresholds": self.thresholds,
                "prompt": self.prompt}


def assess(counts: dict[str, Any], settings: Settings) -> Assessment:
    """The grade the people affected reach, or a prompt for a person's judgment."""
    limits = thresholds(settings)
    grade = None
    for g in GRADES[1:]:
        if counts["people"] >= limits[g]:
            grade = g
    prompt = None
    if grade is None:
        prompt = (f"{counts['people']} people affected is below every threshold "
                  f"(较大 from {limits['relatively_major']:,}): judge the grade yourself — "
                  "general (一般) or higher for the data's sensitivity "
                  f"({counts['people_with_sensitive_data']} people with sensitive data) — "
                  "and record why: pdl incident grade ID --grade G --justification TEXT")
    return Assessment(grade, limits, prompt)


def _applies_from(rule: dict[str, Any], discovered: datetime) -> bool:
    return discovered.date() >= date.fromisoformat(rule["effective"])


def high_risk(grade: str | None, snapshot: dict[str, Any]) -> bool:
    rule = table()["high_risk"]
    return _rank(grade) >= _rank(rule["min_grade"]) or (
        bool(rule.get("sensitive")) and snapshot.get("people_with_sensitive_data", 0) > 0)


def duties(grade: str, snapshot: dict[str, Any], discovered: datetime) -> list[str]:
    """The duties of an incident of ``grade`` with this scope, discovered then."""
    out: list[str] = []
    for rule in table()["clock"]:
        if not _applies_from(rule, discovered):
            continue
        if "min_grade" in rule and _rank(grade) < _rank(rule["min_grade"]):
            continue
        if rule.get("high_risk") and not high_risk(grade, snapshot):
            continue
        if "per_country" in rule:
            members = set(table()["lists"][rule["per_country"]])
            for country, n in sorted(snapshot.get("residence", {}).items()):
                if country in members and n > 0:
                    out.append(rule["id"].format(country=country))
        elif snapshot.get("people", 0) > 0:
            out.append(rule["id"])
    return out


def before_closing(incident_duties: list[str]) -> list[str]:
    """The regulator reports a case cannot close without (or an exemption for each)."""
    return [d for d in incident_duties
            if rule_of(d)["audience"] == "regulator" and rule_of(d)["from"] != "closed"]


def rule_of(duty: str) -> dict[str, Any]:
    """The table row a duty came from (``gdpr33:DE`` -> ``gdpr33:{country}``)."""
    base = duty.split(":", 1)[0]
    for rule in table()["clock"]:
        if rule["id"].split(":", 1)[0] == base:
            return dict(rule)
    raise KeyError(duty)


@dataclass(frozen=True)
class Clock:
    """One deadline of one case at one instant."""

    duty: str
    audience: str
    title: str
    citation: str
    effective: str
    starts: datetime | None
    due: datetime | None
    done_at: datetime | None
    state: str  # running, overdue, met, late, exempted, waiting, no fixed deadline
    remaining_s: float | None
    reading: str | None = None

    @property
    def finding(self) -> bool:
        """An overdue clock, or a duty done after its deadline, is a finding."""
        return self.state in ("overdue", "late")

    def as_dict(self) -> dict[str, Any]:
        return {
            "duty": self.duty, "audience": self.audience, "title": self.title,
            "citation": self.citation, "effective": self.effective,
            "starts": _iso(self.starts), "due": _iso(self.due), "done_at": _iso(self.done_at),
            "state": self.state, "remaining_s": self.remaining_s, "finding": self.finding,
            "reading": self.reading,
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _clock(duty: str, rule: dict[str, Any], start: datetime | None, hours: float | None,
           done: datetime | None, exempted: bool, now: datetime) -> Clock:
    country = duty.split(":", 1)[1] if ":" in duty else ""
    due = start + timedelta(hours=hours) if start is not None and hours is not None else None
    if exempted:
        state = "exempted"
    elif done is not None:
        state = "late" if due is not None and done > due else "met"
    elif start is None:
        state = "waiting"
    elif due is None:
        state = "no fixed deadline"
    else:
        state = "overdue" if now > due else "running"
    remaining = (due - now).total_seconds() if due is not None and state in (
        "running", "overdue") else None
    return Clock(duty, rule["audience"], rule["title"].format(country=country),
                 rule["citation"], rule["effective"], start, due, done, state, remaining,
                 rule.get("reading"))


def hours_for(rule: dict[str, Any], settings: Settings) -> float | None:
    if "hours_by_operator" in rule:
        return float(rule["hours_by_operator"][settings.operator_kind])
    return float(rule["hours"]) if "hours" in rule else None


def incident_clocks(incident: Incident, settings: Settings, now: datetime) -> list[Clock]:
    """Every clock of the incident's duties, as they stand at ``now``."""
    out = []
    for duty in incident.duties:
        rule = rule_of(duty)
        start = incident.discovered_at if rule["from"] == "discovered" else incident.closed_at
        done = incident.reports.get(duty, {}).get("at") if rule["audience"] == "regulator" \
            else incident.notices.get(duty, {}).get("at")
        out.append(_clock(duty, rule, start, hours_for(rule, settings), done,
                          duty in incident.exemptions, now))
    return out


def request_clock(request: RightsRequest, now: datetime) -> Clock:
    """The request's due date (set when received from LEDGER_REQUEST_DEADLINE_DAYS)."""
    rule = table()["requests"]
    hours = (request.due - request.received_at).total_seconds() / 3600
    row = {"audience": "person", "title": f"answer the {request.kind} request",
           "citation": rule["citation"], "effective": rule["effective"]}
    return _clock(request.request_id, row, request.received_at, hours, request.closed_at,
                  False, now)


def request_due(received: datetime, settings: Settings) -> datetime:
    return received + timedelta(days=settings.request_deadline_days)


def utcnow() -> datetime:
    return datetime.now(UTC)
