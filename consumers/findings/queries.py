"""Reading the findings: the stored ones plus the timed rules, evaluated at a moment."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Final

from consumers.findings.registry import RULES, Clocks, Finding
from consumers.findings.store import stored_findings
from consumers.rows import from_us, to_us
from consumers.views import ViewStore
from ledger.settings import Settings

#: Days a rights request may stay open when it names no due date (7.1).
DEFAULT_DEADLINE_DAYS: Final = Settings.request_deadline_days
#: Days after a retention deadline (or the end of a legal hold) by which an erasure is on
#: time: erasure jobs run nightly, so data is gone the night after its deadline.
ERASURE_GRACE_DAYS: Final = Settings.erasure_grace_days


def _matches(clause: str, prefix: str | None) -> bool:
    return prefix is None or clause.startswith(prefix)


def list_findings(store: ViewStore, clause: str | None = None, now: datetime | None = None, *,
                  deadline_days: int = DEFAULT_DEADLINE_DAYS,
                  closure_days: int = DEFAULT_DEADLINE_DAYS,
                  erasure_grace_days: int = ERASURE_GRACE_DAYS,
                  incident_report_hours: int = Settings.incident_report_hours,
                  incident_contingency_hours: int = Settings.incident_contingency_hours,
                  incident_containment_hours: int = Settings.incident_containment_hours,
                  ) -> list[Finding]:
    """Every finding as of ``now`` (default: the current time; naive means UTC), by time.

    The stored findings, plus those of the timed rules, evaluated at ``now``: data kept
    more than ``erasure_grace_days`` past its retention deadline (6.3a); after account
    closure, data beyond the legal hold kept more than ``closure_days`` after closure, or
    held data kept more than ``erasure_grace_days`` after the hold ends (2.1.1(1)d);
    rights requests not answered by their due date, ``deadline_days`` after receipt unless
    the request names one (7.1); incidents closed or older than 72 h that were not reported,
    or whose affected people were not notified or given security advice, and incidents
    whose contingency plan was not started (24 h) or spread not stopped (72 h) (6.2.1a).
    ``clause`` keeps the findings whose clause starts with it ("3", "2.1.1(2)b").
    A finding on a collection or a linking is ``remedied`` by the first later event, by
    ``now``, that erased its data from every store that kept it or corrected it (7.4).
    Needs the tables of ``FindingsProjection``: run it (``ProjectionRunner``) first.
    """
    when = now if now is not None else datetime.now(UTC)
    clocks = Clocks(to_us(when if when.tzinfo is not None else when.replace(tzinfo=UTC)),
                    deadline_days, closure_days, erasure_grace_days, incident_report_hours,
                    incident_contingency_hours, incident_containment_hours)
    now_us = clocks.now
    found = [Finding(c, p, e, int(part), int(off), from_us(t), x,
                     *((by, from_us(fixed)) if by is not None and fixed <= now_us else ()))
             for c, p, e, part, off, t, x, by, fixed in stored_findings(store, clause)]
    timed: list[Iterator[Finding]] = [
        r.evaluate(store, clocks) for r in RULES
        if r.evaluate is not None and _matches(r.clause, clause)]
    for findings in timed:
        found.extend(findings)
    found.sort(key=lambda f: (f.time, f.partition, f.offset, f.clause, f.pseudonym or ""))
    return found


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """How many findings there are per clause, in clause order."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.clause] = counts.get(f.clause, 0) + 1
    return dict(sorted(counts.items()))
