"""Findings: promises the log shows broken (compliance)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pdl.api.deps import Cursor, Limit, Principal, Role, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import AsOf, ValidAt, Warnings, at, page_of, read
from pdl.service import QueryService, findings_summary

router = APIRouter(prefix="/findings", tags=["registers"], responses=ERROR_RESPONSES)

Clause = Annotated[str | None, Query(min_length=1, max_length=50,
                                     description='clause prefix, e.g. "3" or "2.1.1(2)b"')]
Status = Annotated[Literal["open", "remedied"] | None,
                   Query(description="only open findings, or only those a later event "
                                     "remedied (7.4: the data erased or corrected)")]


class Finding(BaseModel):
    model_config = ConfigDict(extra="allow")
    clause: str


class FindingPage(BaseModel):
    items: list[Finding]
    next: str | None
    warnings: Warnings


class ClauseSummary(BaseModel):
    clause: str
    findings: int
    open: int = Field(description="of which not remedied by a later event (7.4)")
    people: int


def _found(request: Request, principal: Principal, clause: str | None,
           as_of: datetime | None,
           summary: bool, valid_at: datetime | None = None,
           status: str | None = None, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    api = state(request)
    moment = at(as_of, valid_at)
    settings = api.service.ledger.settings
    return read(api, principal, "findings",
                {"clause": clause, "summary": "yes" if summary else None, "status": status},
                as_of=moment, needs="findings", warnings=warnings,
                answer=lambda views: QueryService.findings(views, clause, moment,
                                                           settings=settings, status=status))


@router.get("", response_model=FindingPage)
def findings(request: Request, principal: Annotated[Principal, require(Role.COMPLIANCE)],
             clause: Clause = None, as_of: AsOf = None, valid_at: ValidAt = None,
             status: Status = None, limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Findings by time, a page at a time, each open or remedied (compliance)."""
    key = decode_cursor(cursor, (int,))
    start = key[0] if key else 0
    warnings: list[str] = []
    found = _found(request, principal, clause, as_of, False, valid_at, status, warnings)
    window = found[start:start + limit + 1]
    return {**page_of(window, limit, lambda _last: [start + limit]), "warnings": warnings}


@router.get("/summary", response_model=list[ClauseSummary])
def summary(request: Request, principal: Annotated[Principal, require(Role.COMPLIANCE)],
            clause: Clause = None, as_of: AsOf = None, valid_at: ValidAt = None) -> Any:
    """Per clause: how many findings and how many people (compliance)."""
    return findings_summary(_found(request, principal, clause, as_of, True, valid_at))
