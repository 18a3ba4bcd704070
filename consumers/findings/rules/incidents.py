"""Breaches: reported, and every affected person notified (section 6.2.1a)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
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


@timed("6.2.1a", "breach not reported, or affected person not notified",
       clock="incident_report_hours",
       reads=(ev.IncidentOpened, ev.IncidentReported, ev.IncidentClosed,
              ev.IncidentSubjectNotified, ev.DataCollected, ev.DataErased))
def incident_duties(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Once an incident is closed or 72 h old (``incident_report_hours``) it must be
    reported, and everybody with data in its stores during its window notified — but those
    who cannot be reached (no contact data held, or key destroyed), whom the public
    announcement stands in for."""
    window, now = timedelta(hours=clocks.incident_report_hours), clocks.now
    for (incident_id, event_id, partition, offset, opened, stores_json, cats_json, start, end,
         reported, closed) in sql.incidents(store):
        due = from_us(opened) + window
        if closed is not None and closed <= now:
            due = min(due, from_us(closed))
        elif to_us(due) >= now:
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
        # People who cannot be told are routed to the public announcement (公告), never
        # contacted: not notifying them is no finding (docs/cases.md, the notify list).
        untold = affected - told
        unreachable = (untold - sql.contact_held(store, untold, now)) | \
            sql.shredded_or_no_contact(store, untold)
        for pseudonym in sorted(untold - unreachable):
            yield Finding("6.2.1a", pseudonym, event_id, int(partition), int(offset), due,
                          f"person with data in {names(stores)} during an incident was not "
                          "notified")
