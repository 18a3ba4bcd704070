"""The case files application and its follower, which copies every case event to the ledger.

Shape (docs/architecture.md, "Case files"): the aggregates live in the eventsourcing
library's own persistence (its ``SQLiteApplicationRecorder``, in ``cases.db`` of the data
dir), and ``LedgerFollower`` copies each stored event, in notification order, to the
ledger log as the catalogue event ``LEDGER_TYPES`` names. Exactly once:

- each copy's event id is derived from (aggregate id, version), so a copy repeated after a
  crash would be the same event; an event adopted from the log (an incident a producer
  recorded) keeps its ledger id and is not copied at all;
- the follower's position is a ``Tracking`` row in the same file (the library's
  ``SQLiteTrackingRecorder``), written after the ledger append. Before the append it
  writes an *intent* row (the batch's last notification id, as application
  ``cases.intent``). A crash between the two writes leaves intent ahead of position: the
  next pull reads the log for that batch's event ids and appends only the missing ones, so
  no copy is repeated on either backend (a full read of the log, paid only after a crash).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import Environment

from cases.domain import LEDGER_TYPES, NAMESPACE, Incident, RightsRequest
from ledger.application import Ledger
from ledger.errors import NotFound
from ledger.files import private_dir, private_file
from ledger.persistence import NewRecord
from ledger.settings import Settings
from schemas import encode_sealed, parse_wire

SOURCE = "pdl/cases"
#: Domain-event attributes that are not catalogue data.
_NOT_DATA = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic",
                       "at", "ledger_event_id", "subject"})


class CaseFiles(Application[UUID]):
    """Incidents and rights requests, stored by the eventsourcing library."""

    name = "cases"

    def __init__(self, settings: Settings) -> None:
        private_dir(settings.data_dir)
        path = private_file(settings.cases_file)  # 0600 before SQLite opens it (and its WAL)
        self.settings = settings
        super().__init__({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                          "SQLITE_DBNAME": str(path), "SQLITE_LOCK_TIMEOUT": "10"})

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only what the ledger passes: settings come from LEDGER_* variables alone, so a
        # stray PERSISTENCE_MODULE or CIPHER_TOPIC in the environment changes nothing.
        return Environment(name, dict(env or {}))

    # --- incidents -----------------------------------------------------------------------

    def incident(self, incident_id: str) -> Incident:
        try:
            aggregate: Any = self.repository.get(Incident.create_id(incident_id))
        except Exception as exc:  # AggregateNotFoundError, by its library name
            if type(exc).__name__ == "AggregateNotFoundError":
                raise NotFound(f"no case file for incident {incident_id!r} "
                               "(pdl incident open, or pdl incident adopt)") from None
            raise
        assert isinstance(aggregate, Incident)
        return aggregate

    def has_incident(self, incident_id: str) -> bool:
        return bool(self.recorder.select_events(Incident.create_id(incident_id), limit=1))

    def request(self, request_id: str) -> RightsRequest:
        try:
            aggregate: Any = self.repository.get(RightsRequest.create_id(request_id))
        except Exception as exc:
            if type(exc).__name__ == "AggregateNotFoundError":
                raise NotFound(f"no rights request {request_id!r} (pdl request open)") from None
            raise
        assert isinstance(aggregate, RightsRequest)
        return aggregate

    def has_request(self, request_id: str) -> bool:
        return bool(self.recorder.select_events(RightsRequest.create_id(request_id), limit=1))

    def all_cases(self) -> Iterator[Incident | RightsRequest]:
        """Every case, in the order it was opened."""
        seen: set[UUID] = set()
        start: int | None = None
        while True:
            page = self.recorder.select_notifications(start, 500, inclusive_of_start=False) \
                if start is not None else self.recorder.select_notifications(None, 500)
            if not page:
                return
            for n in page:
                originator = UUID(str(n.originator_id))
                if originator not in seen:
                    seen.add(originator)
                    case: Any = self.repository.get(originator)
                    assert isinstance(case, (Incident, RightsRequest))
                    yield case
            start = page[-1].id

    def incidents(self) -> list[Incident]:
        return [c for c in self.all_cases() if isinstance(c, Incident)]

    def requests(self) -> list[RightsRequest]:
        return [c for c in self.all_cases() if isinstance(c, RightsRequest)]


class LedgerFollower:
    """Copies the case files' events to the ledger log, exactly once, in order."""

    BATCH = 100

    def __init__(self, cases: CaseFiles, ledger: Ledger,
                 tracking: TrackingRecorder | None = None) -> None:
        self.cases = cases
        self.ledger = ledger
        self.tracking = tracking if tracking is not None else cases.factory.tracking_recorder()
        self._ids: dict[UUID, tuple[str, str | None]] = {}

    @property
    def position(self) -> int:
        return self.tracking.max_tracking_id(self.cases.name) or 0

    def lag(self) -> int:
        return (self.cases.recorder.max_notification_id() or 0) - self.position

    @property
    def intent(self) -> int:
        return self.tracking.max_tracking_id(self.cases.name + ".intent") or 0

    def pull(self) -> int:
        """Copy every event not yet copied; returns how many were copied."""
        copied = 0
        recovering = self.intent > self.position
        while True:
            start = self.position
            page = self.cases.recorder.select_notifications(start, self.BATCH,
                                                            inclusive_of_start=False)
            if not page:
                return copied
            if recovering:
                page = [n for n in page if n.id <= self.intent]
            events = [self.cases.mapper.to_domain_event(n) for n in page]
            # An event adopted from the log (it carries its ledger id) is there already.
            records = [self._record(e) for e in events
                       if not getattr(e, "ledger_event_id", None)]
            if recovering:
                # The last run died between its append and its tracking row: what of
                # this batch reached the log is not appended again.
                there = self._in_log({r.event_id for r in records})
                records = [r for r in records if r.event_id not in there]
                recovering = False
            else:
                self.tracking.insert_tracking(Tracking(self.cases.name + ".intent", page[-1].id))
            if records:
                self.ledger.commits.append(records)
            self.tracking.insert_tracking(Tracking(self.cases.name, page[-1].id))
            copied += len(records)

    def _in_log(self, event_ids: set[str]) -> set[str]:
        return {r.event_id for r in self.ledger.log.read() if r.event_id in event_ids}

    def _owner(self, originator_id: UUID) -> tuple[str, str | None]:
        """(incident or request id, pseudonym) of the aggregate an event belongs to."""
        known = self._ids.get(originator_id)
        if known is None:
            case: Any = self.cases.repository.get(originator_id)
            if isinstance(case, Incident):
                known = (case.incident_id, None)
            else:
                assert isinstance(case, RightsRequest)
                known = (case.request_id, case.subject)
            self._ids[originator_id] = known
        return known

    def _record(self, domain_event: Any) -> NewRecord:
        event_type = LEDGER_TYPES[type(domain_event)]
        case_id, subject = self._owner(domain_event.originator_id)
        data = {k: v for k, v in vars(domain_event).items() if k not in _NOT_DATA}
        data["incident_id" if event_type.startswith("incident.") else "request_id"] = case_id
        event_id = getattr(domain_event, "ledger_event_id", None) or str(uuid5(
            NAMESPACE, f"{domain_event.originator_id}:{domain_event.originator_version}"))
        at: datetime = domain_event.at
        wire = {"id": event_id, "source": SOURCE, "type": event_type, "time": at.isoformat(),
                "data": _jsonable(data)}
        if subject is not None:
            wire["subject"] = subject
        event = parse_wire(wire)
        return NewRecord(event_id, event_type, subject, encode_sealed(event, subject, None))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_and_copy(cases: CaseFiles, ledger: Ledger, *aggregates: Any) -> int:
    """Save aggregates' new events, then copy them (and any left from before) to the ledger."""
    cases.save(*aggregates)
    return LedgerFollower(cases, ledger).pull()


def ids_in(records: Sequence[NewRecord]) -> list[str]:
    return [r.event_id for r in records]
