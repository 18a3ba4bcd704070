"""The disclosure register (policy §5): compliance."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from consumers import queries
from consumers.queries import DisclosureFilter
from consumers.rows import to_us
from pdl.api.deps import Cursor, Limit, Principal, Role, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import AsOf, CategoryKey, TimeParam, ValidAt, Warnings, at, page_of, read, utc

router = APIRouter(prefix="/disclosures", tags=["registers"], responses=ERROR_RESPONSES)

Text = Annotated[str | None, Query(min_length=1, max_length=200)]
CategoryQuery = Annotated[CategoryKey | None,  # type: ignore[valid-type]
                          Query(description="a data category key")]


class Disclosure(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str
    time: str
    recipient: str


class DisclosurePage(BaseModel):
    items: list[Disclosure]
    next: str | None
    warnings: Warnings


class RecipientSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    recipient: str


def _filters(recipient: str | None, clause: str | None, category: str | None,
             since: datetime | None, until: datetime | None) -> DisclosureFilter:
    return DisclosureFilter(recipient, clause, category, utc(since), utc(until))


@router.get("", response_model=DisclosurePage)
def disclosures(request: Request, principal: Annotated[Principal, require(Role.COMPLIANCE)],
                recipient: Text = None, clause: Text = None, category: CategoryQuery = None,
                since: Annotated[TimeParam, Query(alias="from")] = None,
                until: TimeParam = None, as_of: AsOf = None, valid_at: ValidAt = None,
                limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Disclosures matching the filters, oldest first, a page at a time (compliance)."""
    filters = _filters(recipient, clause, category, since, until)
    key = decode_cursor(cursor, (int, int, int))
    after = (key[0], key[1], key[2]) if key else None

    def answer(views: Any) -> dict[str, Any]:
        rows = queries.disclosures(views, filters.recipient, filters.clause, filters.category,
                                   filters.since, filters.until, limit=limit + 1, after=after)
        return page_of(rows, limit, lambda r: [
            to_us(_parse(r["time"])), r["position"]["partition"], r["position"]["offset"]])

    return read(state(request), principal, "disclosures", filters.as_arguments(),
                as_of=at(as_of, valid_at), needs="disclosures", answer=answer)


@router.get("/summary", response_model=list[RecipientSummary])
def summary(request: Request, principal: Annotated[Principal, require(Role.COMPLIANCE)],
            recipient: Text = None, clause: Text = None, category: CategoryQuery = None,
            since: Annotated[TimeParam, Query(alias="from")] = None,
            until: TimeParam = None, as_of: AsOf = None, valid_at: ValidAt = None) -> Any:
    """Per recipient: how many disclosures, of whom, of what (compliance)."""
    filters = _filters(recipient, clause, category, since, until)
    return read(state(request), principal, "disclosures",
                {**filters.as_arguments(), "summary": "yes"}, as_of=at(as_of, valid_at),
                needs="disclosures",
                answer=lambda views: queries.disclosure_summary(views, filters))


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
