"""One person: data map by pseudonym, and lookup, export and erasure by real identifier.

A real identifier never travels in a URL: it is sent in a POST body, pseudonymised at once
and never written anywhere. A data map is addressed by pseudonym (an opaque handle) as well.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from consumers import queries
from pdl.api.deps import Principal, Role, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import AsOf, Time, ValidAt, at, json_answer, read

router = APIRouter(prefix="/subjects", tags=["subjects"], responses=ERROR_RESPONSES)

#: Who may read a (pseudonymised) data map.
DATA_MAP_ROLES = (Role.COMPLIANCE, Role.RESPONDER, Role.PRIVACY_OFFICER)

SubjectId = Annotated[str, Field(min_length=1, max_length=256,
                                 description="the person's real identifier (never logged)")]
Reason = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                              description="why: a ticket number or reason (recorded)")]
Pseudonym = Annotated[str, Path(pattern=r"^p_[a-z2-7]{32}$",
                                description="the person's pseudonym (from another answer)")]


class Lookup(BaseModel):
    """A person's data map, by real identifier."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectId
    as_of: Time | None = Field(default=None, description="recorded time: the log as it stood "
                               "then")
    valid_at: Time | None = Field(default=None, description="event time: the events that "
                                  "happened by then, whenever recorded")
    reason: Reason | None = None


class Export(BaseModel):
    """Everything about a person, unsealed (an access request, policy 7.1)."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectId
    reason: Reason
    as_of: Time | None = Field(default=None, description="recorded time: the log as it stood "
                               "then")
    valid_at: Time | None = Field(default=None, description="event time: the events that "
                                  "happened by then, whenever recorded")


class Erase(BaseModel):
    """Crypto-shred a person: destroy their key, record the erasure."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectId
    reason: Reason
    request_id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")] | None = Field(
        default=None, description="the rights request this fulfils")
    record_anyway: bool = Field(
        default=False, description="record an erasure request for an id the ledger never "
        "saw (else 404, nothing recorded)")


class DataMap(BaseModel):
    """A person's data map (pseudonymised: no clear value)."""

    model_config = ConfigDict(extra="allow")
    pseudonym: str


class Exported(BaseModel):
    """A person's events with their values in clear, and their data map."""

    model_config = ConfigDict(extra="allow")
    subject: str
    pseudonym: str
    events: list[dict[str, Any]]


class Erased(BaseModel):
    erased: bool
    #: True if the person was erased before: nothing was appended this time.
    already: bool = False
    pseudonym: str
    position: dict[str, int]


@router.get("/{pseudonym:pseudonym}", response_model=DataMap)
def data_map(request: Request, pseudonym: Pseudonym,
             principal: Annotated[Principal, require(*DATA_MAP_ROLES)],
             as_of: AsOf = None, valid_at: ValidAt = None) -> Any:
    """A person's data map by pseudonym (compliance, responder, privacy_officer)."""
    moment = at(as_of, valid_at)
    return json_answer(read(state(request), principal, "subject", {}, as_of=moment,
                            needs="datamap", people=[pseudonym],
                            answer=lambda views: queries.subject_map(views, pseudonym,
                                                                     now=moment.reference)))


@router.post("/lookup", response_model=DataMap)
def lookup(request: Request, body: Lookup,
           principal: Annotated[Principal, require(Role.COMPLIANCE, Role.PRIVACY_OFFICER)]
           ) -> Any:
    """A person's data map by real identifier (compliance, privacy_officer)."""
    api = state(request)
    pseudonym = api.service.pseudonym(body.subject)
    moment = at(body.as_of, body.valid_at)
    return json_answer(read(api, principal, "subject", {}, as_of=moment, needs="datamap",
                            people=[pseudonym], reason=body.reason,
                            answer=lambda views: queries.subject_map(views, pseudonym,
                                                                     now=moment.reference)))


@router.post("/export", response_model=Exported)
def export(request: Request, body: Export,
           principal: Annotated[Principal, require(Role.PRIVACY_OFFICER)]) -> Any:
    """Everything about a person, values in clear; a reason is required (privacy_officer)."""
    api = state(request)
    pseudonym = api.service.pseudonym(body.subject)
    moment = at(body.as_of, body.valid_at)
    return read(api, principal, "export", {"format": "json"}, as_of=moment,
                needs="datamap", people=[pseudonym], reason=body.reason, clear=True,
                answer=lambda views: api.service.export(views, body.subject, moment))


@router.post("/erase", response_model=Erased)
def erase(request: Request, body: Erase,
          principal: Annotated[Principal, require(Role.PRIVACY_OFFICER)]) -> Any:
    """Crypto-shred a person; a reason is required (privacy_officer)."""
    service = state(request).service
    pseudonym = service.pseudonym(body.subject)
    with service.lock:
        service.audit("erase", {"request_id": body.request_id}, actor=principal.name,
                      role=principal.role.value, people=[pseudonym], reason=body.reason)
        result = service.ledger.erase(body.subject, reason=body.reason,
                                      request_id=body.request_id, source="pdl/api",
                                      record_anyway=body.record_anyway)
    return {"erased": True, "already": result.already, "pseudonym": pseudonym,
            "position": {"partition": result.partition, "offset": result.offset}}
