"""Compliance findings: every event that breaks a promise of the privacy policy.

``FindingsProjection`` reads the log in order, keeps what each rule needs to know about a
person (subscriptions, consents, closure, holdings, requests ...) in ``findings_*`` state
tables, and writes one row per finding into ``findings``. Rules that depend on the clock
(retention deadlines 6.3a and 2.1.1(1)d, request deadlines 7.1, incident duties 6.2.1a)
cannot be stored as rows when the event happens; ``list_findings`` evaluates them from the
state tables at the moment asked for.

A finding names the clause of ``COMMITMENTS.md``, the person's pseudonym, the offending
event's id and log position, its time, and a one-line explanation made only of taxonomy
keys, clause ids, store and recipient ids and counts: never a personal value.

The package, top down: ``view`` (the projection: per event type, its fold then its rules),
``queries`` (``list_findings``, ``summary``), ``rules/<family>.py`` (the rules, registered
with ``registry.rule`` / ``registry.timed``), ``folds`` (how events change the state),
``store`` (the SQL), ``state`` (typed records), ``vocabulary`` (taxonomy sets). ``CLAUSES``
is derived from the registry. "After" compares event times; a change in state takes
effect for events at or after its own time.
"""

from __future__ import annotations

from typing import Final

from consumers.findings.queries import (
    DEFAULT_DEADLINE_DAYS,
    ERASURE_GRACE_DAYS,
    list_findings,
    summary,
)
from consumers.findings.registry import RULES, Clocks, Finding, Rule, clauses, rule, timed
from consumers.findings.rules.incidents import INCIDENT_REPORT_HOURS
from consumers.findings.store import FINDINGS_TABLE, SCHEMA, TABLES
from consumers.findings.view import _HANDLERS, FindingsProjection

#: What each clause's findings mean, for people reading a summary (from the registry).
CLAUSES: Final[dict[str, str]] = clauses(RULES)

__all__ = [
    "CLAUSES",
    "DEFAULT_DEADLINE_DAYS",
    "ERASURE_GRACE_DAYS",
    "FINDINGS_TABLE",
    "INCIDENT_REPORT_HOURS",
    "RULES",
    "SCHEMA",
    "TABLES",
    "Clocks",
    "Finding",
    "FindingsProjection",
    "Rule",
    "_HANDLERS",
    "clauses",
    "list_findings",
    "rule",
    "summary",
    "timed",
]
