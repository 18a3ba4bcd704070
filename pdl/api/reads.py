"""Accountable reads: every query is audited with its principal before it is answered."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from consumers.replay import QueryTime
from consumers.views import ViewStore
from pdl.api.deps import ApiState, Principal
from pdl.api.problems import BadRequest
from pdl.output import parse_time
from pdl.service import query_time

T = TypeVar("T")

#: A time in a query string: ISO 8601 with a zone (parsed by ``when``).
TimeParam = Annotated[str | None, Query(max_length=64, description="ISO 8601 time with a zone")]
AsOf = Annotated[str | None, Query(max_length=64, description="recorded time: answer from "
                                   "the log as it stood at this time (ISO 8601 with a zone, "
                                   "or a date = midnight UTC)")]
ValidAt = Annotated[str | None, Query(max_length=64, description="event time: the state of "
                                      "the world at this time, from the events that happened "
                                      "by then whenever recorded (ISO 8601 with a zone, or a "
                                      "date = midnight UTC); combines with as_of")]


def when(raw: str | None, name: str) -> datetime | None:
    """A time parameter, or a 400 naming it."""
    if raw is None or raw == "":
        return None
    try:
        return parse_time(raw)
    except argparse.ArgumentTypeError:
        raise BadRequest(f"{name}: not an ISO 8601 time with a zone "
                         "(e.g. 2026-01-01T00:00:00Z)", field=name) from None


def at(as_of: str | None, valid_at: str | None = None) -> QueryTime:
    """The two time parameters as one ``QueryTime``, or a 400 naming the bad one."""
    return QueryTime(as_of=when(as_of, "as_of"), valid_at=when(valid_at, "valid_at"))


def read(api: ApiState, principal: Principal, query: str,
         arguments: Mapping[str, str | None], *, as_of: datetime | QueryTime | None,
         needs: str,
         answer: Callable[[ViewStore], T], people: Sequence[str] = (),
         reason: str | None = None, clear: bool = False) -> T:
    """Audit the query in the principal's name, then answer it from views caught up now
    or replayed to ``as_of`` (recorded time) and/or ``valid_at`` (event time)."""
    service = api.service
    moment = query_time(as_of)
    with service.lock:
        service.audit(query, {**arguments, **moment.arguments()},
                      actor=principal.name, role=principal.role.value, people=people,
                      reason=reason, clear=clear)
        if moment.now and api.catch_up:
            service.catch_up()
        with service.views_at(moment, needs=[needs]) as views:
            return answer(views)


def page_of(items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], list[Any]]
            ) -> dict[str, Any]:
    """A page from ``limit + 1`` fetched items: the first ``limit``, and a cursor if more."""
    from pdl.api.deps import encode_cursor

    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": encode_cursor(key(items[-1])) if more and items else None}
