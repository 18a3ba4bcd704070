"""The case files over HTTP: an incident's case and clocks, its notify list, the requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cases.desk import CaseDesk, incident_summary
from pdl.api.deps import Principal, Role, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import TimeParam, utc

router = APIRouter(tags=["cases"], responses=ERROR_RESPONSES)

IncidentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$",
                                 description="the incident id")]
#: Who may follow a case's clocks (no personal data in it).
CASE_ROLES = (Role.RESPONDER, Role.PRIVACY_OFFICER, Role.COMPLIANCE)


class NotifyRequest(BaseModel):
    """Why the contacts are needed (recorded with the principal in the audit event)."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                                 description="why: a ticket number or reason (recorded)")]


class Case(BaseModel):
    model_config = ConfigDict(extra="allow")
    incident_id: str
    clocks: list[dict[str, Any]]
    findings: list[str]


class NotifyList(BaseModel):
    model_config = ConfigDict(extra="allow")
    incident_id: str
    snapshot_hash: str
    counts: dict[str, Any]
    announcement: dict[str, Any]
    people: list[dict[str, str]]


class RightsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    request_id: str
    kind: str
    status: str
    due: str
    clock: dict[str, Any]


@contextmanager
def _desk(request: Request) -> Iterator[CaseDesk]:
    service = state(request).service
    with service.lock:
        desk = CaseDesk(service.ledger)
        try:
            yield desk
        finally:
            desk.close()


def _now(moment: datetime | None) -> datetime:
    return utc(moment) or datetime.now(UTC)


@router.get("/incidents/{incident_id}/case", response_model=Case)
def case(request: Request, incident_id: IncidentId,
         principal: Annotated[Principal, require(*CASE_ROLES)], now: TimeParam = None) -> Any:
    """An incident's case file: grade, scope snapshot, each clock counting down, findings
    (responder, privacy_officer, compliance)."""
    at = _now(now)
    service = state(request).service
    service.audit("incident case", {"incident_id": incident_id}, actor=principal.name,
                  role=principal.role.value)
    with _desk(request) as desk:
        return incident_summary(desk.cases.incident(incident_id), desk.settings, at)


@router.post("/incidents/{incident_id}/notify-list", response_model=NotifyList)
def notify_list(request: Request, incident_id: IncidentId, body: NotifyRequest,
                principal: Annotated[Principal, require(Role.PRIVACY_OFFICER)]) -> Any:
    """The reachable people of the incident's snapshot with their contact, unsealed; the
    unreachable and erased counted and routed to the public announcement (privacy_officer;
    a reason is required and recorded)."""
    with _desk(request) as desk:
        return desk.notify_list(incident_id, body.reason, actor=principal.name,
                                role=principal.role.value)


@router.get("/requests", response_model=list[RightsRequest])
def requests(request: Request,
             principal: Annotated[Principal, require(Role.COMPLIANCE, Role.PRIVACY_OFFICER)],
             status: Annotated[Literal["open", "fulfilled", "refused"] | None, Query()] = None,
             overdue: bool = False, now: TimeParam = None) -> Any:
    """The rights requests with their due dates (compliance, privacy_officer)."""
    at = _now(now)
    service = state(request).service
    service.audit("requests", {"status": status, "overdue": str(overdue).lower()},
                  actor=principal.name, role=principal.role.value)
    with _desk(request) as desk:
        rows = [desk.request_status(r, at) for r in desk.cases.requests()]
    return [r for r in rows if (status is None or r["status"] == status)
            and (not overdue or r["clock"]["finding"])]
