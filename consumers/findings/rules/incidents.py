"""Breaches (section 6.2.1a): the contingency plan started, the spread stopped, the
incident reported, every affected person notified and given security advice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final

from consumers.findings import store as sql
from consumers.findings.registry import Clocks, Finding, timed
from consumers.findings.vocabulary import names, overlaps
from consumers.rows import from_us, to_us
from consumers.views import ViewStore
from schemas import events as ev

#: Hours within which a breach must be reported and people notified (6.2.1a): the default
#: of ``Clocks.incident_report_hours`` (LEDGER_INCIDENT_REPORT_HOURS).
INCIDENT_REPORT_HOURS: Final = 72


def _due(opened: int, closed: int | None, hours: int, now: int) -> datetime | None:
    """When a duty ``hours`` after opening falls due: then, or at closing if that is
    earlier; None while it is not due yet at ``now``."""
    due = from_us(opened) + timedelta(hours=hours)
    if closed is not None and closed <= now:
        return min(due, from_us(closed))
    return due if to_us(due) < now else None


def _missed(steps: dict[str, int], step: str, due: datetime, now: int) -> str | None:
    """Why ``step`` was not done by ``due``: never (as of ``now``), or late; None if on time."""
    done = steps.get(step)
    if done is None or done > now:
        return "no record that"
    return "recorded late that" if done > to_us(due) else None


#: The response steps of 6.2.1 other than report and notice: step -> (clock, what).
RESPONSE_STEPS: Final = (
    ("contingency", "incident_contingency_hours", "the contingency plan was started"),
    ("contained", "incident_containment_hours", "its spread was stopped"),
)


@timed("6.2.1a", "contingency plan not started or spread not stopped", clock=("incident_contingency_hours",
                                              "incident_containment_hours"),
       reads=(ev.IncidentOpened, ev.IncidentClosed, ev.IncidentContingencyStarted,
              ev.IncidentContained))
def response_steps(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Each incident's contingency plan is started within ``incident_contingency_hours``
    and its spread stopped within ``incident_containment_hours`` of opening (or by its
    closing, if sooner); the security advice is checked with the notices
    (``incident_duties``)."""
    now = clocks.now
    for (incident_id, event_id, partition, offset, opened, _, _, _, _, _,
         closed) in sql.incidents(store):
        steps = sql.incident_steps(store, incident_id)
        for step, clock, what in RESPONSE_STEPS:
            hours = getattr(clocks, clock)
            due = _due(opened, closed, hours, now)
            if due is None:
                continue
            missed = _missed(steps, step, due, now)
            if missed is not None:
                yield Finding("6.2.1a", None, event_id, int(partition), int(offset), due,
                              f"incident {incident_id}: {missed} {what} (due {hours} h after "
                              "opening, or at closing)")


@timed("6.2.1a", "breach not reported, or affected person not notified or given advice",
       clock="incident_report_hours",
       reads=(ev.IncidentOpened, ev.IncidentReported, ev.IncidentClosed,
              ev.IncidentSubjectNotified, ev.IncidentAdviceGiven, ev.DataCollected,
              ev.DataErased))
def incident_duties(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Once an incident is closed or 72 h old (``incident_report_hours``) it must be
    reported, and everybody with data in its stores during its window notified — but those
    who cannot be reached (no contact data held, or key destroyed), whom the public
    announcement stands in for."""
    hours, now = clocks.incident_report_hours, clocks.now
    for (incident_id, event_id, partition, offset, opened, stores_json, cats_json, start, end,
         reported, closed) in sql.incidents(store):
        due = _due(opened, closed, hours, now)
        if due is None:
            continue
        if reported is None or reported > now:
            yield Finding("6.2.1a", None, event_id, int(partition), int(offset), due,
                          "incident not reported to the regulator")
        stores: list[str] = json.loads(stores_json)
        cats: list[str] = json.loads(cats_json)
        told = sql.notified(store, incident_id)
        affected: set[str] = set()
        for pseudonym, cells in sql.holdings_during(store, start, end):
            if pseudonym not in affected and any(
                    kept_in in stores and (erased is None or erased >= start)
                    and (not cats or any(overlaps(c, category) for c in cats))
                    for category, kept_in, erased in cells):
                affected.add(pseudonym)
        missed = _missed(sql.incident_steps(store, incident_id), "advice", due, now)
        if affected and missed is not None:
            yield Finding("6.2.1a", None, event_id, int(partition), int(offset), due,
                          f"incident {incident_id}: {missed} security advice was given to the "
                          f"people affected (due {hours} h after opening, or at closing)")
        # People who cannot be told are routed to the public announcement (公告), never
        # contacted: not notifying them is no finding (docs/cases.md, the notify list).
        untold = affected - told
        unreachable = (untold - sql.contact_held(store, untold, now)) | \
            sql.shredded_or_no_contact(store, untold)
        for pseudonym in sorted(untold - unreachable):
            yield Finding("6.2.1a", pseudonym, event_id, int(partition), int(offset), due,
                          f"person with data in {names(stores)} during an incident was not "
                          "notified")
