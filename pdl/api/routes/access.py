"""The access log: who read whose data, when and why (privacy_officer, compliance)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from consumers.access import access_log
from pdl.api.deps import Cursor, Limit, Principal, Role, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import TimeParam, page_of, read, utc

router = APIRouter(tags=["access"], responses=ERROR_RESPONSES)

ACCESS_ROLES = (Role.PRIVACY_OFFICER, Role.COMPLIANCE)


class Access(BaseModel):
    event_id: str
    time: str | None
    actor: str
    role: str | None
    query: str
    arguments: dict[str, str]
    people: list[str]
    reason: str | None
    clear: bool
    position: dict[str, int]


class AccessPage(BaseModel):
    items: list[Access]
    next: str | None


@router.get("/access-log", response_model=AccessPage)
def access(request: Request, principal: Annotated[Principal, require(*ACCESS_ROLES)],
           person: Annotated[str | None, Query(pattern=r"^p_[a-z2-7]{32}$",
                                               description="only reads of this pseudonym")]
           = None,
           actor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
           since: Annotated[TimeParam, Query(alias="from")] = None, until: TimeParam = None,
           clear: Annotated[bool | None, Query(description="only reads of clear values "
                                                           "(true) or only others (false)")]
           = None,
           limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Who read whose data, when, and why, oldest first (privacy_officer, compliance).
    Reading the access log is itself recorded."""
    key = decode_cursor(cursor, (int, str))
    start, end = utc(since), utc(until)

    def answer(views: Any) -> dict[str, Any]:
        rows = access_log(views, person=person, actor=actor, since=start, until=end,
                          clear=clear, after=(key[0], key[1]) if key else None,
                          limit=limit + 1)
        return page_of(rows, limit, lambda r: [_us(r["time"]), r["event_id"]])

    return read(state(request), principal, "access-log",
                {"actor": actor, "from": start.isoformat() if start else None,
                 "until": end.isoformat() if end else None,
                 "clear": None if clear is None else str(clear).lower()},
                people=[person] if person else [], as_of=None, needs="access", answer=answer)


def _us(text: str) -> int:
    from datetime import datetime

    from consumers.rows import to_us

    return to_us(datetime.fromisoformat(text))
