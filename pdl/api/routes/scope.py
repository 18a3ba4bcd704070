"""Breach scope and incidents (responder)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from consumers import queries
from pdl.api.deps import Cursor, Limit, Principal, Role, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES, BadRequest
from pdl.api.reads import AsOf, TimeParam, ValidAt, Warnings, at, page_of, read, utc
from pdl.api.reads import categories as category_keys

router = APIRouter(tags=["incidents"], responses=ERROR_RESPONSES)

#: People listed in a /scope answer unless ``limit`` says otherwise.
SCOPE_PAGE = 100
List = Annotated[str | None, Query(min_length=1, max_length=2000,
                                   description="comma-separated names")]


class ScopeAnswer(BaseModel):
    """Who a breach affected: counts cover everyone, ``people`` one page of them."""

    model_config = ConfigDict(extra="allow")
    counts: dict[str, Any]
    page: dict[str, Any]
    people: list[dict[str, Any]]


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    incident_id: str


class IncidentPage(BaseModel):
    items: list[Incident]
    next: str | None
    warnings: Warnings


def _split(text: str | None) -> list[str]:
    return [s for s in (text or "").split(",") if s]


@router.get("/scope", response_model=ScopeAnswer)
def scope(request: Request, principal: Annotated[Principal, require(Role.RESPONDER)],
          stores: List = None, since: Annotated[TimeParam, Query(alias="from")] = None,
          until: TimeParam = None, categories: List = None,
          incident: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
          as_of: AsOf = None, valid_at: ValidAt = None, limit: Limit = SCOPE_PAGE,
          after: Annotated[str | None, Query(pattern=r"^p_[a-z2-7]{32}$",
                                             description="page.next of the previous page")]
          = None) -> Any:
    """The people an incident exposed, with regulator counts; by ``incident`` or by
    ``stores`` + ``from`` + ``until`` (responder)."""
    store_list, category_list = _split(stores), category_keys(categories)
    start, end = utc(since), utc(until)
    if incident is None:
        if not store_list or start is None or end is None:
            raise BadRequest("give stores, from and until (or incident)", field="stores")
        if end < start:
            raise BadRequest("until is before from", field="until")

    def answer(views: Any) -> queries.Scope:
        if incident is not None:
            return queries.incident_scope(views, incident, limit=limit, after=after)
        assert start is not None and end is not None
        return queries.scope(views, store_list, start, end, category_list or None,
                             limit=limit, after=after)

    told: list[str] = []
    found = read(state(request), principal, "scope", {
        "incident": incident, "stores": ",".join(store_list) or None,
        "from": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "categories": ",".join(category_list) or None}, as_of=at(as_of, valid_at),
        needs="holdings", answer=answer, warnings=told)
    # Written from the answer's columns (``Scope.to_json``), as FastAPI would write
    # ``ScopeAnswer``: no dict per person listed, validated and encoded again (7x faster
    # for a page of 1000).
    return Response(found.to_json(separators=(",", ":"),
                                  extra={"warnings": told} if told else None),
                    media_type="application/json")


@router.get("/incidents", response_model=IncidentPage)
def incidents(request: Request, principal: Annotated[Principal, require(Role.RESPONDER)],
              as_of: AsOf = None, valid_at: ValidAt = None, limit: Limit = 100,
              cursor: Cursor = None) -> Any:
    """The incidents recorded in the log, newest first, a page at a time (responder)."""
    key = decode_cursor(cursor, (int,))
    start = key[0] if key else 0

    def answer(views: Any) -> dict[str, Any]:
        window = queries.incidents(views)[start:start + limit + 1]
        return page_of(window, limit, lambda _last: [start + limit])

    return read(state(request), principal, "incidents", {}, as_of=at(as_of, valid_at),
                needs="holdings", answer=answer)
