"""The log itself: verify the chain (responder), unseal one person's events (privacy_officer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from pdl.api.deps import Principal, Role, decode_cursor, encode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import Time
from pdl.api.routes.subjects import Reason, SubjectId

router = APIRouter(prefix="/log", tags=["log"], responses=ERROR_RESPONSES)


class Verified(BaseModel):
    verified: int
    ok: bool


class Unseal(BaseModel):
    """One person's events with their values in clear, a page at a time."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectId
    reason: Reason
    as_of: Time | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=400, pattern=r"^[A-Za-z0-9_-]+$")


class UnsealedPage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None


@router.post("/verify", response_model=Verified)
def verify(request: Request, principal: Annotated[Principal, require(Role.RESPONDER)]) -> Any:
    """Check the log's hash chain and that every record decodes (responder)."""
    service = state(request).service
    with service.lock:
        checked = service.ledger.verify()
    return {"verified": checked, "ok": True}


@router.post("/unseal", response_model=UnsealedPage)
def unseal(request: Request, body: Unseal,
           principal: Annotated[Principal, require(Role.PRIVACY_OFFICER)]) -> Any:
    """A person's events with values in clear; a reason is required and recorded with
    whose data was opened (privacy_officer)."""
    service = state(request).service
    ledger = service.ledger
    key = decode_cursor(body.cursor, (int, int))
    pseudonym = service.pseudonym(body.subject)
    items: list[dict[str, Any]] = []
    more = False
    with service.lock:
        service.audit("log --unseal", {"limit": str(body.limit)}, actor=principal.name,
                      role=principal.role.value, people=[pseudonym], reason=body.reason,
                      clear=True)
        for record, event in ledger.events(until=body.as_of, subject=body.subject):
            if key is not None and (record.partition, record.offset) <= (key[0], key[1]):
                continue
            if len(items) == body.limit:
                more = True
                break
            item = event.model_dump(mode="json", exclude_none=True, exclude={"sealed"})
            item["subject"] = body.subject
            item["position"] = {"partition": record.partition, "offset": record.offset}
            item["recorded_at"] = record.recorded_at.isoformat()
            if event.sealed:
                item["personal"] = ledger.unseal(event)
            items.append(item)
    last = items[-1]["position"] if items else None
    return {"items": items,
            "next": encode_cursor([last["partition"], last["offset"]]) if more and last else None}
