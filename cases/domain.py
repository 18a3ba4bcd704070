"""Case files as eventsourcing aggregates: an incident (6.2.1) and a rights request (7, 9.2).

Each transition is a public method that checks the step is allowed and that the catalogue
accepts the event's data, and only then calls an ``@event`` method: a refused step raises
``CaseRefused`` (or ``InvalidInput``) before any event exists. Every domain event maps to
one catalogue event (``LEDGER_TYPES``): its fields are the catalogue event's data, plus
``at`` (the event's time in the ledger) and, for requests, ``subject`` (the pseudonym).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import ValidationError

from ledger.errors import CaseRefused, InvalidInput
from schemas import EVENT_TYPES

NAMESPACE = uuid5(NAMESPACE_URL, "urn:pdl:cases")
#: The response steps of 6.2.1 beyond report and notice: step -> (catalogue event, the
#: field its detail fills).
RESPONSE: dict[str, tuple[str, str]] = {
    "contingency": ("incident.contingency_started", "plan"),
    "contained": ("incident.contained", "measures"),
    "advice": ("incident.advice_given", "channel"),
}
GRADES = ("general", "relatively_major", "major", "especially_major")  # 一般 < 较大 < 重大 < 特别重大
GRADE_NAMES_ZH = {"general": "一般", "relatively_major": "较大", "major": "重大",
                  "especially_major": "特别重大"}


def now() -> datetime:
    return datetime.now(UTC)


def _checked(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue's word on the data, before an event is created (fields named, no values)."""
    model = EVENT_TYPES[event_type]
    try:
        model.model_validate(dict(data))
    except ValidationError as exc:
        problems = [(1, ".".join(str(p) for p in e["loc"]) or "data", e["msg"])
                    for e in exc.errors(include_input=False)]
        raise InvalidInput(f"{event_type}: " + "; ".join(f"{f}: {r}" for _, f, r in problems),
                           problems) from None
    return dict(data)


def _time(at: datetime | None) -> datetime:
    if at is None:
        return now()
    if at.tzinfo is None:
        raise InvalidInput("at: a time needs a zone (add Z or +08:00)", [(1, "at", "no zone")])
    return at.astimezone(UTC)


class Incident(Aggregate):
    """A security incident's case: scope, grade, reports, exemptions, drafts, notices, closing."""

    @staticmethod
    def create_id(incident_id: str, **_: Any) -> UUID:
        return uuid5(NAMESPACE, f"incident:{incident_id}")

    @event("Opened")
    def __init__(self, incident_id: str, description: str, stores: list[str],
                 window_start: datetime, window_end: datetime, categories: list[str],
                 at: datetime, ledger_event_id: str | None = None) -> None:
        self.incident_id = incident_id
        self.description = description
        self.stores = list(stores)
        self.window_start = window_start
        self.window_end = window_end
        self.categories = list(categories)
        self.discovered_at = at
        self.snapshot: dict[str, Any] | None = None
        self.grade: str | None = None
        self.grade_basis: str | None = None
        self.duties: list[str] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.exemptions: dict[str, str] = {}
        self.drafts: dict[str, str] = {}
        self.notices: dict[str, dict[str, Any]] = {}
        self.announced: dict[str, Any] | None = None
        #: the response steps of 6.2.1 (``RESPONSE``): step -> its details and time
        self.response: dict[str, dict[str, Any]] = {}
        self.closed_at: datetime | None = None

    @classmethod
    def open(cls, incident_id: str, description: str, stores: Sequence[str],
             window_start: datetime, window_end: datetime, categories: Sequence[str] = (),
             at: datetime | None = None, ledger_event_id: str | None = None) -> Incident:
        data = _checked("incident.opened", {
            "incident_id": incident_id, "description": description, "stores": list(stores),
            "window_start": window_start, "window_end": window_end,
            "categories": list(categories)})
        return cls(incident_id=data["incident_id"], description=description,
                   stores=list(stores), window_start=window_start, window_end=window_end,
                   categories=list(categories), at=_time(at), ledger_event_id=ledger_event_id)

    # --- checks --------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def _refuse_if_closed(self, step: str) -> None:
        if self.closed_at is not None:
            raise CaseRefused(f"incident {self.incident_id}: cannot {step}: it was closed at "
                              f"{self.closed_at.isoformat()}")

    def unmet(self, required: Sequence[str]) -> list[str]:
        """The duties of ``required`` with neither a report nor an exemption."""
        return [d for d in required if d not in self.reports and d not in self.exemptions]

    # --- transitions ---------------------------------------------------------------------

    def scope(self, snapshot: Mapping[str, Any], at: datetime | None = None) -> None:
        """Record a scope snapshot (``cases.snapshot``): its hash and its counts."""
        self._refuse_if_closed("take a new scope")
        counts = snapshot["counts"]
        data = _checked("incident.scoped", {
            "incident_id": self.incident_id, "snapshot_hash": snapshot["hash"],
            "people": counts["people"], "records": counts["records"],
            "reachable": counts["reachable"], "unreachable": counts["unreachable"],
            "erased": counts["erased"],
            "people_with_sensitive_data": counts["people_with_sensitive_data"],
            "cross_border_people": counts["cross_border_people"],
            "residence": dict(counts["residence"])})
        self._scoped(at=_time(at), **{k: v for k, v in data.items() if k != "incident_id"})

    @event("Scoped")
    def _scoped(self, snapshot_hash: str, people: int, records: int, reachable: int,
                unreachable: int, erased: int, people_with_sensitive_data: int,
                cross_border_people: int, residence: dict[str, int], at: datetime) -> None:
        self.snapshot = {
            "hash": snapshot_hash, "people": people, "records": records,
            "reachable": reachable, "unreachable": unreachable, "erased": erased,
            "people_with_sensitive_data": people_with_sensitive_data,
            "cross_border_people": cross_border_people, "residence": dict(residence),
            "at": at,
        }
        self.grade = None  # a new scope needs a new grade
        self.grade_basis = None

    def grade_from(self, grade: str, basis: str, duties: Sequence[str],
                   justification: str | None = None, at: datetime | None = None) -> None:
        """Record the grade (``cases.clocks.assess`` computes it) and the duties that apply."""
        self._refuse_if_closed("grade it")
        if self.snapshot is None:
            raise CaseRefused(f"incident {self.incident_id}: take its scope before grading "
                              "(pdl incident scope)")
        data = _checked("incident.graded", {
            "incident_id": self.incident_id, "grade": grade, "basis": basis,
            "justification": justification, "snapshot_hash": self.snapshot["hash"],
            "duties": list(duties)})
        self._graded(grade=grade, basis=basis, justification=data["justification"],
                     snapshot_hash=data["snapshot_hash"], duties=list(duties), at=_time(at))

    @event("Graded")
    def _graded(self, grade: str, basis: str, justification: str | None, snapshot_hash: str,
                duties: list[str], at: datetime) -> None:
        self.grade = grade
        self.grade_basis = basis
        self.duties = list(duties)

    def report(self, duty: str, authority: str, at: datetime | None = None,
               ledger_event_id: str | None = None) -> None:
        """A report was filed with an authority, discharging ``duty``."""
        if duty.endswith("_summary"):
            if self.closed_at is None:
                raise CaseRefused(f"incident {self.incident_id}: the summary report ({duty}) "
                                  "is filed after closing")
        else:
            self._refuse_if_closed(f"file the {duty} report")
        if self.grade is None and ledger_event_id is None:
            raise CaseRefused(f"incident {self.incident_id}: grade it before reporting, so the "
                              "report names a duty that applies (pdl incident grade)")
        if self.duties and duty not in self.duties:
            raise CaseRefused(f"incident {self.incident_id}: {duty!r} is not a duty of this "
                              f"incident (its duties: {', '.join(self.duties)})")
        if duty in self.reports:
            raise CaseRefused(f"incident {self.incident_id}: the {duty} report was already filed")
        _checked("incident.reported", {"incident_id": self.incident_id, "authority": authority,
                                       "duty": duty})
        self._reported(duty=duty, authority=authority, at=_time(at),
                       ledger_event_id=ledger_event_id)

    @event("Reported")
    def _reported(self, duty: str, authority: str, at: datetime,
                  ledger_event_id: str | None = None) -> None:
        self.reports[duty] = {"authority": authority, "at": at}

    def exempt(self, duty: str, justification: str, at: datetime | None = None) -> None:
        """A duty does not apply, and why: stands in for its report when closing."""
        self._refuse_if_closed("record an exemption")
        if duty in self.reports:
            raise CaseRefused(f"incident {self.incident_id}: the {duty} report was filed; "
                              "an exemption cannot replace it")
        if duty in self.exemptions:
            raise CaseRefused(f"incident {self.incident_id}: {duty} is already exempted")
        data = _checked("incident.exemption_recorded", {
            "incident_id": self.incident_id, "duty": duty, "justification": justification})
        self._exemption_recorded(duty=duty, justification=data["justification"].strip(),
                                 at=_time(at))

    @event("ExemptionRecorded")
    def _exemption_recorded(self, duty: str, justification: str, at: datetime) -> None:
        self.exemptions[duty] = justification

    def drafted(self, draft: str, digest: str, at: datetime | None = None) -> None:
        """A draft notice or report was rendered from the current snapshot."""
        if self.snapshot is None:
            raise CaseRefused(f"incident {self.incident_id}: take its scope before drafting")
        _checked("incident.notice_drafted", {"incident_id": self.incident_id, "draft": draft,
                                             "snapshot_hash": self.snapshot["hash"],
                                             "digest": digest})
        self._notice_drafted(draft=draft, snapshot_hash=self.snapshot["hash"], digest=digest,
                             at=_time(at))

    @event("NoticeDrafted")
    def _notice_drafted(self, draft: str, snapshot_hash: str, digest: str, at: datetime) -> None:
        self.drafts[draft] = digest

    def notices_sent(self, duty: str, channel: str, people: int,
                     at: datetime | None = None) -> None:
        """The notice to the reachable people was sent (each also an incident.subject_notified)."""
        self._refuse_if_closed("record notices")
        if self.snapshot is None:
            raise CaseRefused(f"incident {self.incident_id}: take its scope before notifying")
        if people > self.snapshot["reachable"]:
            raise CaseRefused(f"incident {self.incident_id}: {people} notified, but only "
                              f"{self.snapshot['reachable']} people can be reached")
        _checked("incident.notices_sent", {"incident_id": self.incident_id, "duty": duty,
                                           "channel": channel, "people": people})
        self._notices_sent(duty=duty, channel=channel, people=people, at=_time(at))

    @event("NoticesSent")
    def _notices_sent(self, duty: str, channel: str, people: int, at: datetime) -> None:
        self.notices[duty] = {"channel": channel, "people": people, "at": at}

    def announce(self, channel: str, at: datetime | None = None) -> None:
        """The public announcement (公告) for the unreachable and erased people."""
        self._refuse_if_closed("announce it")
        if self.snapshot is None:
            raise CaseRefused(f"incident {self.incident_id}: take its scope before announcing")
        if self.announced is not None:
            raise CaseRefused(f"incident {self.incident_id}: already announced")
        people = self.snapshot["unreachable"]
        _checked("incident.announced", {"incident_id": self.incident_id, "channel": channel,
                                        "people": people,
                                        "snapshot_hash": self.snapshot["hash"]})
        self._announced(channel=channel, people=people, snapshot_hash=self.snapshot["hash"],
                        at=_time(at))

    @event("Announced")
    def _announced(self, channel: str, people: int, snapshot_hash: str, at: datetime) -> None:
        self.announced = {"channel": channel, "people": people, "at": at}

    def respond(self, step: str, detail: str, at: datetime | None = None,
                ledger_event_id: str | None = None) -> None:
        """A response step of 6.2.1 (``RESPONSE``): the contingency plan started (``detail``:
        the plan), the spread stopped (the measures), security advice given (the channel)."""
        if step not in RESPONSE:
            raise InvalidInput(f"step: one of {', '.join(RESPONSE)}",
                               [(1, "step", "unknown response step")])
        self._refuse_if_closed(f"record the {step} step")
        if step in self.response:
            raise CaseRefused(f"incident {self.incident_id}: the {step} step was already "
                              f"recorded at {self.response[step]['at'].isoformat()}")
        event_type, field = RESPONSE[step]
        data = _checked(event_type, {"incident_id": self.incident_id, field: detail})
        trigger = {"contingency": self._contingency_started, "contained": self._contained,
                   "advice": self._advice_given}[step]
        trigger(**{field: data[field].strip()}, at=_time(at), ledger_event_id=ledger_event_id)

    def _responded(self, step: str, detail: str, at: datetime) -> None:
        self.response[step] = {RESPONSE[step][1]: detail, "at": at}

    @event("ContingencyStarted")
    def _contingency_started(self, plan: str, at: datetime,
                             ledger_event_id: str | None = None) -> None:
        self._responded("contingency", plan, at)

    @event("Contained")
    def _contained(self, measures: str, at: datetime,
                   ledger_event_id: str | None = None) -> None:
        self._responded("contained", measures, at)

    @event("AdviceGiven")
    def _advice_given(self, channel: str, at: datetime,
                      ledger_event_id: str | None = None) -> None:
        self._responded("advice", channel, at)

    def close(self, required: Sequence[str], at: datetime | None = None,
              ledger_event_id: str | None = None) -> None:
        """Close the case: refused while a report ``required`` before closing (the rule
        table's regulator duties that start before it) has neither report nor exemption."""
        self._refuse_if_closed("close it again")
        if self.grade is None:
            raise CaseRefused(f"incident {self.incident_id}: cannot close before it is graded "
                              "(its grade decides which reports are due)")
        unmet = self.unmet([d for d in required if d in self.duties])
        if unmet:
            raise CaseRefused(
                f"incident {self.incident_id}: cannot close before these reports are filed "
                f"or exempted with a justification: {', '.join(unmet)} "
                "(pdl incident report / pdl incident exempt)")
        self._closed(at=_time(at), ledger_event_id=ledger_event_id)

    @event("Closed")
    def _closed(self, at: datetime, ledger_event_id: str | None = None) -> None:
        self.closed_at = at


class RightsRequest(Aggregate):
    """A rights request's case (7.1-7.6): received, identity verified, linked, fulfilled or
    refused. Holds the person's pseudonym only, never their identifier."""

    @staticmethod
    def create_id(request_id: str, **_: Any) -> UUID:
        return uuid5(NAMESPACE, f"request:{request_id}")

    @event("Received")
    def __init__(self, request_id: str, kind: str, subject: str, due: datetime,
                 categories: list[str], at: datetime) -> None:
        self.request_id = request_id
        self.kind = kind
        self.subject = subject
        self.due = due
        self.categories = list(categories)
        self.received_at = at
        self.verified: dict[str, Any] | None = None
        self.links: list[dict[str, str]] = []
        self.status = "open"
        self.closed_at: datetime | None = None
        self.reason: str | None = None

    @classmethod
    def receive(cls, request_id: str, kind: str, subject: str, due: datetime,
                categories: Sequence[str] = (), at: datetime | None = None) -> RightsRequest:
        _checked("request.received", {"request_id": request_id, "kind": kind, "due": due,
                                      "categories": list(categories)})
        when = _time(at)
        if _time(due) < when:
            raise InvalidInput("due: before the request was received",
                               [(1, "due", "before the request was received")])
        return cls(request_id=request_id, kind=kind, subject=subject, due=_time(due),
                   categories=list(categories), at=when)

    def _refuse_if_closed(self, step: str) -> None:
        if self.status != "open":
            raise CaseRefused(f"request {self.request_id}: cannot {step}: it was already "
                              f"{self.status}")

    def needs_verification(self, kinds: Sequence[str], real_name: Sequence[str]) -> bool:
        """Whether identity must be verified first (``kinds`` and ``real_name`` come from the
        rule table: kinds that always need it; categories that make a correction need it)."""
        if self.kind in kinds:
            return True
        return self.kind == "correction" and any(
            c == r or c.startswith(r + ".") for c in self.categories for r in real_name)

    def verify(self, method: str, at: datetime | None = None) -> None:
        self._refuse_if_closed("verify identity")
        if self.verified is not None:
            raise CaseRefused(f"request {self.request_id}: identity was already verified")
        _checked("request.identity_verified", {"request_id": self.request_id, "method": method})
        self._identity_verified(method=method, subject=self.subject, at=_time(at))

    @event("IdentityVerified")
    def _identity_verified(self, method: str, subject: str, at: datetime) -> None:
        self.verified = {"method": method, "at": at}

    def link(self, action: str, event_id: str, actions: Mapping[str, str],
             at: datetime | None = None) -> None:
        """Tie the ledger event that carried the request out (``actions``: kind -> action)."""
        self._refuse_if_closed("link an action")
        wanted = actions.get(self.kind)
        if wanted != action:
            raise CaseRefused(f"request {self.request_id}: a {self.kind} request is carried "
                              f"out by {wanted or 'no ledger action'}, not {action}")
        _checked("request.linked", {"request_id": self.request_id, "action": action,
                                    "event_id": event_id})
        self._linked(action=action, event_id=event_id, subject=self.subject, at=_time(at))

    @event("Linked")
    def _linked(self, action: str, event_id: str, subject: str, at: datetime) -> None:
        self.links.append({"action": action, "event_id": event_id})

    def fulfil(self, kinds: Sequence[str], real_name: Sequence[str],
               actions: Mapping[str, str], at: datetime | None = None) -> None:
        """Fulfilled: refused before identity is verified where the rule table needs it, and
        before the ledger action that carries it out is linked."""
        self._refuse_if_closed("fulfil it")
        if self.verified is None and self.needs_verification(kinds, real_name):
            what = ("a correction of real-name data" if self.kind == "correction"
                    else f"a {self.kind} request")
            raise CaseRefused(f"request {self.request_id}: {what} cannot be fulfilled before "
                              "the person's identity is verified (policy 7.1; "
                              "pdl request verify)")
        wanted = actions.get(self.kind)
        if wanted and not any(link["action"] == wanted for link in self.links):
            raise CaseRefused(f"request {self.request_id}: not fulfilled until its {wanted} "
                              "is done and linked")
        self._fulfilled(subject=self.subject, at=_time(at))

    @event("Fulfilled")
    def _fulfilled(self, subject: str, at: datetime) -> None:
        self.status = "fulfilled"
        self.closed_at = at

    def refuse(self, reason: str, at: datetime | None = None) -> None:
        self._refuse_if_closed("refuse it")
        _checked("request.refused", {"request_id": self.request_id, "reason": reason})
        self._refused(reason=reason, subject=self.subject, at=_time(at))

    @event("Refused")
    def _refused(self, reason: str, subject: str, at: datetime) -> None:
        self.status = "refused"
        self.reason = reason
        self.closed_at = at


#: Domain event class -> the catalogue event type it is copied to.
LEDGER_TYPES: dict[type, str] = {
    Incident.Opened: "incident.opened",  # type: ignore[attr-defined]
    Incident.Scoped: "incident.scoped",  # type: ignore[attr-defined]
    Incident.Graded: "incident.graded",  # type: ignore[attr-defined]
    Incident.Reported: "incident.reported",  # type: ignore[attr-defined]
    Incident.ExemptionRecorded: "incident.exemption_recorded",  # type: ignore[attr-defined]
    Incident.NoticeDrafted: "incident.notice_drafted",  # type: ignore[attr-defined]
    Incident.NoticesSent: "incident.notices_sent",  # type: ignore[attr-defined]
    Incident.Announced: "incident.announced",  # type: ignore[attr-defined]
    Incident.ContingencyStarted: "incident.contingency_started",  # type: ignore[attr-defined]
    Incident.Contained: "incident.contained",  # type: ignore[attr-defined]
    Incident.AdviceGiven: "incident.advice_given",  # type: ignore[attr-defined]
    Incident.Closed: "incident.closed",  # type: ignore[attr-defined]
    RightsRequest.Received: "request.received",  # type: ignore[attr-defined]
    RightsRequest.IdentityVerified: "request.identity_verified",  # type: ignore[attr-defined]
    RightsRequest.Linked: "request.linked",  # type: ignore[attr-defined]
    RightsRequest.Fulfilled: "request.fulfilled",  # type: ignore[attr-defined]
    RightsRequest.Refused: "request.refused",  # type: ignore[attr-defined]
}

#: Catalogue types only the case files write (producers send the others too).
CASE_ONLY_TYPES: frozenset[str] = frozenset({
    "incident.scoped", "incident.graded", "incident.exemption_recorded",
    "incident.notice_drafted", "incident.notices_sent", "incident.announced", "request.linked",
})
