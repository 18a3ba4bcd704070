"""The overview's findings by clause, cached per view position and minute.

Counting the findings means evaluating the timed rules (retention, closure, request and
incident clocks) over the views at a moment, which takes seconds on a large log. The
overview judges them at the current minute (``now`` floored to the minute, shown on the
page) and keeps the answer with the findings view's log position and the number of stored
findings rows. A cached answer is reused while all of these hold, so it always equals a
fresh ``findings_summary(service.findings(views, as_of=minute))``:

- the minute is the same, and so are the clock thresholds (``LEDGER_*`` settings);
- every record past the cached position is an audit record (``ledger.queried``): the
  findings projection keeps no state from those, so the timed rules' answer is unchanged;
  the only findings they can make are stored rows (6.2.1b: read without a reason, or by
  someone not on the staff list), which are read by their log position and added, and
- the ``findings`` table then has exactly the rows counted plus those added.

Anything else (a new minute, any other event, a rebuild moving the position back, a new
stored finding) evaluates the findings afresh. Every page asks under the service's lock,
so position and answer cannot drift apart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.findings import FINDINGS_TABLE
from consumers.findings.thresholds import clock_values
from consumers.views import ViewStore
from ledger.persistence import Position
from ledger.settings import Settings
from pdl.service import LEDGER_QUERIED, QueryService

#: The findings projection's name (its tracked position).
FINDINGS = "findings"
#: Beyond this many new records, evaluating afresh is cheaper than reading them.
MAX_SCAN = 20_000


def minute_of(now: datetime) -> datetime:
    """``now`` floored to its minute: the moment the overview judges the clocks at."""
    return now.replace(second=0, microsecond=0)


@dataclass
class _Entry:
    log_id: str
    minute: datetime
    clocks: tuple[tuple[str, int], ...]
    position: Position
    stored: int
    #: clause -> [findings, set of pseudonyms]
    clauses: dict[str, tuple[int, set[str]]]

    def rows(self) -> list[dict[str, Any]]:
        return [{"clause": c, "findings": n, "people": len(people)}
                for c, (n, people) in sorted(self.clauses.items())]

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        for clause, pseudonym in rows:
            n, people = self.clauses.get(clause, (0, set()))
            if pseudonym:
                people = people | {pseudonym}
            self.clauses[clause] = (n + 1, people)


class FindingsSummaryCache:
    """Findings by clause (findings, people) at a minute, reused while the views have only
    read audit records since (see the module's docstring for the exact conditions)."""

    def __init__(self) -> None:
        self._entry: _Entry | None = None
        self._lock = threading.Lock()
        #: How many answers were computed and how many reused (for tests and the bench).
        self.computed = 0
        self.reused = 0

    def summary(self, service: QueryService, views: ViewStore, now: datetime
                ) -> list[dict[str, Any]]:
        """Per clause: findings and people, the timed rules judged at ``minute_of(now)``.
        ``views`` must be the service's current views, caught up for ``findings``."""
        minute = minute_of(now)
        log = service.ledger.log
        clocks = tuple(sorted(clock_values(Settings()).items()))
        position = views.position(FINDINGS, log.log_id)
        stored = int(views.query(f"SELECT COUNT(*) FROM {FINDINGS_TABLE}")[0][0])
        with self._lock:
            entry = self._entry
            if (entry is not None and entry.log_id == log.log_id and entry.minute == minute
                    and entry.clocks == clocks
                    and only_audit_records(service, entry.position, position)):
                added = stored_between(views, entry.position, position)
                if entry.stored + len(added) == stored:
                    entry = _Entry(log.log_id, minute, clocks, position, stored,
                                   dict(entry.clauses))
                    entry.add(added)
                    self._entry = entry
                    self.reused += 1
                    return entry.rows()
        entry = _Entry(log.log_id, minute, clocks, position, stored, {})
        entry.add([(f["clause"], f["pseudonym"])
                   for f in service.findings(views, as_of=minute)])
        with self._lock:
            self._entry = entry
            self.computed += 1
        return entry.rows()


def stored_between(views: ViewStore, before: Position, after: Position
                   ) -> list[tuple[Any, ...]]:
    """(clause, pseudonym) of the stored findings of the records past ``before`` up to
    ``after``."""
    out: list[tuple[Any, ...]] = []
    for partition, offset in after.items():
        start = before.get(partition, -1)
        if offset > start:
            out += views.query(f'SELECT clause, pseudonym FROM {FINDINGS_TABLE} '
                               'WHERE partition = ? AND "offset" > ? AND "offset" <= ?',
                               (partition, start, offset))
    return out


def only_audit_records(service: QueryService, before: Position, after: Position) -> bool:
    """Whether every record past ``before`` up to ``after`` is an audit record (False if
    the position went back, or too many records came in to read them)."""
    if any(after.get(p, -1) < o for p, o in before.items()):
        return False
    gaps = {p: o - before.get(p, -1) for p, o in after.items() if o > before.get(p, -1)}
    if sum(gaps.values()) > MAX_SCAN:
        return False
    log = service.ledger.log
    for partition, gap in gaps.items():
        for record in log.read({partition: before.get(partition, -1)}, limit=gap,
                               partitions=[partition]):
            if record.offset > after[partition]:
                break
            if record.event_type != LEDGER_QUERIED:
                return False
    return True
