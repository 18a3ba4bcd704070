"""The query service the CLI and the HTTP API share: views, catch-up, as-of, audit.

Every query is recorded in the log (``ledger.queried``, policy 6.2.1b) before it is
answered, with arguments that never hold a clear personal value: a person appears by
pseudonym. A query with ``as_of`` (recorded time) and/or ``valid_at`` (event time), a
``QueryTime``, is answered from views replayed in memory from the log (``consumers.replay``),
with warnings when the time precedes the log's first record or the first event; otherwise
from the on-disk views (caught up first by the caller).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from consumers import queries
from consumers.clock import LATE_AFTER, clock_summary
from consumers.consume import DeadLetters
from consumers.parallel import parallel_rebuild
from consumers.projection import ProjectionRunner, RunStats
from consumers.registry import all_projections, open_views, select
from consumers.replay import QueryTime, records_until, time_warnings, views_as_of
from consumers.views import ViewStore
from ledger.application import Ledger
from ledger.errors import NotFound
from ledger.persistence import AppendResult, Position
from ledger.settings import Settings
from schemas.events import LedgerQueried

LEDGER_QUERIED = LedgerQueried.TYPE

Progress = Callable[[int], None]
#: Records per view transaction: large enough that repeats within a batch fold together.
BATCH_SIZE = 5000


def query_time(when: QueryTime | datetime | None) -> QueryTime:
    """A ``QueryTime`` from either kind of argument (a bare datetime is ``as_of``)."""
    if isinstance(when, QueryTime):
        return when
    return QueryTime(as_of=when)


@dataclass
class Answering:
    """The views a query reads and what its reader must be told about them."""

    views: ViewStore
    when: QueryTime
    warnings: list[str] = field(default_factory=list)


class QueryService:
    """A ledger with its view store: catch-up, rebuild, status and the audited queries.

    One instance may serve several threads: ``lock`` serialises use of the view store's
    connection; ``audit`` needs no lock (the ledger merges concurrent appends, see
    ``ledger.application.GroupCommit``).

    ``catch_up_through`` skips a catch-up that could change nothing: it remembers how far
    each projection was caught up and which records since are this service's own audit
    records (``ledger.queried``), which most projections do not read. A service answering
    one question after another thus reads the log once per question that follows a
    publish, not once per question (each question appends an audit record).
    """

    #: Own audit positions remembered at most (beyond: forgotten, the next question
    #: catches up as it would have without them).
    OWN_AUDITS_KEPT = 10_000

    def __init__(self, ledger: Ledger, views: ViewStore | None = None):
        self.ledger = ledger
        self.views = views if views is not None else open_views(ledger.settings)
        self.lock = threading.RLock()
        # The same projection objects for every catch-up, so their caches carry over.
        self.projections = all_projections(ledger.settings.view_cache_entries)
        self._runners: dict[tuple[str, ...] | None, ProjectionRunner] = {}
        #: projection -> the log position through which it is known to be current
        self._current: dict[str, Position] = {}
        #: partition -> offsets of audit records this service appended (``_audited``)
        self._own_audits: dict[int, set[int]] = {}
        self._own_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> QueryService:
        return cls(Ledger(settings))

    def close(self) -> None:
        self.views.close()
        self.ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- projections --------------------------------------------------------------------

    def runner(self, names: list[str] | None = None) -> ProjectionRunner:
        return ProjectionRunner(self.ledger.log, self.views, select(names, self.projections),
                                batch_size=BATCH_SIZE)

    def _runner(self, names: list[str] | None) -> ProjectionRunner:
        """The runner of these projections, made once (making one opens a view transaction
        to create the projections' tables)."""
        key = tuple(sorted(names)) if names is not None else None
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = self.runner(names)
        return runner

    def lag(self) -> int:
        """Records the slowest projection still has to read."""
        return max((s["lag"] for s in self.status()), default=0)

    def catch_up(self, progress: Progress | None = None,
                 names: list[str] | None = None) -> RunStats:
        """Bring every projection (or those ``names``) up to the end of the log."""
        with self.lock:
            runner = self._runner(names)
            stats = runner.run(progress=progress)
            for name, position in runner.positions().items():
                self._current[name] = position
            if stats.bad:
                self.send_dead_letters()
            return stats

    def end_position(self) -> Position:
        """The end of the log now: a question asked after this must see every record up
        to it (``catch_up_through``)."""
        return self.ledger.log.end_position()

    def catch_up_through(self, end: Position, names: list[str]) -> RunStats | None:
        """Make the named projections current through ``end`` (a log position taken when
        the question was asked): a catch-up, unless every record after the position each
        was last caught up to is an audit record of this service, of a type it does not
        read (then None: nothing read, the view already answers as of ``end``)."""
        with self.lock:
            if self._current_through(end, names):
                return None
            return self.catch_up(names=names)

    def _current_through(self, end: Position, names: list[str]) -> bool:
        types = self._runner(names).types
        if types is None or LEDGER_QUERIED in types:
            return False  # it reads audit records (or the log's types are not trusted)
        with self._own_lock:
            for name in names:
                current = self._current.get(name)
                if current is None:
                    return False
                for partition, last in end.items():
                    own = self._own_audits.get(partition, set())
                    if any(o not in own for o in range(current.get(partition, -1) + 1,
                                                       last + 1)):
                        return False
            for name in names:
                self._current[name] = {**self._current[name], **end}
            self._forget_own_audits(names)
        return True

    def _audited(self, result: AppendResult) -> None:
        """Remember the position of an audit record this service appended."""
        with self._own_lock:
            own = self._own_audits.setdefault(result.partition, set())
            if len(own) >= self.OWN_AUDITS_KEPT:
                own.clear()
            own.add(result.offset)

    def _forget_own_audits(self, names: list[str]) -> None:
        """Drop the audit positions these projections are current through. Another
        projection still behind them then catches up when asked (forgetting costs a
        catch-up, never a stale answer), and the positions kept stay few."""
        for partition, own in self._own_audits.items():
            done = min(self._current[name].get(partition, -1) for name in names)
            stale = [o for o in own if o <= done]
            own.difference_update(stale)

    def send_dead_letters(self) -> int:
        """On Kafka, write the records quarantined since the last call to the dead-letter
        topic (a no-op on SQLite, whose quarantine is the view store's table alone)."""
        with self.lock:
            sender = DeadLetters(self.ledger.log)
            try:
                return sender.flush(self.views)
            finally:
                sender.close()

    def quarantine_counts(self) -> dict[str, int]:
        """Records set aside by the projections, per log."""
        with self.lock:
            return self.views.quarantine_counts()

    def default_workers(self, names: list[str] | None = None) -> int:
        """Processes ``rebuild`` uses unless told: 2 where the machine has two or more
        cores and the rebuild can be split (``consumers.parallel``), else 1.

        The SQLite log splits by projection (more than one to rebuild): measured with
        bench/replay.py, 1M events, 2 vCPUs, two processes rebuild all views at
        0.24-0.32xR against 0.16-0.17xR for one, for twice the memory. A Kafka log splits
        by partition (two or more), each process reading its own share of the topic:
        see bench/kafka.py and the README for the figures.
        """
        if (os.cpu_count() or 1) < 2:
            return 1
        log = self.ledger.log
        if log.self_contained_partitions:
            return 2 if len(log.partitions()) >= 2 else 1
        return 2 if names is None or len(names) > 1 else 1

    def rebuild(self, names: list[str] | None = None,
                progress: Progress | None = None, workers: int | None = None) -> RunStats:
        """Rebuild the named projections' views (all if None) from the log, aside, and swap
        them in on success (in ``workers`` processes, see ``consumers.parallel``; default
        ``default_workers``): a failed rebuild leaves the views as they were."""
        if workers is None:
            workers = self.default_workers(names)
        with self.lock:
            # the views are swapped: what was known of them is gone
            self._current.clear()
            self._runners.clear()
            stats = parallel_rebuild(self.runner(names), workers=workers, progress=progress,
                                     batch_size=self.ledger.settings.rebuild_batch)
            if stats.bad:
                self.send_dead_letters()
            return stats

    def status(self) -> list[dict[str, Any]]:
        """Per projection: position, end of log, lag, and ``audit_lag``: how much of the
        lag is the ledger's own audit records (``ledger.queried``, which every query
        appends and no view reads), counted when the lag is small enough to read."""
        with self.lock:
            rows = self.runner().status()
            counted: dict[tuple[tuple[int, int], ...], int | None] = {}
            for row in rows:
                # projections at one position (the usual case) share one read of the lag
                at = tuple(sorted(row["position"].items()))
                if at not in counted:
                    counted[at] = self._audit_records_after(row["position"], row["lag"])
                row["audit_lag"] = counted[at]
            return rows

    #: Largest lag whose records ``status`` reads to tell audit records apart.
    AUDIT_LAG_SCAN = 100_000

    def _audit_records_after(self, position: dict[int, int], lag: int) -> int | None:
        if lag == 0:
            return 0
        if lag > self.AUDIT_LAG_SCAN:
            return None
        return sum(1 for r in self.ledger.log.read(position or None)
                   if r.event_type == LEDGER_QUERIED)

    def clock(self) -> dict[str, Any] | None:
        """The log's event-time and recorded-time bounds and its late events (as far as
        the views have read)."""
        with self.lock:
            return clock_summary(self.views)

    def records_until(self, as_of: datetime | None) -> int:
        return records_until(self.ledger.log, as_of)

    @contextmanager
    def answering(self, when: QueryTime | datetime | None, progress: Progress | None = None,
                  needs: list[str] | None = None) -> Iterator[Answering]:
        """Today's views, or views replayed in memory from the log: the records it had by
        ``when.as_of``, the events that happened by ``when.valid_at`` (only the projections
        the question ``needs``, if given); with the warnings the answer needs."""
        when = query_time(when)
        if when.now:
            yield Answering(self.views, when)
            return
        store, stats = views_as_of(self.ledger.log, when.as_of, valid_at=when.valid_at,
                                   progress=progress, projections=select(needs))
        try:
            yield Answering(store, when, time_warnings(self.ledger.log, when, stats))
        finally:
            store.close()

    @contextmanager
    def views_at(self, when: QueryTime | datetime | None, progress: Progress | None = None,
                 needs: list[str] | None = None) -> Iterator[ViewStore]:
        """The views of ``answering``, without its warnings."""
        with self.answering(when, progress, needs) as answer:
            yield answer.views

    # --- audit --------------------------------------------------------------------------

    def audit(self, query: str, arguments: Mapping[str, str | None],
              actor: str | None = None, *, role: str | None = None,
              people: Sequence[str] = (), reason: str | None = None,
              clear: bool = False) -> None:
        """Record the query in the log: who (``actor``, default the configured one; over
        HTTP the authenticated principal and its ``role``), about whom (``people``, by
        pseudonym), why (``reason``) and whether clear values were read. Returns once the
        record is durable; safe from many threads at once (their appends are merged)."""
        args = {k: v for k, v in arguments.items() if v is not None and v != ""}
        result = self.ledger.audit(query, args, actor=actor, role=role, people=people,
                                   reason=reason, clear=clear)
        if not result.duplicate:
            self._audited(result)

    # --- queries ------------------------------------------------------------------------

    def pseudonym(self, subject_id: str) -> str:
        return self.ledger.pseudonymise(subject_id)

    def subject(self, views: ViewStore, subject_id: str,
                as_of: QueryTime | datetime | None = None) -> dict[str, Any]:
        """The data map of the person with this real identifier."""
        return queries.subject_map(views, self.pseudonym(subject_id),
                                   now=query_time(as_of).reference)

    def export(self, views: ViewStore, subject_id: str,
               as_of: QueryTime | datetime | None = None) -> dict[str, Any]:
        """Everything the ledger knows about one person, unsealed (an access request, 7.1):
        the data map and the timeline of events, by event time, late ones marked."""
        when = query_time(as_of)
        with self.lock:
            answer = self.ledger.export(subject_id)
        events = [e for e in answer["events"]
                  if when.admits(datetime.fromisoformat(e["time"]),
                                 datetime.fromisoformat(e["recorded_at"]))]
        events = timeline(events)
        try:
            data_map: dict[str, Any] | None = self.subject(views, subject_id, when)
        except NotFound:
            data_map = None
        if data_map is None and not events:
            raise NotFound("the ledger holds no event about this person "
                           "(check the identifier)")
        return {"subject": answer["subject"], "pseudonym": answer["pseudonym"],
                "key": answer["key"], **when.arguments(),
                "late_events": sum(1 for e in events if e.get("late")),
                "data_map": data_map, "events": events}

    @staticmethod
    def findings(views: ViewStore, clause: str | None = None,
                 as_of: QueryTime | datetime | None = None,
                 deadline_days: int | None = None, *,
                 settings: Settings | None = None,
                 status: str | None = None) -> list[dict[str, Any]]:
        """Broken promises found by the findings rules, as dicts.

        The timed rules judge by the thresholds of ``settings`` (``LEDGER_*``; see
        ``consumers.findings.thresholds``); ``deadline_days`` overrides the default due
        date of rights requests (LEDGER_REQUEST_DEADLINE_DAYS). ``status`` keeps the
        ``open`` or the ``remedied`` ones (7.4).
        """
        from consumers.findings import CLAUSES, list_findings
        from consumers.findings.thresholds import clock_values

        if clause and not any(c.startswith(clause) for c in CLAUSES):
            raise queries.unknown_name("clause", clause, CLAUSES, "among the findings' clauses")
        now = query_time(as_of).reference
        clocks = clock_values(settings or Settings())
        if deadline_days is not None:
            clocks["deadline_days"] = deadline_days
        return [f.as_dict() for f in list_findings(views, clause=clause, now=now, **clocks)
                if status is None or f.status == status]

    def explain_findings(self) -> dict[str, Any]:
        """What ``pdl findings`` checks: each clause and its rules, and the thresholds the
        timed rules judge by, with their values, variables and sources."""
        from consumers.findings import CLAUSES, RULES
        from consumers.findings.thresholds import THRESHOLDS

        settings = self.ledger.settings
        return {
            "clauses": [{"clause": c, "checks": meaning,
                         "rules": [f"{r.family}.{r.name}" + (" (timed)" if r.evaluate else "")
                                   for r in RULES if r.clause == c]}
                        for c, meaning in CLAUSES.items()],
            "thresholds": [t.as_dict(settings) for t in THRESHOLDS],
        }


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A person's events by event time (log order breaks ties), each recorded more than
    ``LATE_AFTER`` after it happened marked ``late`` with the delay in hours."""
    out = []
    for e in events:
        delay = datetime.fromisoformat(e["recorded_at"]) - datetime.fromisoformat(e["time"])
        if delay > LATE_AFTER:
            e = {**e, "late": True, "recorded_after_hours": round(delay.total_seconds() / 3600)}
        out.append(e)
    return sorted(out, key=lambda e: datetime.fromisoformat(e["time"]))


def findings_summary(findings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per clause: how many findings, how many still open (7.4), and how many people."""
    per_clause: Counter[str] = Counter()
    still_open: Counter[str] = Counter()
    people: dict[str, set[str]] = {}
    for f in findings:
        per_clause[f["clause"]] += 1
        still_open[f["clause"]] += f.get("status", "open") == "open"
        if f.get("pseudonym"):
            people.setdefault(f["clause"], set()).add(f["pseudonym"])
    return [{"clause": c, "findings": n, "open": still_open[c],
             "people": len(people.get(c, ()))} for c, n in sorted(per_clause.items())]
