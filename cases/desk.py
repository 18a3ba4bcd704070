"""The responder's desk: every case step as one call, shared by the CLI (and the HTTP API).

Each step loads the case, asks the aggregate (which refuses an illegal step before any
event exists), saves it in the case store and copies the new events to the ledger log
(``LedgerFollower``). Steps that read the ledger take its views as the caller caught them up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cases import clocks, drafts, snapshot
from cases.application import CaseFiles, LedgerFollower
from cases.domain import GRADES, RESPONSE, Incident, RightsRequest
from cases.notify import notify_list
from consumers.views import ViewStore
from ledger.application import Ledger
from ledger.errors import CaseRefused, InvalidInput, NotFound
from schemas import decode
from schemas.events import (
    EVENT_TYPES,
    IncidentClosed,
    IncidentOpened,
    IncidentReported,
    IncidentSubjectNotified,
)

#: Catalogue model of each response step's event -> the step (adopted from the log).
RESPONSE_TYPES = {EVENT_TYPES[event_type]: step for step, (event_type, _) in RESPONSE.items()}
#: Duty an incident.reported without one (schema v1, or a producer's) is taken to discharge.
DEFAULT_REPORT_DUTY = "pipl57_regulator"


class CaseDesk:
    """Case steps over one ledger and one case store."""

    def __init__(self, ledger: Ledger, cases: CaseFiles | None = None) -> None:
        self.ledger = ledger
        self.settings = ledger.settings
        self.cases = cases if cases is not None else CaseFiles(ledger.settings)
        self.follower = LedgerFollower(self.cases, ledger)

    def close(self) -> None:
        self.cases.close()

    def save(self, *aggregates: Any) -> int:
        self.cases.save(*aggregates)
        return self.follower.pull()

    # --- incidents -----------------------------------------------------------------------

    def open_incident(self, incident_id: str, description: str, stores: Sequence[str],
                      window_start: datetime, window_end: datetime,
                      categories: Sequence[str] = (), at: datetime | None = None) -> Incident:
        if self.cases.has_incident(incident_id):
            raise CaseRefused(f"incident {incident_id}: a case file is already open for it")
        incident = Incident.open(incident_id, description, stores, window_start, window_end,
                                 categories, at=at)
        self.save(incident)
        return incident

    def take_scope(self, incident_id: str, views: ViewStore,
                   at: datetime | None = None) -> dict[str, Any]:
        incident = self.cases.incident(incident_id)
        taken_at = at or clocks.utcnow()
        snap = snapshot.take(incident, views, self.ledger.log, taken_at)
        incident.scope(snap, at=taken_at)
        snapshot.save(snap, self.settings.data_dir)
        self.save(incident)
        return snap

    def snapshot_of(self, incident: Incident) -> dict[str, Any]:
        if incident.snapshot is None:
            raise CaseRefused(f"incident {incident.incident_id}: no scope taken yet "
                              "(pdl incident scope)")
        try:
            return snapshot.load(self.settings.data_dir, incident.incident_id,
                                 incident.snapshot["hash"])
        except FileNotFoundError:
            raise NotFound(f"incident {incident.incident_id}: the snapshot file "
                           f"{incident.snapshot['hash'][:16]} is missing; take the scope "
                           "again") from None

    def assess(self, incident_id: str) -> clocks.Assessment:
        incident = self.cases.incident(incident_id)
        return clocks.assess(self.snapshot_of(incident)["counts"], self.settings)

    def grade(self, incident_id: str, grade: str | None = None,
              justification: str | None = None, at: datetime | None = None) -> Incident:
        """Grade from the scope: the threshold's grade, or a person's judgment below the
        thresholds (``grade`` and ``justification``; a judgment may raise a computed grade,
        never lower it)."""
        incident = self.cases.incident(incident_id)
        counts = self.snapshot_of(incident)["counts"]
        assessment = clocks.assess(counts, self.settings)
        computed = assessment.computed_grade
        if grade is not None and grade not in GRADES:
            raise InvalidInput(f"grade: {grade!r} is not one of {', '.join(GRADES)}",
                               [(1, "grade", "unknown grade")])
        if grade is None or grade == computed:
            if computed is None:
                raise CaseRefused(f"incident {incident_id}: {assessment.prompt}")
            chosen, basis = computed, "threshold"
        else:
            if computed is not None and GRADES.index(grade) < GRADES.index(computed):
                raise CaseRefused(f"incident {incident_id}: {counts['people']} people reach "
                                  f"{computed}; a judgment may raise the grade, not lower it")
            if not (justification or "").strip():
                raise CaseRefused(f"incident {incident_id}: a judged grade needs "
                                  "--justification")
            chosen, basis = grade, "judgment"
        duties = clocks.duties(chosen, counts | {"people": counts["people"]},
                               incident.discovered_at)
        incident.grade_from(chosen, basis, duties, justification, at=at)
        self.save(incident)
        return incident

    def report(self, incident_id: str, duty: str, authority: str,
               at: datetime | None = None) -> Incident:
        incident = self.cases.incident(incident_id)
        incident.report(duty, authority, at=at)
        self.save(incident)
        return incident

    def exempt(self, incident_id: str, duty: str, justification: str,
               at: datetime | None = None) -> Incident:
        incident = self.cases.incident(incident_id)
        if incident.duties and duty not in incident.duties:
            raise CaseRefused(f"incident {incident_id}: {duty!r} is not a duty of this "
                              f"incident (its duties: {', '.join(incident.duties)})")
        incident.exempt(duty, justification, at=at)
        self.save(incident)
        return incident

    def notices_sent(self, incident_id: str, duty: str, channel: str, people: int,
                     at: datetime | None = None) -> Incident:
        incident = self.cases.incident(incident_id)
        if incident.duties and duty not in incident.duties:
            raise CaseRefused(f"incident {incident_id}: {duty!r} is not a duty of this "
                              f"incident (its duties: {', '.join(incident.duties)})")
        incident.notices_sent(duty, channel, people, at=at)
        self.save(incident)
        return incident

    def announce(self, incident_id: str, channel: str, at: datetime | None = None) -> Incident:
        incident = self.cases.incident(incident_id)
        incident.announce(channel, at=at)
        self.save(incident)
        return incident

    def respond(self, incident_id: str, step: str, detail: str,
                at: datetime | None = None) -> Incident:
        """Record a response step of 6.2.1 (``cases.domain.RESPONSE``); the follower copies
        it to the log as its catalogue event, which the findings read."""
        incident = self.cases.incident(incident_id)
        incident.respond(step, detail, at=at)
        self.save(incident)
        return incident

    def close_incident(self, incident_id: str, at: datetime | None = None) -> Incident:
        incident = self.cases.incident(incident_id)
        incident.close(clocks.before_closing(incident.duties), at=at)
        self.save(incident)
        return incident

    def notify_list(self, incident_id: str, reason: str, *, actor: str | None = None,
                    role: str | None = None) -> dict[str, Any]:
        """The audited notify list (privacy officer only: the caller checks the role)."""
        if not reason.strip():
            raise InvalidInput("reason: required: say why the contacts are needed",
                               [(1, "reason", "required")])
        incident = self.cases.incident(incident_id)
        answer, audit = notify_list(self.ledger, self.snapshot_of(incident), reason.strip(),
                                    actor=actor, role=role)
        answer["audit_event_id"] = audit.event_id
        return answer

    def draft(self, incident_id: str, facts: dict[str, str],
              which: Sequence[str] = drafts.DRAFTS) -> dict[str, dict[str, str]]:
        incident = self.cases.incident(incident_id)
        snap = self.snapshot_of(incident)
        if "report_gdpr" in which and not any(d.startswith("gdpr33:") for d in incident.duties):
            which = [d for d in which if d != "report_gdpr"]
        written = drafts.write(self.settings.data_dir, incident, snap, facts, tuple(which))
        for name, info in written.items():
            incident.drafted(name, info["digest"])
        self.save(incident)
        return written

    def adopt(self, incident_id: str, views: ViewStore, grade: str | None = None,
              justification: str | None = None) -> Incident:
        """Open a case file for an incident already recorded in the log by a producer: its
        events keep their ledger ids (copied again, they are the same events), then the scope
        and the grade are taken now, and its reports, notices and closing follow."""
        if self.cases.has_incident(incident_id):
            raise CaseRefused(f"incident {incident_id}: a case file is already open for it")
        opened: tuple[str, datetime, IncidentOpened] | None = None
        reports: list[tuple[str, datetime, IncidentReported]] = []
        notified: list[tuple[datetime, str]] = []
        steps: list[tuple[str, datetime, str, str]] = []  # (event id, time, step, detail)
        closed: tuple[str, datetime] | None = None
        for record in self.ledger.log.read():
            if not record.event_type.startswith("incident."):
                continue
            event = decode(record.payload)
            data = event.data
            if getattr(data, "incident_id", None) != incident_id:
                continue
            assert event.id is not None
            if isinstance(data, IncidentOpened) and opened is None:
                opened = (event.id, event.time, data)
            elif isinstance(data, IncidentReported):
                reports.append((event.id, event.time, data))
            elif isinstance(data, IncidentSubjectNotified):
                notified.append((event.time, data.channel))
            elif type(data) in RESPONSE_TYPES:
                step = RESPONSE_TYPES[type(data)]
                steps.append((event.id, event.time, step, getattr(data, RESPONSE[step][1])))
            elif isinstance(data, IncidentClosed) and closed is None:
                closed = (event.id, event.time)
        if opened is None:
            raise NotFound(f"no incident {incident_id!r} has been opened in the log")
        eid, t, d = opened
        incident = Incident.open(incident_id, d.description, d.stores, d.window_start,
                                 d.window_end, d.categories, at=t, ledger_event_id=eid)
        self.save(incident)
        self.take_scope(incident_id, views)
        self.grade(incident_id, grade, justification)
        incident = self.cases.incident(incident_id)
        for eid, t, r in reports:
            incident.report(r.duty or DEFAULT_REPORT_DUTY, r.authority, at=t, ledger_event_id=eid)
        if notified and "pipl57_individuals" in incident.duties:
            last, channel = max(notified)
            incident.notices_sent("pipl57_individuals", channel,
                                  min(len(notified), incident.snapshot["reachable"]
                                      if incident.snapshot else 0), at=last)
        for eid, t, step, detail in steps:
            if step not in incident.response:
                incident.respond(step, detail, at=t, ledger_event_id=eid)
        if closed is not None:
            incident.close(clocks.before_closing(incident.duties), at=closed[1],
                           ledger_event_id=closed[0])
        self.save(incident)
        return incident

    def status(self, incident_id: str, now: datetime) -> dict[str, Any]:
        incident = self.cases.incident(incident_id)
        return incident_summary(incident, self.settings, now)

    # --- rights requests -----------------------------------------------------------------

    def open_request(self, request_id: str, kind: str, subject_id: str,
                     categories: Sequence[str] = (), due: datetime | None = None,
                     at: datetime | None = None) -> RightsRequest:
        if self.cases.has_request(request_id):
            raise CaseRefused(f"request {request_id}: already open")
        if not subject_id.strip():
            raise InvalidInput("subject: required", [(1, "subject", "required")])
        received = at or clocks.utcnow()
        request = RightsRequest.receive(
            request_id, kind, self.ledger.pseudonymise(subject_id),
            due or clocks.request_due(received, self.settings), categories, at=received)
        self.save(request)
        return request

    def verify(self, request_id: str, method: str, at: datetime | None = None) -> RightsRequest:
        request = self.cases.request(request_id)
        request.verify(method, at=at)
        self.save(request)
        return request

    def refuse(self, request_id: str, reason: str, at: datetime | None = None) -> RightsRequest:
        request = self.cases.request(request_id)
        request.refuse(reason, at=at)
        self.save(request)
        return request

    def fulfil(self, request_id: str, subject_id: str | None = None,
               at: datetime | None = None) -> tuple[RightsRequest, dict[str, Any] | None]:
        """Fulfil: an access request runs the export, a deletion the erasure, each linked by
        the id of the ledger event that carried it out. Returns the export, if any."""
        rules = clocks.table()["requests"]
        actions: dict[str, str] = rules["actions"]
        request = self.cases.request(request_id)
        action = actions.get(request.kind)
        # Check everything the aggregate would refuse before running the action.
        request._refuse_if_closed("fulfil it")
        if request.verified is None and request.needs_verification(
                rules["verification_required"], rules["real_name_categories"]):
            request.fulfil(rules["verification_required"], rules["real_name_categories"],
                           actions, at=at)  # raises, naming the rule
        exported = None
        if action is not None:
            if not subject_id:
                raise InvalidInput(f"subject: a {request.kind} request runs {action}: give the "
                                   "person's identifier", [(1, "subject", "required")])
            if self.ledger.pseudonymise(subject_id) != request.subject:
                raise CaseRefused(f"request {request_id}: the identifier given is not the "
                                  "person who made the request")
            if action == "export":
                exported = self.ledger.export(subject_id)
                done = self.ledger.audit("export", {"request_id": request_id},
                                         people=[request.subject],
                                         reason=f"rights request {request_id}", clear=True)
            else:
                done = self.ledger.erase(subject_id, reason="request", request_id=request_id).result
            request.link(action, done.event_id, actions, at=at)
        request.fulfil(rules["verification_required"], rules["real_name_categories"],
                       actions, at=at)
        self.save(request)
        return request, exported

    def request_status(self, request: RightsRequest, now: datetime) -> dict[str, Any]:
        clock = clocks.request_clock(request, now)
        return {"request_id": request.request_id, "kind": request.kind,
                "pseudonym": request.subject, "received_at": request.received_at.isoformat(),
                "due": request.due.isoformat(), "status": request.status,
                "verified": request.verified is not None, "links": list(request.links),
                "reason": request.reason, "clock": clock.as_dict()}


def incident_summary(incident: Incident, settings: Any, now: datetime) -> dict[str, Any]:
    """An incident's case as data: grade, snapshot, clocks, what was reported and drafted."""
    clock_rows = clocks.incident_clocks(incident, settings, now)
    snap = dict(incident.snapshot or {})
    if "at" in snap:
        snap["at"] = snap["at"].isoformat()
    return {
        "incident_id": incident.incident_id,
        "description": incident.description,
        "discovered_at": incident.discovered_at.isoformat(),
        "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
        "status": "closed" if incident.closed_at else "open",
        "grade": incident.grade, "grade_basis": incident.grade_basis,
        "snapshot": snap or None,
        "duties": list(incident.duties),
        "reports": {k: {"authority": v["authority"], "at": v["at"].isoformat()}
                    for k, v in incident.reports.items()},
        "exemptions": dict(incident.exemptions),
        "notices": {k: {**v, "at": v["at"].isoformat()} for k, v in incident.notices.items()},
        "announced": ({**incident.announced, "at": incident.announced["at"].isoformat()}
                      if incident.announced else None),
        "drafts": dict(incident.drafts),
        "response": {k: {**v, "at": v["at"].isoformat()} for k, v in incident.response.items()},
        "folder": str(snapshot.folder(settings.data_dir, incident.incident_id)),
        "notify": _notify_counts(settings.data_dir, incident),
        "clocks": [c.as_dict() for c in clock_rows],
        "findings": [c.duty for c in clock_rows if c.finding],
        "now": now.isoformat(),
    }


def clock_findings(views: ViewStore, desk: CaseDesk, now: datetime,
                   clause: str | None = None) -> list[dict[str, Any]]:
    """Overdue or late clocks of the incident cases, as findings of clause 6.2.1a (the
    position is the incident's ``incident.opened`` in the log, as the findings view has it)."""
    from consumers.findings.store import INCIDENTS_TABLE

    if clause is not None and not "6.2.1a".startswith(clause):
        return []
    out: list[dict[str, Any]] = []
    for incident in desk.cases.incidents():
        rows = views.query(f'SELECT event_id, partition, "offset" FROM {INCIDENTS_TABLE} '
                           "WHERE incident_id = ?", (incident.incident_id,))
        event_id, partition, offset = rows[0] if rows else (None, None, None)
        for c in clocks.incident_clocks(incident, desk.settings, now):
            if c.finding:
                assert c.due is not None
                out.append({
                    "clause": "6.2.1a", "pseudonym": None, "event_id": event_id,
                    "partition": partition, "offset": offset, "time": c.due.isoformat(),
                    "explanation": f"incident {incident.incident_id}: {c.duty} {c.state} "
                                   f"(due {c.due.isoformat()}; {c.citation.split(':')[0]})",
                    "status": "open", "remedied_by": None, "remedied_at": None})
    return out


def _notify_counts(data_dir: Path, incident: Incident) -> dict[str, Any] | None:
    """The counts of the notify list taken from the current snapshot, if one was taken."""
    if incident.snapshot is None:
        return None
    path = (snapshot.folder(data_dir, incident.incident_id)
            / f"notify-{incident.snapshot['hash'][:16]}.json")
    if not path.exists():
        return None
    answer = json.loads(path.read_text("utf-8"))
    return {"listed": answer["counts"]["listed"],
            "announcement": answer["announcement"]["people"],
            "reasons": answer["announcement"]["reasons"]}


def read_facts(path: str | None) -> dict[str, str]:
    """The responder's facts for the drafts: a JSON object of strings."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no such facts file: {path}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"facts: not JSON ({exc.msg} at line {exc.lineno})",
                           [(exc.lineno, "facts", exc.msg)]) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidInput("facts: give a JSON object of strings",
                           [(1, "facts", "not an object of strings")])
    return data
